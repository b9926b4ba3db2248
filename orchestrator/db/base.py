"""The plumbing of the results database: engine, retries, migrations, record decoding (:class:`DBCore`)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy import Connection, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine, make_url

from ielcore.errors import IELError
from orchestrator.db import engine as _eng
from orchestrator.db.models import (
    Cell,
    FinalMetric,
    Study,
    Trial,
)
from orchestrator.db.records import FailureKind, TrialRecord, TrialState

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_PG_MIGRATION_LOCK = 7_314_201_545  # pg_advisory_xact_lock key serialising concurrent upgrades


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


class DBCore:
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
        # cell id -> (study id, study name, cell key, factors JSON, baseline), as this writer last read it
        self._cells: dict[int, tuple[int, str, str, str, bool]] = {}
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

    def __enter__(self) -> DBCore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

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

    def _cell_info(self, conn: Connection, cell_id: int) -> tuple[int, str, str, str, bool] | None:
        """The cell's study (id, name), key, factors JSON and baseline flag (cached per instance)."""
        if cell_id not in self._cells:
            q = select(Cell.study_id, Study.name, Cell.cell_key, Cell.factors_json, Cell.is_baseline)
            row = conn.execute(q.join(Study, Study.id == Cell.study_id).where(Cell.id == cell_id)).first()
            if row is None:
                return None
            self._cells[cell_id] = (row[0], row[1], row[2], row[3], bool(row[4]))
        return self._cells[cell_id]

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
