"""The MLflow adapter on a real SQLite tracking store: what a run's end writes, batched within MLflow's limits."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from orchestrator.tracking import Tracker, flatten


def _tracker(tmp_path: Path) -> Tracker:
    return Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "artifacts"))


def test_start_trial_logs_every_param_in_batches(tmp_path: Path) -> None:
    tracker = _tracker(tmp_path)
    exp = tracker.experiment("s")
    parent = tracker.ensure_run(exp, "cell", {"iel.role": "cell", "iel.cell": "c"})
    config = {"a": {f"p{i}": i for i in range(250)}, "b": 0.5}  # > 100 params: three log_batch calls
    run_id = tracker.start_trial(exp, parent, "t", config, {"iel.seed": "3"})
    run = MlflowClient(tracker.tracking_uri).get_run(run_id)
    assert run.data.params == flatten(config)
    assert run.data.tags["iel.seed"] == "3" and run.data.tags["mlflow.parentRunId"] == parent
    assert run.info.status == "RUNNING"


def test_finish_writes_metrics_tags_and_status_together(tmp_path: Path) -> None:
    tracker = _tracker(tmp_path)
    exp = tracker.experiment("s")
    parent = tracker.ensure_run(exp, "cell", {"iel.role": "cell", "iel.cell": "c"})
    run_id = tracker.start_trial(exp, parent, "t", {"x": 1}, {})
    # 1,500 epoch rows + 3 tags: more than one log_batch may carry (1,000 entries), so two batches.
    rows = [(e, "loss", 1.0 / (e + 1)) for e in range(1500)] + [(1499, "final_dice", 0.75)]
    tracker.finish(run_id, "FAILED", error="boom", tags={"iel.host": "h"}, metrics=rows)
    client = MlflowClient(tracker.tracking_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["iel.host"] == "h" and run.data.tags["iel.error"] == "boom"
    assert run.data.tags["mlflow.note.content"] == "**FAILED**: boom"
    assert run.data.metrics["final_dice"] == 0.75
    history = client.get_metric_history(run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(e, 1.0 / (e + 1)) for e in range(1500)]


def test_close_stale_ends_every_running_run(tmp_path: Path) -> None:
    tracker = _tracker(tmp_path)
    exp = tracker.experiment("s")
    parent = tracker.ensure_run(exp, "cell", {"iel.role": "cell", "iel.cell": "c"})
    ids = [tracker.start_trial(exp, parent, f"t{i}", {}, {}) for i in range(3)]
    tracker.finish(ids[0], "FINISHED")
    assert tracker.close_stale(exp, "driver gone") == 3  # two trials and the cell run
    assert {tracker.run_status(i) for i in ids} == {"FINISHED", "KILLED"}
    assert tracker.run_status(ids[1]) == "KILLED" and tracker.run_status(parent) == "KILLED"
