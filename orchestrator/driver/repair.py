"""Repair of what a driver that stopped early left behind, before a study runs again.

* MLflow runs left RUNNING whose trial finished in the results database (the driver stopped before its
  background writer applied the run's end): their end is written again from the database.
* Trial rows left RUNNING: FAILED (``driver_died``), so they run again.

A trial whose run was never created (the driver stopped before the writer created it) is a RUNNING row
with no run: it fails and runs again, with a new run.  A trial is recorded as finished only with its run.
"""

from __future__ import annotations

from collections.abc import Callable

from ielcore.states import FailureKind, TrialState
from orchestrator.db import ResultsDB
from orchestrator.tracking import Tracker, trial_metric_rows


def repair_finished_runs(
    db: ResultsDB, tracker: Tracker, study: str, stale: set[str], status_of: Callable[[TrialState], str]
) -> set[str]:
    """Re-write the end of trials that finished in the results database but whose MLflow run was left
    RUNNING: status (``status_of(state)``), reason, params, epoch and final metrics, from the database.
    Returns the ids of the runs repaired."""
    if not stale:
        return set()
    lost = [t for t in db.trials(study) if t.mlflow_run_id in stale and t.state.is_finished]
    for rec in lost:
        rows = trial_metric_rows(epochs_of(db, rec.id), rec.final_metrics)
        tracker.log_params(rec.mlflow_run_id or "", rec.config)
        tracker.finish(rec.mlflow_run_id or "", status_of(rec.state), error=rec.error, metrics=rows)
    return {rec.mlflow_run_id or "" for rec in lost}


def fail_stale_rows(db: ResultsDB, study: str) -> int:
    """FAIL the trial rows a stopped driver left RUNNING (they run again); returns how many."""
    stale = db.stale_running(study)
    for rec in stale:
        db.finish_trial(
            rec.id,
            TrialState.FAILED,
            error="the driver stopped while this trial ran; it will run again",
            failure_kind=FailureKind.DRIVER_DIED,
        )
    return len(stale)


def epochs_of(db: ResultsDB, trial_id: int) -> dict[int, dict[str, float]]:
    """A trial's per-epoch metrics from the database."""
    out: dict[int, dict[str, float]] = {}
    for e, n, v in db.epoch_metrics(trial_id):
        if v is not None:
            out.setdefault(int(e), {})[n] = float(v)
    return out
