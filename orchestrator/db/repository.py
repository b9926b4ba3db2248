"""The results database as the driver sees it: :class:`ResultsDB`."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy import Connection, and_, delete, func, insert, literal, or_, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine, make_url

from ielcore.errors import IELError, UnknownNameError
from orchestrator.db import engine as _eng
from orchestrator.db.models import (
    Artifact,
    Cell,
    DriverLock,
    EpochMetric,
    FinalMetric,
    Study,
    Trial,
    utcnow,
)
from orchestrator.db.records import CellRecord, FailureKind, StudyRecord, TrialRecord, TrialState

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_PG_MIGRATION_LOCK = 7_314_201_545  # pg_advisory_xact_lock key serialising concurrent upgrades


class DriverLocked(IELError):
    """Another live driver holds the study's lock."""

    def __init__(
        self, study_name: str, owner: str, heartbeat_age_s: float, stale_after_s: float | None
    ) -> None:
        self.study_name, self.owner = study_name, owner
        if stale_after_s is None:  # raised by heartbeat: we were stale and someone took over
            super().__init__(
                f"this driver lost the lock of study {study_name!r}; it is now held by {owner}. "
                f"Stop this driver: two drivers must never run one study."
            )
            return
        wait = max(stale_after_s - heartbeat_age_s, 0.0)
        super().__init__(
            f"study {study_name!r} is being driven by {owner} (last heartbeat {heartbeat_age_s:.0f} s ago). "
            f"Wait for that driver to finish or stop it; if its process is dead, its lock goes stale "
            f"in {wait:.0f} s and the study can then be resumed."
        )


class RecordNotFound(IELError, LookupError):
    """No study / trial with the given name or id."""


def alembic_config(url: str | None = None) -> Config:
    """An Alembic :class:`Config` for our migrations, built without an ini file."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        full = make_url(_eng.normalize_url(url)).render_as_string(hide_password=False)
        cfg.set_main_option("sqlalchemy.url", full.replace("%", "%%"))
    return cfg


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _check_failure_kind(kind: str | None) -> None:
    if kind is not None and kind not in set(FailureKind):
        raise ValueError(f"unknown failure_kind {kind!r}; valid kinds are: {', '.join(FailureKind)}")


_MISSING = object()


def _factor(factors: Mapping[str, Any], path: str) -> Any:
    if path in factors:
        return factors[path]
    node: Any = factors
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _stats(values: Sequence[float]) -> dict[str, Any]:
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"n": n, "mean": mean, "std": std, "min": min(values), "max": max(values)}


_TRIAL_COLUMNS = (
    *Trial.__table__.c,
    Study.name.label("study_name"),
    Cell.cell_key,
    Cell.factors_json,
    Cell.is_baseline,
)


_DECODED = {"factors", "config", "is_baseline", "state", "failure_kind", "final_metrics"}
_PLAIN_FIELDS = [f.name for f in fields(TrialRecord) if f.name not in _DECODED]


def _trial_record(m: Mapping[Any, Any], final_metrics: dict[str, float | None]) -> TrialRecord:
    return TrialRecord(
        **{name: m[name] for name in _PLAIN_FIELDS},
        factors=json.loads(m["factors_json"]),
        config=json.loads(m["config_json"]),
        is_baseline=bool(m["is_baseline"]),
        state=TrialState(m["state"]),
        failure_kind=FailureKind(m["failure_kind"]) if m["failure_kind"] else None,
        final_metrics=final_metrics,
    )


class ResultsDB:
    """Results database of the platform (SQLite file or PostgreSQL server).

    Contract: the driver is the single writer (workers never touch the database); every write is one
    transaction, retried on a lost connection or a locked file (:func:`~orchestrator.db.engine.with_retry`)
    and raising :class:`~orchestrator.db.engine.DatabaseUnavailable` when retries are exhausted.  Every
    read returns plain frozen records (:mod:`orchestrator.db.records`) or dicts, never live ORM rows.
    Not thread-safe: use one instance per thread.
    """

    def __init__(
        self,
        url: str,
        *,
        upgrade: bool = True,
        retry_attempts: int = _eng.DEFAULT_RETRY_ATTEMPTS,
        retry_backoff_s: float = _eng.DEFAULT_RETRY_BACKOFF_S,
        on_retry: Callable[[int, BaseException], None] | None = None,
    ) -> None:
        try:
            self.engine: Engine = _eng.make_engine(url)
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError) as e:
            raise _eng.DatabaseUnavailable(
                _eng.redact_url(url),
                f"not a usable database URL ({type(e).__name__})",
                "use sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB; check --db / $IEL_DB_URL",
            ) from None
        self.retry_attempts = retry_attempts
        self.retry_backoff_s = retry_backoff_s
        self.on_retry = on_retry
        try:
            _eng.check_reachable(self.engine)
            if upgrade:
                self.upgrade()
        except BaseException:
            self.engine.dispose()
            raise

    @property
    def url(self) -> str:
        """The database URL with the password replaced by ``***``."""
        return _eng.redact_url(self.engine.url)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> ResultsDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultsDB({self.url!r})"

    # -- plumbing ---------------------------------------------------------------------------------

    def _run(self, fn: Callable[[], T]) -> T:
        try:
            return _eng.with_retry(
                fn, attempts=self.retry_attempts, backoff=self.retry_backoff_s, on_retry=self.on_retry
            )
        except sa_exc.DBAPIError as e:
            if _eng.is_transient(e):
                raise _eng.database_unavailable(self.engine.url, e) from None
            raise

    def _tx(self, fn: Callable[[Connection], T]) -> T:
        def attempt() -> T:
            with self.engine.begin() as conn:
                return fn(conn)

        return self._run(attempt)

    def upgrade(self) -> None:
        """Bring the schema to the newest revision (``alembic upgrade head``); idempotent, and safe with
        Optuna's tables in the same database."""
        cfg = alembic_config()

        def attempt() -> None:
            with self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")

        try:
            self._run(attempt)
        except CommandError as e:  # e.g. a revision written by a newer version of this package
            raise _eng.DatabaseUnavailable(
                self.url,
                f"its schema cannot be upgraded by this version ({e})",
                "use the iel version that created this database, or another database (--db / $IEL_DB_URL)",
            ) from None

    def _study_id(self, conn: Connection, name: str) -> int:
        sid = conn.execute(select(Study.id).where(Study.name == name)).scalar()
        if sid is None:
            known = conn.execute(select(Study.name).order_by(Study.name)).scalars().all()
            raise RecordNotFound(
                f"no study named {name!r} in {self.url}; known studies: {', '.join(known) or '(none)'}"
            )
        return sid

    def _load_trials(self, conn: Connection, *where: Any) -> list[TrialRecord]:
        q = (
            select(*_TRIAL_COLUMNS)
            .join(Study, Study.id == Trial.study_id)
            .join(Cell, Cell.id == Trial.cell_id)
        )
        rows = conn.execute(q.where(*where).order_by(Trial.id)).all()
        metrics: dict[int, dict[str, float | None]] = {}
        q = select(FinalMetric.trial_id, FinalMetric.name, FinalMetric.value).join(
            Trial, Trial.id == FinalMetric.trial_id
        )
        for tid, name, value in conn.execute(q.where(*where)):
            metrics.setdefault(tid, {})[name] = value
        return [_trial_record(r._mapping, metrics.get(r.id, {})) for r in rows]

    def _get_trial(self, conn: Connection, trial_id: int) -> TrialRecord:
        found = self._load_trials(conn, Trial.id == trial_id)
        if not found:
            raise RecordNotFound(f"no trial with id {trial_id} in {self.url}")
        return found[0]

    def _update_trial(self, conn: Connection, trial_id: int, **values: Any) -> None:
        if conn.execute(update(Trial).where(Trial.id == trial_id).values(**values)).rowcount != 1:
            raise RecordNotFound(f"no trial with id {trial_id} in {self.url}")

    @staticmethod
    def _upsert(conn: Connection, table: Any, rows: list[dict[str, Any]], keys: Sequence[str]) -> None:
        if not rows:
            return
        stmt: Any = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)
        updates = {c: stmt.excluded[c] for c in rows[0] if c not in keys}
        conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=updates), rows)

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
            if tid is None:
                cell_study = conn.execute(select(Cell.study_id).where(Cell.id == cell_id)).scalar()
                if cell_study != study_id:
                    raise ValueError(f"cell {cell_id} does not belong to study {study_id} (got {cell_study})")
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
            return self._get_trial(conn, tid)

        return self._tx(run)

    def mark_running(
        self,
        trial_id: int,
        *,
        attempt: int,
        mlflow_run_id: str | None,
        host: str,
        device: str,
        optuna_study_name: str | None = None,
        optuna_trial_number: int | None = None,
    ) -> TrialRecord:
        """RUNNING, attempt number ``attempt`` (1 for the first), started now; returns the updated record
        (read in the same transaction)."""
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
    ) -> None:
        """Record the end of a trial: COMPLETE, PRUNED or FAILED (with the reason), its final metrics
        (replacing earlier ones), artifact URIs and ``(epoch, name, value)`` rows (as
        :meth:`add_epoch_metrics`), all in one transaction.  ``duration_s`` defaults to now - started_at."""
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

    def get_trial(self, trial_id: int) -> TrialRecord:
        return self._tx(lambda conn: self._get_trial(conn, trial_id))

    def find_complete_by_hash(
        self, trial_hash: str, exclude_study_id: int | None = None
    ) -> TrialRecord | None:
        """An original (not itself reused) COMPLETE trial with this hash, in any study (the oldest)."""

        def run(conn: Connection) -> TrialRecord | None:
            q = select(Trial.id).where(
                Trial.trial_hash == trial_hash,
                Trial.state == TrialState.COMPLETE.value,
                Trial.reused_from_id.is_(None),
            )
            if exclude_study_id is not None:
                q = q.where(Trial.study_id != exclude_study_id)
            tid = conn.execute(q.order_by(Trial.id).limit(1)).scalar()
            return None if tid is None else self._get_trial(conn, tid)

        return self._tx(run)

    def trials(self, study_name: str, states: Collection[TrialState] | None = None) -> list[TrialRecord]:
        """The study's trials (optionally only those in ``states``), by id."""

        def run(conn: Connection) -> list[TrialRecord]:
            where = [Trial.study_id == self._study_id(conn, study_name)]
            if states is not None:
                where.append(Trial.state.in_([TrialState(s).value for s in states]))
            return self._load_trials(conn, *where)

        return self._tx(run)

    def stale_running(self, study_name: str) -> list[TrialRecord]:
        """RUNNING trials; at driver start-up these were left by a driver that died."""
        return self.trials(study_name, [TrialState.RUNNING])

    def epoch_metrics(self, trial_id: int) -> list[tuple[int, str, float | None]]:
        """``(epoch, name, value)`` rows sorted by epoch then name."""
        q = select(EpochMetric.epoch, EpochMetric.name, EpochMetric.value)
        q = q.where(EpochMetric.trial_id == trial_id).order_by(EpochMetric.epoch, EpochMetric.name)
        return self._tx(lambda conn: [(e, n, v) for e, n, v in conn.execute(q)])

    def _counts(self, conn: Connection, study_id: int | None = None) -> dict[int, dict[str, int]]:
        q = select(Trial.study_id, Trial.state, func.count(), func.count(Trial.reused_from_id))
        if study_id is not None:
            q = q.where(Trial.study_id == study_id)
        out: dict[int, dict[str, int]] = {}
        for sid, state, n, n_reused in conn.execute(q.group_by(Trial.study_id, Trial.state)):
            counts = out.setdefault(sid, {s.value: 0 for s in TrialState} | {"reused": 0})
            counts[state] = n
            counts["reused"] += n_reused
        return out

    def _studies(self, conn: Connection, name: str | None = None) -> list[StudyRecord]:
        q = select(*Study.__table__.c).order_by(Study.name)
        if name is not None:
            q = q.where(Study.name == name)
        studies = conn.execute(q).all()
        counts = self._counts(conn, studies[0].id if name is not None and studies else None)
        empty = {s.value: 0 for s in TrialState} | {"reused": 0}
        return [
            StudyRecord(
                id=r.id,
                name=r.name,
                description=r.description,
                spec=json.loads(r.spec_json),
                created_at=r.created_at,
                updated_at=r.updated_at,
                counts=counts.get(r.id, dict(empty)),
            )
            for r in studies
        ]

    def studies(self) -> list[StudyRecord]:
        """Every study with its trial counts by state, by name."""
        return self._tx(self._studies)

    def study(self, name: str) -> StudyRecord | None:
        """The study named ``name`` with its counts, or None."""
        found = self._tx(lambda conn: self._studies(conn, name))
        return found[0] if found else None

    def cells(self, study_name: str) -> list[CellRecord]:
        def run(conn: Connection) -> list[CellRecord]:
            q = select(*Cell.__table__.c).where(Cell.study_id == self._study_id(conn, study_name))
            return [
                CellRecord(
                    id=r.id,
                    study_id=r.study_id,
                    cell_key=r.cell_key,
                    factors=json.loads(r.factors_json),
                    is_baseline=bool(r.is_baseline),
                    optuna_study_name=r.optuna_study_name,
                )
                for r in conn.execute(q.order_by(Cell.id))
            ]

        return self._tx(run)

    def status_counts(self, study_name: str) -> dict[str, int]:
        """Number of trials per state, plus ``"reused"`` (COMPLETE trials copied from another)."""

        def run(conn: Connection) -> dict[str, int]:
            sid = self._study_id(conn, study_name)
            return self._counts(conn, sid).get(sid, {s.value: 0 for s in TrialState} | {"reused": 0})

        return self._tx(run)

    def aggregate(
        self, study_name: str, metric: str = "dice", group_by: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Statistics of a final metric over COMPLETE trials (reused ones included), per cell or per
        group of factor values.

        Each row holds the group's keys (per cell: ``cell_key``, ``is_baseline`` and the cell's factors;
        with ``group_by``: those dotted factor paths), then ``n``, ``mean``, ``std`` (sample standard
        deviation, ``sqrt(sum((x - mean)^2) / (n - 1))``, None when n < 2), ``min`` and ``max`` (None when
        n = 0).  Missing or non-finite values are left out.  Rows follow the cells' creation order.
        """

        def run(conn: Connection) -> tuple[Sequence[Any], Sequence[Any]]:
            sid = self._study_id(conn, study_name)
            cells = conn.execute(
                select(Cell.id, Cell.cell_key, Cell.factors_json, Cell.is_baseline)
                .where(Cell.study_id == sid)
                .order_by(Cell.id)
            ).all()
            on = and_(FinalMetric.trial_id == Trial.id, FinalMetric.name == metric)
            values = conn.execute(
                select(Trial.cell_id, FinalMetric.value)
                .join(FinalMetric, on)
                .where(Trial.study_id == sid, Trial.state == TrialState.COMPLETE.value)
            ).all()
            return cells, values

        cells, values = self._tx(run)
        by_cell: dict[int, list[float]] = {}
        for cell_id, value in values:
            if value is not None:
                by_cell.setdefault(cell_id, []).append(value)
        factors = {c.id: json.loads(c.factors_json) for c in cells}
        if group_by is None:
            return [
                {"cell_key": c.cell_key, "is_baseline": bool(c.is_baseline), **factors[c.id]}
                | _stats(by_cell.get(c.id, []))
                for c in cells
            ]
        for name in group_by:
            if cells and all(_factor(f, name) is _MISSING for f in factors.values()):
                valid = sorted({k for f in factors.values() for k in f})
                raise UnknownNameError(
                    f"unknown factor {name!r} in study {study_name!r}; valid factors are: {', '.join(valid)}",
                    path="group_by",
                )
        groups: dict[str, tuple[dict[str, Any], list[float]]] = {}
        for c in cells:
            keys = {}
            for name in group_by:
                v = _factor(factors[c.id], name)
                keys[name] = None if v is _MISSING else v
            _, vals = groups.setdefault(_dumps(list(keys.values())), (keys, []))
            vals.extend(by_cell.get(c.id, []))
        return [keys | _stats(vals) for keys, vals in groups.values()]

    # -- driver lock ------------------------------------------------------------------------------

    def acquire_driver_lock(
        self, study_name: str, owner: str, stale_after_s: float = 60, *, now: datetime | None = None
    ) -> None:
        """Take the study's driver lock for ``owner`` (``host:pid``).  Succeeds when it is free, already
        ours, or its heartbeat is older than ``stale_after_s``; else raises :class:`DriverLocked`."""
        now = now or utcnow()
        cutoff = now - timedelta(seconds=stale_after_s)

        def run(conn: Connection) -> tuple[str, datetime] | None:
            taken = conn.execute(
                update(DriverLock)
                .where(
                    DriverLock.study_name == study_name,
                    or_(DriverLock.owner == owner, DriverLock.heartbeat_at < cutoff),
                )
                .values(owner=owner, acquired_at=now, heartbeat_at=now)
            ).rowcount
            if taken:
                return None
            held = conn.execute(
                select(DriverLock.owner, DriverLock.heartbeat_at).where(DriverLock.study_name == study_name)
            ).first()
            if held is not None:
                return held.owner, held.heartbeat_at
            conn.execute(
                insert(DriverLock).values(
                    study_name=study_name, owner=owner, acquired_at=now, heartbeat_at=now
                )
            )
            return None

        try:
            held = self._tx(run)
        except sa_exc.IntegrityError:  # another driver inserted the lock between our read and insert
            held = self._tx(run)
        if held is not None:
            raise DriverLocked(study_name, held[0], (now - held[1]).total_seconds(), stale_after_s)

    def heartbeat_driver_lock(self, study_name: str, owner: str, *, now: datetime | None = None) -> None:
        """Refresh the lock's heartbeat; raises :class:`DriverLocked` if another driver took it over."""
        now = now or utcnow()

        def run(conn: Connection) -> tuple[str, datetime] | None:
            where = and_(DriverLock.study_name == study_name, DriverLock.owner == owner)
            if conn.execute(update(DriverLock).where(where).values(heartbeat_at=now)).rowcount:
                return None
            held = conn.execute(
                select(DriverLock.owner, DriverLock.heartbeat_at).where(DriverLock.study_name == study_name)
            ).first()
            return (held.owner, held.heartbeat_at) if held is not None else ("nobody (lock released)", now)

        held = self._tx(run)
        if held is not None:
            raise DriverLocked(study_name, held[0], (now - held[1]).total_seconds(), None)

    def release_driver_lock(self, study_name: str, owner: str) -> None:
        """Drop the lock if ``owner`` holds it (no error otherwise)."""
        where = and_(DriverLock.study_name == study_name, DriverLock.owner == owner)
        self._tx(lambda conn: conn.execute(delete(DriverLock).where(where)))

    # -- ad-hoc SQL -------------------------------------------------------------------------------

    def readonly_query(self, sql: str, limit: int | None = None) -> tuple[list[str], list[tuple]]:
        """Run one read-only SQL statement (see :func:`orchestrator.db.engine.readonly_query`); writes
        raise :class:`~orchestrator.db.engine.QueryRefused` and change nothing."""
        return _eng.readonly_query(self.engine, sql, limit)
