"""The single writer: the results database, Optuna's storage and the MLflow run lifecycle.

:class:`Recorder` prepares a study in them (experiment, study and cell runs, Optuna studies, repair of what a
killed driver left RUNNING) and then records every event of every trial.  How an outcome is recorded in the
three stores is one table, :data:`END_OF`.  A trial's MLflow writes, its run's creation included, go
through a :class:`~orchestrator.driver.tracking_writer.TrackingWriter`, off the driver's critical path: the
writer hands a created run's id to the worker and back to the driver (:mod:`.handover`).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from optuna.trial import TrialState as OptunaState

from ielcore.states import FailureKind, TrialState
from orchestrator.db import TrialRecord
from orchestrator.driver.handover import RunHandover
from orchestrator.driver.item import WorkItem
from orchestrator.driver.models import log_best_models
from orchestrator.driver.repair import epochs_of, fail_stale_rows, repair_finished_runs
from orchestrator.driver.storage import (
    end_fast_sqlite,
    end_trial,
    fast_sqlite,
    intermediate_values,
    optuna_storage,
    storage_call,
    write_trial_extras,
)
from orchestrator.driver.stores import Stores
from orchestrator.driver.summaries import SummaryRefresher
from orchestrator.driver.tracking_writer import TrackingWriter
from orchestrator.plan import Cell, Plan
from orchestrator.progress import Progress
from orchestrator.run_names import cell_label, trial_label
from orchestrator.search import CellSearch
from orchestrator.settings import Settings
from orchestrator.stores import repair_missing_runs
from orchestrator.study import StudySpec
from orchestrator.study_version import canonical_spec, check_against_recorded
from orchestrator.tracking import TrackingUnavailable, final_rows, trial_metric_rows
from orchestrator.version import code_version, git_commit, package_versions
from workers.protocol import TrialOutcome, TrialTask

RETRYABLE = frozenset({FailureKind.ERROR, FailureKind.OOM, FailureKind.WORKER_DIED})

_Tell = Callable[[CellSearch, Any, Mapping[str, float | None]], None]
_TELL: dict[OptunaState, _Tell] = {
    OptunaState.COMPLETE: lambda search, trial, final: search.tell_complete(trial, final),
    OptunaState.PRUNED: lambda search, trial, final: search.tell_pruned(trial),
    OptunaState.FAIL: lambda search, trial, final: search.tell_failed(trial),
}


@dataclass(frozen=True)
class EndOfTrial:
    """How the end of a trial is written: its database state, MLflow run status and Optuna state."""

    db: TrialState
    mlflow: str
    optuna: OptunaState


END_OF: dict[TrialState, EndOfTrial] = {
    TrialState.COMPLETE: EndOfTrial(TrialState.COMPLETE, "FINISHED", OptunaState.COMPLETE),
    TrialState.PRUNED: EndOfTrial(TrialState.PRUNED, "KILLED", OptunaState.PRUNED),
    TrialState.FAILED: EndOfTrial(TrialState.FAILED, "FAILED", OptunaState.FAIL),
}
INTERRUPTED = EndOfTrial(TrialState.FAILED, "KILLED", OptunaState.FAIL)  # running when the driver stopped


class Recorder:
    """Records a study's trials in the results database, Optuna and MLflow (see the module docstring)."""

    def __init__(
        self, stores: Stores, spec: StudySpec, plan: Plan, settings: Settings, progress: Progress
    ) -> None:
        db, tracker = stores.db, stores.tracker
        self.stores, self.db, self.tracker = stores, db, tracker
        self.spec, self.plan, self.progress = spec, plan, progress
        self.mlflow_uri = settings.mlflow_uri
        self.code_version = code_version()
        self.study_id = self._ensure_study()
        self.exp_id = tracker.experiment(spec.name, spec.description)
        stale = tracker.running_runs(self.exp_id)
        repaired = repair_finished_runs(db, tracker, spec.name, set(stale), lambda s: END_OF[s].mlflow)
        for run_id in set(stale) - repaired:
            tracker.finish(run_id, "KILLED", error="the driver that ran this stopped before the run ended")
        # Each submit has its own study run and cell runs: a resumed study does not reopen the runs of an
        # earlier submit (their durations would span the time between the submits).
        self.submit = len(tracker.find_runs(self.exp_id, {"iel.role": "study"})) + 1
        self.study_run = tracker.create_run(
            self.exp_id,
            spec.name if self.submit == 1 else f"{spec.name} · submit {self.submit}",
            {
                "iel.role": "study",
                "iel.study": spec.name,
                "iel.submit": str(self.submit),
                "iel.git_commit": git_commit(),
            },
        )
        storage = optuna_storage(settings.db_url)
        self.searches = {cell.key: CellSearch(storage, spec, cell) for cell in plan.cells}
        stale_optuna = sum(search.fail_stale() for search in self.searches.values())
        self.cell_ids = {cell.key: self._ensure_cell(cell) for cell in plan.cells}
        self.cell_runs = {cell.key: self._ensure_cell_run(cell) for cell in plan.cells}
        for cell in plan.cells:
            storage_call(self.searches[cell.key].describe, cell, self.exp_id)
        self.stale = {
            "mlflow_runs": len(stale),
            "mlflow_runs_repaired": len(repaired),
            "optuna_trials": stale_optuna,
            "trial_rows": fail_stale_rows(db, spec.name),
        }
        repair_missing_runs(db, tracker, self.exp_id, spec.name, self.cell_runs, self._tags)
        self._mlflow_wal = fast_sqlite(tracker.store_engine())  # WAL while the study runs
        self.writer = TrackingWriter(tracker)
        self.runs = RunHandover(self.writer, db)
        for cell in plan.cells:  # the cell's factors as params: the runs table can group and filter by them
            self.writer.log_params(self.cell_runs[cell.key], {k: v for k, v in cell.factors.items()})
        self.refresher = SummaryRefresher(settings.db_url, spec, self.study_run, self.cell_runs)
        self.writer.refresh(self.refresher)

    def _ensure_study(self) -> int:
        """Check the spec against the one recorded under its name (:func:`check_resubmit` raises when results
        could change) and record the study."""
        change = check_against_recorded(self.db, self.spec)
        if change is not None and change.changes:
            self.progress.phase(change.describe())
        return self.db.ensure_study(self.spec.name, self.spec.description, canonical_spec(self.spec))

    # -------------------------------------------------------------------------------------- preparing
    def _ensure_cell(self, cell: Cell) -> int:
        name = self.searches[cell.key].name
        return self.db.ensure_cell(self.study_id, cell.key, dict(cell.factors), cell.is_baseline, name)

    def _ensure_cell_run(self, cell: Cell) -> str:
        tags = {
            "iel.role": "cell",
            "iel.study": self.spec.name,
            "iel.cell": cell.key,
            "iel.submit": str(self.submit),
            "iel.baseline": str(cell.is_baseline).lower(),
        }
        for path, value in cell.factors.items():
            tags[f"iel.factor.{path}"] = str(value)
        name = cell_label(cell.factors) + (" (baseline)" if cell.is_baseline else "")
        return self.tracker.create_run(self.exp_id, name, tags, parent_run_id=self.study_run)

    # -------------------------------------------------------------------------------- trials to run
    def new_item(
        self,
        cell: Cell,
        seed: int,
        config: dict[str, Any],
        trial_hash: str,
        *,
        optuna_trial: Any = None,
        fuse_group: str | None = None,
    ) -> WorkItem | None:
        """Record a trial of ``cell`` (idempotent by hash) and return it to run, or None when it is kept
        (finished in this study) or reused (finished identically in another study)."""
        number = None if optuna_trial is None else int(optuna_trial.number)
        rec = self.db.ensure_trial(
            self.study_id, self.cell_ids[cell.key], seed, trial_hash, config, number, self.code_version
        )
        search = self.searches[cell.key]
        if rec.state == TrialState.COMPLETE:
            self.progress.trial_kept(cell.key, rec.final_metrics)
            if optuna_trial is not None:
                storage_call(search.tell_complete, optuna_trial, rec.final_metrics)
            return None
        original = self.db.find_complete_by_hash(rec.trial_hash, exclude_study_id=self.study_id)
        if original is not None:
            self._reuse(rec, cell, optuna_trial, original)
            return None
        # A grid trial is asked from Optuna only when it starts (see start_attempt): asking the whole grid
        # up front would leave N trials RUNNING there, and every ask re-reads the unfinished ones (O(N^2)).
        return WorkItem(rec, cell, search, config, optuna_trial=optuna_trial, fuse_group=fuse_group)

    def new_search_item(
        self, cell: Cell, trial: Any, seed: int, config: dict[str, Any], trial_hash: str
    ) -> WorkItem | None:
        """:meth:`new_item` for a configuration asked from Optuna (the trial remembers its seed and hash)."""
        write_trial_extras(trial, {"seed": seed, "trial_hash": trial_hash})
        return self.new_item(cell, seed, config, trial_hash, optuna_trial=trial)

    def reject(self, cell: Cell, trial: Any, error: str) -> None:
        """A sampled configuration that is invalid: FAIL in Optuna with the reason."""
        storage_call(trial.set_user_attr, "error", error[:1000])
        storage_call(self.searches[cell.key].tell_failed, trial)
        self.progress.invalid += 1

    def _reuse(self, rec: TrialRecord, cell: Cell, optuna_trial: Any, original: TrialRecord) -> None:
        search = self.searches[cell.key]
        self.db.mark_reused(rec.id, original)
        attrs = {"trial_hash": rec.trial_hash, "seed": rec.seed, "reused_from": original.id}
        if optuna_trial is None:
            number = storage_call(search.add_reused, {}, original.final_metrics, attrs)
        else:
            storage_call(search.tell_complete, optuna_trial, original.final_metrics)
            number = int(optuna_trial.number)
        tags = self._tags(rec) | {
            "iel.reused_from_run": original.mlflow_run_id or "",
            "iel.reused_from_study": original.study_name,
        }
        name = trial_label(cell.factors, rec.seed) + " (reused)"
        run_id = self.tracker.create_trial(self.exp_id, self.cell_runs[cell.key], name, tags)
        self.writer.log_params(run_id, rec.config)
        rows = trial_metric_rows(epochs_of(self.db, original.id), original.final_metrics)
        self.writer.finish(run_id, "FINISHED", metrics=rows)
        self.db.set_references(
            rec.id, mlflow_run_id=run_id, optuna_study_name=search.name, optuna_trial_number=number
        )
        self.progress.trial_reused(cell.key, original.final_metrics)
        self.writer.refresh(self.refresher)

    # ------------------------------------------------------------------------------------- attempts
    def _tags(self, rec: TrialRecord) -> dict[str, str]:
        return {
            "iel.study": self.spec.name,
            "iel.cell": rec.cell_key,
            "iel.seed": str(rec.seed),
            "iel.trial_hash": rec.trial_hash,
            "iel.trial_id": str(rec.id),
            "iel.git_commit": git_commit(),
            "iel.code_version": self.code_version,
            "iel.versions": package_versions(),
            "iel.driver_host": socket.gethostname(),
        }

    def start_attempt(self, item: WorkItem, fuse_group: str | None) -> TrialTask:
        """Queue the creation of the attempt's MLflow run, mark the trial RUNNING, and build the worker's task
        (``item.worker`` is the worker that will run it: it gets the run's id once the run exists)."""
        item.attempt += 1
        rec = item.record
        if item.optuna_trial is None:  # a grid trial: asked now, so only running trials are RUNNING in Optuna
            item.optuna_trial = storage_call(item.search.study.ask)
            write_trial_extras(item.optuna_trial, {"trial_hash": rec.trial_hash, "seed": rec.seed})
        name = trial_label(item.cell.factors, rec.seed, rec.search_index)
        tags = self._tags(rec) | {"iel.attempt": str(item.attempt), "iel.fuse_group": fuse_group or ""}
        run = self.runs.create(item, self.exp_id, self.cell_runs[item.cell.key], name, tags)
        self.writer.log_params(run, item.config)
        item.record = self.db.mark_running(
            rec.id,
            record=rec,
            attempt=rec.attempts + 1,
            mlflow_run_id=None,
            host="",
            device="",
            optuna_study_name=item.search.name,
            optuna_trial_number=int(item.optuna_trial.number),
        )
        item.epochs.clear()
        item.logged_epochs.clear()
        item.prune_requested = False
        item.hard_killed = False
        self.progress.trial_started(item.cell.key)
        return TrialTask(
            trial_id=rec.id,
            attempt=item.attempt,
            config=item.config,
            tracking_uri=self.mlflow_uri,
            timeout_s=self.spec.timeout_s,
            fuse_group=fuse_group,
            trial_hash=rec.trial_hash,
        )

    def should_prune(self, item: WorkItem, epoch: int, metrics: dict[str, float]) -> bool:
        """Report an epoch's metrics to Optuna; True when the pruner says the trial should stop."""
        return bool(storage_call(item.search.report, item.optuna_trial, epoch, metrics))

    def log_epochs(self, item: WorkItem) -> None:
        """Queue the epochs not logged to MLflow yet (one batch per trial)."""
        new = sorted(e for e in item.epochs if e not in item.logged_epochs)
        if not new or item.run_key is None:
            return
        self.writer.log_metrics(item.run_key, [(e, k, v) for e in new for k, v in item.epochs[e].items()])
        item.logged_epochs.update(new)

    def finish(self, item: WorkItem, outcome: TrialOutcome) -> bool:
        """Record one attempt's outcome in all three stores; True when the trial must run again (retry)."""
        result = outcome.result
        unreported: list[int] = []
        for h in result.history if result is not None else []:
            epoch = int(h["epoch"])
            if epoch not in item.epochs:  # came with the result, not streamed: Optuna has not seen it yet
                unreported.append(epoch)
            item.epochs[epoch] = {k: v for k, v in h.items() if k != "epoch"}
        rows = [(e, k, float(v)) for e, m in sorted(item.epochs.items()) for k, v in m.items()]
        # Epochs not streamed yet go to MLflow with the run's end (one log_batch), and to the results
        # database in the same transaction as the outcome.
        unlogged = [(e, k, v) for e, k, v in rows if e not in item.logged_epochs]
        item.logged_epochs.update(item.epochs)
        final: dict[str, float | None] = dict(result.final_metrics) if result is not None else {}
        end = END_OF[outcome.state]
        kind = (outcome.failure_kind or FailureKind.ERROR) if outcome.state == TrialState.FAILED else None
        retry = kind in RETRYABLE and item.attempt <= self.spec.retries
        db_error, mlflow_error = self._reasons(item, outcome, kind)
        if outcome.state == TrialState.COMPLETE:  # final values that are not the last epoch's
            unlogged += final_rows(item.epochs, final)
        tags = {
            "iel.host": outcome.host,
            "iel.device": outcome.device,
            "iel.fused_members": str(outcome.fused_members),
        }
        with self.writer.driver_waiting():  # (the writer's turn: the run may not be created yet)
            run_id = self.runs.await_run(item)
        # Optuna: the epochs it has not seen and the trial's run, with the trial's end (one transaction).
        attrs = {} if item.run_recorded else {"mlflow_run_id": run_id}
        extras = (attrs, intermediate_values(item.search.metrics, item.epochs, unreported))
        self.writer.finish(run_id, end.mlflow, error=mlflow_error, tags=tags, metrics=unlogged)
        self.db.finish_trial(
            item.record.id,
            end.db,
            final_metrics=None if kind else final,  # type: ignore[arg-type]
            error=db_error,
            failure_kind=kind,
            failed_epoch=outcome.failed_epoch,
            duration_s=outcome.duration_s,
            artifacts=outcome.artifacts if outcome.state == TrialState.COMPLETE else {},
            host=outcome.host,
            device=outcome.device,
            epoch_metrics=rows,
            mlflow_run_id=run_id,
        )
        if retry:
            write_trial_extras(item.optuna_trial, *extras)
        else:
            tell = _TELL[end.optuna]
            end_trial(item.optuna_trial, *extras, lambda: tell(item.search, item.optuna_trial, final))
        item.run_recorded = True
        self.writer.refresh(self.refresher)
        self.progress.trial_ended(
            item.cell.key,
            outcome.state,
            metrics=final,
            duration_s=outcome.duration_s,
            failure_kind=kind,
            error=db_error,
            retry=retry,
            seed=item.record.seed,
        )
        return retry

    def _reasons(
        self, item: WorkItem, outcome: TrialOutcome, kind: FailureKind | None
    ) -> tuple[str | None, str | None]:
        """The reason of a trial's end: for the database, and for MLflow."""
        if outcome.state == TrialState.PRUNED:
            epoch = max(item.epochs) if item.epochs else 0
            pruner = self.spec.search.pruner if self.spec.search else ""
            reason = f"pruned by the {pruner} pruner after epoch {epoch}"
            return reason, reason
        if kind is None:
            return None, None
        error = outcome.error or "unknown failure"
        return error, f"[{kind}] {error}"

    def check(self) -> None:
        """Raise :class:`TrackingUnavailable` once a background MLflow write failed."""
        if self.writer.error is not None:
            raise TrackingUnavailable(
                f"an MLflow write failed: {type(self.writer.error).__name__}: {self.writer.error}"
            ) from self.writer.error

    # ---------------------------------------------------------------------------------------- ending
    def close(
        self, running: Iterable[WorkItem], queued: Iterable[WorkItem], interrupted: BaseException | None
    ) -> None:
        """End the study's records: trials asked but never started, trials still running (FAILED,
        ``driver_died``), the cell and study runs; then apply every queued MLflow write."""
        reason = "the study was interrupted (Ctrl-C / SIGTERM)" if interrupted else "the driver stopped"
        for item in queued:  # asked from Optuna but never started: no trial is left RUNNING there
            if item.optuna_trial is not None:
                with contextlib.suppress(Exception):
                    item.search.tell_failed(item.optuna_trial)
        for item in running:
            with contextlib.suppress(Exception):
                if item.run_key is not None:  # the run's creation is queued before its end
                    self.writer.finish(item.run_key, INTERRUPTED.mlflow, error=reason)
                self.db.finish_trial(
                    item.record.id,
                    INTERRUPTED.db,
                    error=reason,
                    failure_kind=FailureKind.DRIVER_DIED,
                    mlflow_run_id=self.runs.known(item),
                )
                _TELL[INTERRUPTED.optuna](item.search, item.optuna_trial, {})
        status = "KILLED" if interrupted else "FINISHED"
        self.writer.refresh(self.refresher)
        for run_id in [*self.cell_runs.values(), self.study_run]:
            self.writer.finish(run_id, status)
        try:
            self.writer.close()
            if interrupted is None:
                log_best_models(self.db, self.tracker, self.spec, self.cell_runs)
        except TrackingUnavailable:
            if interrupted is None:
                raise
        finally:
            self.refresher.close()
            if self._mlflow_wal:
                end_fast_sqlite(self.tracker.store_engine())
