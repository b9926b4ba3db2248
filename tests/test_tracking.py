"""The MLflow adapter on a real SQLite tracking store: what a run's end writes, batched within MLflow's limits."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.driver import tracking_writer
from orchestrator.driver.tracking_writer import TrackingWriter
from orchestrator.tracking import Tracker, TrackingUnavailable, flatten


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


def test_background_writer_applies_writes_in_order_and_flushes_on_close(tmp_path: Path) -> None:
    """The driver's MLflow writes go through one background thread: every write lands, in order (a run's
    metrics before its end, epochs merged into one history), and close() drains what is still queued."""
    tracker = _tracker(tmp_path)
    exp = tracker.experiment("s")
    parent = tracker.ensure_run(exp, "cell", {"iel.role": "cell", "iel.cell": "c"})
    writer = TrackingWriter(tracker)
    ids = [tracker.create_trial(exp, parent, f"t{i}", {"iel.seed": str(i)}) for i in range(20)]
    for i, run_id in enumerate(ids):
        writer.log_params(run_id, {"lr": i})
        for epoch in (1, 2, 3):
            writer.log_metrics(run_id, [(epoch, "dice", i + epoch / 10)])
        writer.finish(
            run_id,
            "FINISHED" if i % 2 else "FAILED",
            error=None if i % 2 else f"e{i}",
            metrics=[(3, "final_dice", i)],
        )
    writer.close()  # drains the queue: nothing is left RUNNING
    client = MlflowClient(tracker.tracking_uri)
    for i, run_id in enumerate(ids):
        run = client.get_run(run_id)
        assert run.info.status == ("FINISHED" if i % 2 else "FAILED")
        assert run.data.params == {"lr": str(i)} and run.data.metrics["final_dice"] == i
        history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "dice"))
        assert history == [(e, i + e / 10) for e in (1, 2, 3)]
        assert (run.data.tags.get("iel.error"), run.data.tags["iel.seed"]) == (
            None if i % 2 else f"e{i}",
            str(i),
        )
    assert writer.error is None


def test_background_writer_reports_a_failed_write_at_close(tmp_path: Path) -> None:
    """A write that fails (here: a run that does not exist) does not stop the others; close() raises a
    TrackingUnavailable naming it, and the runs it could not end are left for close_stale to repair."""
    tracker = _tracker(tmp_path)
    exp = tracker.experiment("s")
    parent = tracker.ensure_run(exp, "cell", {"iel.role": "cell", "iel.cell": "c"})
    good = tracker.create_trial(exp, parent, "good", {})
    writer = TrackingWriter(tracker)
    writer.finish("0" * 32, "FINISHED")
    writer.finish(good, "FINISHED")
    with pytest.raises(TrackingUnavailable, match="some MLflow writes failed"):
        writer.close()
    assert tracker.run_status(good) == "FINISHED"
    assert tracker.close_stale(exp, "driver gone") == 1  # the cell run, still RUNNING


def test_background_writer_creates_runs_and_resolves_their_keys(tmp_path: Path) -> None:
    """A trial's run is created on the writer's thread: the driver gets a key at once, queues the run's
    writes under it, and learns the id from the callback (or run_id); a creation that fails skips the
    writes queued for that run and is reported at close, the other runs are unaffected."""
    tracker = _tracker(tmp_path)
    exp = tracker.experiment("s")
    parent = tracker.ensure_run(exp, "cell", {"iel.role": "cell", "iel.cell": "c"})
    writer = TrackingWriter(tracker)
    created: list[tuple[int, str]] = []

    def note(i: int) -> Callable[[str], None]:
        return lambda run_id: created.append((i, run_id))

    keys = []
    for i in range(12):
        exp_id = "987654" if i == 5 else exp  # no such experiment: this creation fails
        key = writer.create_trial(exp_id, parent, f"t{i}", {"iel.seed": str(i)}, note(i))
        keys.append(key)
        writer.log_params(key, {"lr": i})
        writer.log_metrics(key, [(1, "dice", i / 10)])
        writer.finish(key, "FINISHED", metrics=[(1, "final_dice", i)])
    assert len(set(keys)) == 12 and all(k.startswith("pending-") for k in keys)
    ids = [writer.run_id(k, 60) for k in keys]
    assert ids[5] is None and all(ids[i] for i in range(12) if i != 5)
    with pytest.raises(TrackingUnavailable, match="some MLflow writes failed"):
        writer.close()
    assert sorted(created) == [(i, ids[i]) for i in range(12) if i != 5]
    client = MlflowClient(tracker.tracking_uri)
    for i, run_id in enumerate(ids):
        if run_id is None:
            continue
        run = client.get_run(run_id)
        assert (run.info.status, run.info.run_name, run.data.tags["iel.role"]) == (
            "FINISHED",
            f"t{i}",
            "trial",
        )
        assert run.data.params == {"lr": str(i)} and run.data.tags["mlflow.parentRunId"] == parent
        assert run.data.metrics == {"dice": i / 10, "final_dice": i}
    assert writer.run_id(ids[0] or "") == ids[0]  # an id is its own key
    assert tracker.close_stale(exp, "driver gone") == 1  # the cell run only: no trial run is left RUNNING


def test_background_writer_refreshes_at_most_once_per_interval_and_at_close(tmp_path: Path) -> None:
    """Of many summary refreshes asked within one interval, the writer runs the first and the last (at
    close, after every write): a refresh always sees the writes queued before it."""
    tracker = _tracker(tmp_path)
    exp = tracker.experiment("s")
    parent = tracker.ensure_run(exp, "cell", {"iel.role": "cell", "iel.cell": "c"})
    writer = TrackingWriter(tracker, refresh_interval_s=3600)
    seen: list[int] = []

    def refresh(t: Tracker) -> None:
        seen.append(sum(t.run_status(r) == "FINISHED" for r in ids if r is not None))

    ids: list[str | None] = []
    for i in range(30):
        key = writer.create_trial(exp, parent, f"t{i}", {})
        writer.finish(key, "FINISHED")
        writer.refresh(refresh)
        ids.append(writer.run_id(key, 60))
    writer.close()
    assert 1 <= len(seen) <= 2 and seen[-1] == 30


def _count_batches(tracker: Tracker) -> list[tuple[str, int, int, int]]:
    """Record every log_batch request the tracker makes: (run, params, metrics, tags)."""
    calls: list[tuple[str, int, int, int]] = []
    inner = tracker.client.log_batch

    def counted(run_id: str, metrics: Any = (), params: Any = (), tags: Any = (), **kw: Any) -> Any:
        calls.append((run_id, len(params or ()), len(metrics or ()), len(tags or ())))
        return inner(run_id, metrics=metrics, params=params, tags=tags, **kw)

    tracker.client.log_batch = counted  # type: ignore[method-assign]
    return calls


def test_a_short_runs_params_metrics_tags_and_end_go_in_one_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Params wait (up to PARAMS_HOLD_S; here long enough to be certain) for the run's next write: a run
    whose end follows at once has one log_batch carrying params, metrics and tags, and what MLflow holds
    is what separate requests would have written."""
    monkeypatch.setattr(tracking_writer, "PARAMS_HOLD_S", 3600.0)
    tracker = _tracker(tmp_path)
    exp = tracker.experiment("s")
    parent = tracker.ensure_run(exp, "cell", {"iel.role": "cell", "iel.cell": "c"})
    calls = _count_batches(tracker)
    writer = TrackingWriter(tracker)
    keys = []
    for i in range(6):
        key = writer.create_trial(exp, parent, f"t{i}", {"iel.seed": str(i)})
        writer.log_params(key, {"opt": {"lr": i / 10, "name": "adam"}})
        if i % 2:  # an epoch streamed before the end: the params go with it
            writer.log_metrics(key, [(1, "dice", i / 10)])
        writer.finish(key, "FINISHED", tags={"iel.host": "h"}, metrics=[(2, "dice", i / 5)])
        keys.append(key)
    writer.close()
    ids = [writer.run_id(k) for k in keys]
    client = MlflowClient(tracker.tracking_uri)
    for i, run_id in enumerate(ids):
        assert run_id is not None
        run = client.get_run(run_id)
        assert run.data.params == {"opt.lr": str(i / 10), "opt.name": "adam"}
        assert run.data.tags["iel.host"] == "h" and run.info.status == "FINISHED"
        steps = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "dice"))
        assert steps == ([(1, i / 10)] if i % 2 else []) + [(2, i / 5)]
        mine = [c for c in calls if c[0] == run_id]
        assert sum(c[1] for c in mine) == 2 and mine[0][1] == 2, mine  # the params in the first request
        assert len(mine) <= 2, mine  # (an epoch batch and the end at most; one when they meet)


def test_held_params_are_written_when_their_time_is_up_and_at_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Params of a run with no further write are not lost: flush() writes them at once, and without a flush
    they are written once PARAMS_HOLD_S has passed."""
    tracker = _tracker(tmp_path)
    exp = tracker.experiment("s")
    parent = tracker.ensure_run(exp, "cell", {"iel.role": "cell", "iel.cell": "c"})
    client = MlflowClient(tracker.tracking_uri)

    def params_only(name: str, lr: float, hold_s: float) -> tuple[TrackingWriter, str]:
        """A writer holding params for ``hold_s``, and a run with nothing but its params queued."""
        monkeypatch.setattr(tracking_writer, "PARAMS_HOLD_S", hold_s)
        writer = TrackingWriter(tracker)
        key = writer.create_trial(exp, parent, name, {})
        writer.log_params(key, {"lr": lr})
        run_id = writer.run_id(key, 60)
        assert run_id is not None
        return writer, run_id

    writer, run_id = params_only("held", 0.1, 3600.0)
    writer.flush()
    assert client.get_run(run_id).data.params == {"lr": "0.1"}
    writer.close()

    writer, run_id = params_only("timed", 0.2, 0.05)
    deadline = time.monotonic() + 60  # a liveness bound, not a timing assertion
    while not client.get_run(run_id).data.params and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get_run(run_id).data.params == {"lr": "0.2"}
    writer.close()
