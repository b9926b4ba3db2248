"""The trained model of each cell's best trial, logged to MLflow so ``mlflow.pytorch.load_model`` works.

Workers upload a self-describing checkpoint (``checkpoint.pt``) of every trial with ``artifacts.checkpoint``;
at a study's end the driver rebuilds the model of the best COMPLETE trial of each cell (by the primary
metric and its direction in :mod:`ielcore.metric_info`) and logs it with ``mlflow.pytorch.log_model``
(pickle format, linked to the trial's run, the run's status and times untouched).  The model's URI
(``models:/m-...``) goes in the tag ``iel.model_uri`` of the trial run and of the cell run.  A trial whose
run carries the tag already is not logged again (a resume).
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Mapping

from orchestrator.db import ResultsDB, TrialRecord, TrialState
from orchestrator.progress import primary_metric
from orchestrator.stats.cells import direction
from orchestrator.study import StudySpec
from orchestrator.tracking import Tracker

CHECKPOINT = "checkpoint.pt"
_log = logging.getLogger("orchestrator.tracking")


def best_trials(db: ResultsDB, spec: StudySpec) -> dict[str, TrialRecord]:
    """Cell key -> its best COMPLETE trial with a checkpoint (by the primary metric)."""
    metric = primary_metric(spec)
    sign = 1.0 if direction(metric) == "maximize" else -1.0
    best: dict[str, tuple[float, TrialRecord]] = {}
    for t in db.trials(spec.name, states=[TrialState.COMPLETE]):
        value = t.final_metrics.get(metric)
        wrote = t.config.get("kind", "train") == "train" and (t.config.get("artifacts") or {}).get(
            "checkpoint"
        )
        if not wrote or t.reused_from_id is not None or not t.mlflow_run_id:
            continue
        if value is None or not math.isfinite(value):
            continue
        if t.cell_key not in best or sign * value > sign * best[t.cell_key][0]:
            best[t.cell_key] = (value, t)
    return {k: t for k, (_, t) in best.items()}


def log_best_models(
    db: ResultsDB, tracker: Tracker, spec: StudySpec, cell_runs: Mapping[str, str]
) -> dict[str, str]:
    """Log the model of each cell's best trial (see the module docstring); cell key -> model URI.  A cell
    whose model cannot be logged gets a warning; the others are still logged."""
    out: dict[str, str] = {}
    for key, trial in best_trials(db, spec).items():
        try:
            out[key] = _log_model(tracker, str(trial.mlflow_run_id), cell_runs.get(key))
        except Exception as e:  # a missing checkpoint or a store error: the study's results stand
            _log.warning(
                "could not log the model of cell %s's best trial: %s", key, str(e).splitlines()[0][:300]
            )
    return out


def _log_model(tracker: Tracker, run_id: str, cell_run: str | None) -> str:
    """Log the model of one trial run (unless its run has one) and tag the cell run; the model's URI."""
    import mlflow
    import mlflow.pytorch

    from ielcore.artifacts import load_checkpoint

    uri = tracker.client.get_run(run_id).data.tags.get("iel.model_uri")
    if uri is None:
        with tempfile.TemporaryDirectory() as tmp:
            path = tracker.client.download_artifacts(run_id, CHECKPOINT, tmp)
            model, _ = load_checkpoint(path)
        mlflow.set_tracking_uri(tracker.tracking_uri)
        # MLflow warns about pickle on every save; the model is the platform's own checkpoint, loaded back
        # only from this study's store, so the warning would only alarm a reader of the submit's output.
        pytorch_log = logging.getLogger("mlflow.pytorch")
        level = pytorch_log.level
        pytorch_log.setLevel(logging.ERROR)
        try:
            info = mlflow.pytorch.log_model(
                model,
                name="model",
                run_id=run_id,
                pip_requirements=["torch"],
                serialization_format="pickle",
            )
        finally:
            pytorch_log.setLevel(level)
        uri = str(info.model_uri)
        tracker.set_tags(run_id, {"iel.model_uri": uri})
    if cell_run is not None:
        tracker.set_tags(cell_run, {"iel.model_uri": uri, "iel.best_trial_run": run_id})
    return uri
