"""The results database as the driver sees it: :class:`ResultsDB` (writes here; reads in :mod:`.reads`,
locks in :mod:`.locks`, plumbing in :mod:`.base`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, literal, select, update

from orchestrator.db.base import (
    DBCore,
    RecordNotFound,
    _check_failure_kind,
    _dumps,
    _finite,
    _trial_record,
    alembic_config,
)
from orchestrator.db.locks import DriverLocked, DriverLocks
from orchestrator.db.models import (
    Artifact,
    Cell,
    EpochMetric,
    FinalMetric,
    Study,
    Trial,
    utcnow,
)
from orchestrator.db.reads import Reads
from orchestrator.db.records import TrialRecord, TrialState

__all__ = ["DriverLocked", "RecordNotFound", "ResultsDB", "alembic_config"]


class ResultsDB(Reads, DriverLocks, DBCore):
    """Results database of the platform (SQLite file or PostgreSQL server).

    Contract: the driver is the single writer (workers never touch the database); every write is one
    transaction, retried on a lost connection or a locked file (:func:`~orchestrator.db.engine.with_retry`)
    and raising :class:`~orchestrator.db.engine.DatabaseUnavailable` when retries are exhausted.  Every
    read returns plain frozen records (:mod:`orchestrator.db.records`) or dicts, never live ORM rows.
    Not thread-safe: use one instance per thread.
    """

    # -- writes -----------------------------------------------------------------------------------

    def ensure_study(self, name: str, description: str, spec: dict[str, Any]) -> int:
        """Insert the study, or update its description and spec; return its id."""

        def run(conn: Connection) -> int:
            now, spec_json = utcnow(), _dumps(spec)
            sid = conn.execute(select(Study.id).where(Study.name == name)).scalar()
            if sid is not None:
                conn.execute(
                    update(Study)
                    .where(Study.id == sid)
                    .values(description=description, spec_json=spec_json, updated_at=now)
                )
                return sid
            values = dict(
                name=name, description=description, spec_json=spec_json, created_at=now, updated_at=now
            )
            return conn.execute(insert(Study).values(**values).returning(Study.id)).scalar_one()

        return self._tx(run)

    def ensure_cell(
        self,
        study_id: int,
        cell_key: str,
        factors: dict[str, Any],
        is_baseline: bool,
        optuna_study_name: str | None,
    ) -> int:
        """Insert the cell, or update its factors, baseline flag and Optuna study; return its id."""
        values = dict(
            factors_json=_dumps(factors), is_baseline=is_baseline, optuna_study_name=optuna_study_name
        )

        def run(conn: Connection) -> int:
            where = and_(Cell.study_id == study_id, Cell.cell_key == cell_key)
            cid = conn.execute(select(Cell.id).where(where)).scalar()
            if cid is not None:
                conn.execute(update(Cell).where(Cell.id == cid).values(**values))
                self._cells.pop(cid, None)
                return cid
            stmt = insert(Cell).values(study_id=study_id, cell_key=cell_key, **values).returning(Cell.id)
            return conn.execute(stmt).scalar_one()

        return self._tx(run)

    def ensure_trial(
        self,
        study_id: int,
        cell_id: int,
        seed: int,
        trial_hash: str,
        config: dict[str, Any],
        search_index: int | None,
        code_version: str,
    ) -> TrialRecord:
        """Insert a PENDING trial, or return the existing one with the same ``(study_id, trial_hash)``."""
        if not trial_hash or len(trial_hash) > 64:
            raise ValueError(f"trial_hash must be 1..64 characters, but got {trial_hash!r}")

        def run(conn: Connection) -> TrialRecord:
            where = and_(Trial.study_id == study_id, Trial.trial_hash == trial_hash)
            tid = conn.execute(select(Trial.id).where(where)).scalar()
            if tid is not None:
                return self._get_trial(conn, tid)
            cell = self._cell_info(conn, cell_id)
            if cell is None or cell[0] != study_id:
                got = None if cell is None else cell[0]
                raise ValueError(f"cell {cell_id} does not belong to study {study_id} (got {got})")
            values = dict(
                study_id=study_id,
                cell_id=cell_id,
                seed=seed,
                search_index=search_index,
                trial_hash=trial_hash,
                config_json=_dumps(config),
                state=TrialState.PENDING.value,
                attempts=0,
                code_version=code_version,
                created_at=utcnow(),
            )
            tid = conn.execute(insert(Trial).values(**values).returning(Trial.id)).scalar_one()
            # the new row as a read would return it (every column not set is NULL), without the read
            row = {c.name: None for c in Trial.__table__.c} | values | {"id": tid}
            _, study_name, cell_key, factors_json, is_baseline = cell
            cell_fields = dict(
                study_name=study_name, cell_key=cell_key, factors_json=factors_json, is_baseline=is_baseline
            )
            return _trial_record(row | cell_fields, {})

        return self._tx(run)

    def mark_running(
        self,
        trial_id: int,
        *,
        record: TrialRecord | None = None,
        attempt: int,
        mlflow_run_id: str | None,
        host: str,
        device: str,
        optuna_study_name: str | None = None,
        optuna_trial_number: int | None = None,
    ) -> TrialRecord:
        """RUNNING, attempt number ``attempt`` (1 for the first), started now; returns the updated record
        (read in the same transaction, or ``record`` -- the trial as last read by the single writer --
        with these values)."""
        values = dict(
            state=TrialState.RUNNING.value,
            attempts=attempt,
            mlflow_run_id=mlflow_run_id,
            host=host,
            device=device,
            started_at=utcnow(),
            finished_at=None,
            duration_s=None,
            error=None,
            failure_kind=None,
            failed_epoch=None,
        )
        if optuna_study_name is not None:
            values["optuna_study_name"] = optuna_study_name
        if optuna_trial_number is not None:
            values["optuna_trial_number"] = optuna_trial_number

        def run(conn: Connection) -> TrialRecord:
            self._update_trial(conn, trial_id, **values)
            if record is not None and record.id == trial_id:
                return dataclasses.replace(record, **{**values, "state": TrialState.RUNNING})  # type: ignore[arg-type]
            return self._get_trial(conn, trial_id)

        return self._tx(run)

    def add_epoch_metrics(self, trial_id: int, rows: Sequence[tuple[int, str, float]]) -> None:
        """Insert or overwrite ``(epoch, name, value)`` rows in one statement (last duplicate wins)."""
        self._tx(lambda conn: self._add_epoch_metrics(conn, trial_id, rows))

    def _add_epoch_metrics(
        self, conn: Connection, trial_id: int, rows: Sequence[tuple[int, str, float]]
    ) -> None:
        dedup = {(int(e), str(n)): _finite(v) for e, n, v in rows}
        batch = [{"trial_id": trial_id, "epoch": e, "name": n, "value": v} for (e, n), v in dedup.items()]
        self._upsert(conn, EpochMetric, batch, ("trial_id", "epoch", "name"))

    def finish_trial(
        self,
        trial_id: int,
        state: TrialState,
        *,
        final_metrics: dict[str, float] | None = None,
        error: str | None = None,
        failure_kind: str | None = None,
        failed_epoch: int | None = None,
        duration_s: float | None = None,
        artifacts: dict[str, str] | None = None,
        host: str | None = None,
        device: str | None = None,
        epoch_metrics: Sequence[tuple[int, str, float]] = (),
        mlflow_run_id: str | None = None,
    ) -> None:
        """Record the end of a trial: COMPLETE, PRUNED or FAILED (with the reason), its final metrics
        (replacing earlier ones), artifact URIs and ``(epoch, name, value)`` rows (as
        :meth:`add_epoch_metrics`), and its MLflow run when given, all in one transaction.  ``duration_s``
        defaults to now - started_at."""
        state = TrialState(state)
        if not state.is_finished:
            raise ValueError(f"finish_trial needs COMPLETE, PRUNED or FAILED, but got {state.value}")
        _check_failure_kind(failure_kind)

        def run(conn: Connection) -> None:
            now = utcnow()
            duration = duration_s
            if duration is None:
                started = conn.execute(select(Trial.started_at).where(Trial.id == trial_id)).scalar()
                duration = (now - started).total_seconds() if started is not None else None
            self._update_trial(
                conn,
                trial_id,
                state=state.value,
                error=error,
                failure_kind=str(failure_kind) if failure_kind else None,
                failed_epoch=failed_epoch,
                duration_s=duration,
                finished_at=now,
                **({"host": host} if host else {}),
                **({"device": device} if device else {}),
                **({"mlflow_run_id": mlflow_run_id} if mlflow_run_id else {}),
            )
            if final_metrics is not None:
                conn.execute(delete(FinalMetric).where(FinalMetric.trial_id == trial_id))
                rows = [
                    {"trial_id": trial_id, "name": k, "value": _finite(v)} for k, v in final_metrics.items()
                ]
                if rows:
                    conn.execute(insert(FinalMetric), rows)
            arts = [{"trial_id": trial_id, "name": k, "uri": v} for k, v in (artifacts or {}).items()]
            self._upsert(conn, Artifact, arts, ("trial_id", "name"))
            if epoch_metrics:
                self._add_epoch_metrics(conn, trial_id, epoch_metrics)

        self._tx(run)

    def mark_reused(self, trial_id: int, original: TrialRecord) -> None:
        """COMPLETE by reuse: copy ``original``'s final and epoch metrics and artifacts; ``reused_from_id``
        points at the original (never at another copy); no training time is recorded."""
        root = original.reused_from_id or original.id

        def run(conn: Connection) -> None:
            self._update_trial(
                conn,
                trial_id,
                state=TrialState.COMPLETE.value,
                reused_from_id=root,
                error=None,
                failure_kind=None,
                failed_epoch=None,
                started_at=None,
                finished_at=utcnow(),
                duration_s=None,
            )
            for model, cols in (
                (FinalMetric, ("name", "value")),
                (EpochMetric, ("epoch", "name", "value")),
                (Artifact, ("name", "uri")),
            ):
                conn.execute(delete(model).where(model.trial_id == trial_id))
                src = select(literal(trial_id), *(getattr(model, c) for c in cols))
                src = src.where(model.trial_id == original.id)
                conn.execute(insert(model).from_select(["trial_id", *cols], src))

        self._tx(run)

    def set_references(
        self,
        trial_id: int,
        *,
        mlflow_run_id: str | None = None,
        optuna_study_name: str | None = None,
        optuna_trial_number: int | None = None,
    ) -> None:
        """Link a trial to its MLflow run and Optuna trial (used for reused trials, which never run)."""
        values: dict[str, Any] = {}
        if mlflow_run_id is not None:
            values["mlflow_run_id"] = mlflow_run_id
        if optuna_study_name is not None:
            values["optuna_study_name"] = optuna_study_name
        if optuna_trial_number is not None:
            values["optuna_trial_number"] = optuna_trial_number
        if values:
            self._tx(lambda conn: self._update_trial(conn, trial_id, **values))

    # -- reads ------------------------------------------------------------------------------------
