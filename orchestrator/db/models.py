"""SQLAlchemy models of the results database (schema revision ``0001``).

Every table carries the ``iel_`` prefix so it can share a database with Optuna's RDB storage (tables
``studies``, ``trials``, ``alembic_version``, ...); our Alembic version table is ``iel_alembic_version``.
The schema is created by the Alembic migrations in ``orchestrator/migrations`` (never by
``create_all``); these models must match them, which ``tests/test_db.py`` checks with Alembic's
``compare_metadata``.

JSON documents (spec, factors, config) are stored as text (``json.dumps(..., sort_keys=True)``) so the
same SQL works on SQLite and PostgreSQL.  Non-finite metric values are stored as NULL (SQLite cannot
store NaN).  Timestamps are UTC.

The view ``iel_trial_summary`` (created by the migration, see :data:`TRIAL_SUMMARY_COLUMNS`) is the
stable, documented way to query results with plain SQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from orchestrator.db.records import TrialState

VERSION_TABLE = "iel_alembic_version"
TABLE_PREFIX = "iel_"

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TRIAL_STATES = tuple(s.value for s in TrialState)

TRIAL_SUMMARY_COLUMNS: dict[str, str] = {
    "trial_id": "iel_trials.id",
    "study": "study name",
    "cell_key": "the cell's key (unique within the study)",
    "factors": "the cell's factor values, JSON text keyed by dotted factor path",
    "is_baseline": "whether the cell is the study's baseline arm",
    "seed": "the trial's seed (replicate)",
    "search_index": "index of the trial in its cell's Optuna search (NULL without search)",
    "state": "PENDING | RUNNING | COMPLETE | PRUNED | FAILED",
    "failure_kind": "error | diverged | timeout | oom | worker_died | driver_died | cancelled (NULL when not failed)",
    "attempts": "number of attempts made",
    "reused": "1 when the result was copied from an identical finished trial, else 0",
    "reused_from_id": "the trial it was copied from",
    "trial_hash": "identity: content hash of the resolved configuration and the code fingerprint",
    "mlflow_run_id": "MLflow run of the trial",
    "duration_s": "wall-clock training time in seconds",
    "finished_at": "UTC time the trial finished",
    "dice": "final Dice score (NULL if not recorded)",
    "miou": "final mean IoU",
    "pixel_acc": "final pixel accuracy",
    "val_loss": "final validation loss",
    "metrics_json": "all final metrics as a JSON object text",
    "optuna_trial_number": "number of the trial in its cell's Optuna study (NULL before it started)",
    "params": "the searched parameters and their values, JSON object text keyed by dotted path ({} without search)",
    "error": "the reason a trial failed or was pruned (NULL otherwise)",
    "failed_epoch": "epoch at which a trial failed (NULL when unknown or not failed)",
}
"""Columns of the stable view ``iel_trial_summary`` (one row per trial), in order."""


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores it naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Study(Base):
    __tablename__ = "iel_studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    spec_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Cell(Base):
    __tablename__ = "iel_cells"
    __table_args__ = (UniqueConstraint("study_id", "cell_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("iel_studies.id", ondelete="CASCADE"))
    cell_key: Mapped[str] = mapped_column(String(500))
    factors_json: Mapped[str] = mapped_column(Text)
    is_baseline: Mapped[bool] = mapped_column(Boolean, default=False)
    optuna_study_name: Mapped[str | None] = mapped_column(String(500))


class Trial(Base):
    __tablename__ = "iel_trials"
    __table_args__ = (
        UniqueConstraint("study_id", "trial_hash"),
        CheckConstraint(f"state IN ({', '.join(repr(s) for s in TRIAL_STATES)})", name="state"),
        Index(None, "study_id", "state"),
        Index(None, "cell_id"),
        Index(None, "trial_hash"),
        Index(None, "reused_from_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("iel_studies.id", ondelete="CASCADE"))
    cell_id: Mapped[int] = mapped_column(ForeignKey("iel_cells.id", ondelete="CASCADE"))
    seed: Mapped[int] = mapped_column(Integer)
    search_index: Mapped[int | None] = mapped_column(Integer)
    trial_hash: Mapped[str] = mapped_column(String(64))
    config_json: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=TrialState.PENDING.value)
    failure_kind: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    failed_epoch: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    reused_from_id: Mapped[int | None] = mapped_column(ForeignKey("iel_trials.id", ondelete="SET NULL"))
    optuna_study_name: Mapped[str | None] = mapped_column(String(500))
    optuna_trial_number: Mapped[int | None] = mapped_column(Integer)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    host: Mapped[str | None] = mapped_column(String(255))
    device: Mapped[str | None] = mapped_column(String(255))
    code_version: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_s: Mapped[float | None] = mapped_column(Float)


class EpochMetric(Base):
    __tablename__ = "iel_epoch_metrics"

    trial_id: Mapped[int] = mapped_column(ForeignKey("iel_trials.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float)


class FinalMetric(Base):
    __tablename__ = "iel_final_metrics"

    trial_id: Mapped[int] = mapped_column(ForeignKey("iel_trials.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float)


class Artifact(Base):
    __tablename__ = "iel_artifacts"

    trial_id: Mapped[int] = mapped_column(ForeignKey("iel_trials.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    uri: Mapped[str] = mapped_column(Text)


class DriverLock(Base):
    __tablename__ = "iel_driver_locks"

    study_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Comparison(Base):
    """One arm-vs-baseline comparison of a study with ``decide:`` (view ``iel_decisions``)."""

    __tablename__ = "iel_comparisons"

    cell_id: Mapped[int] = mapped_column(ForeignKey("iel_cells.id", ondelete="CASCADE"), primary_key=True)
    metric: Mapped[str] = mapped_column(String(100), primary_key=True)
    baseline_cell_id: Mapped[int] = mapped_column(ForeignKey("iel_cells.id", ondelete="CASCADE"))
    n: Mapped[int] = mapped_column(Integer)
    estimate: Mapped[float | None] = mapped_column(Float)
    cs_low: Mapped[float | None] = mapped_column(Float)
    cs_high: Mapped[float | None] = mapped_column(Float)
    decision: Mapped[str] = mapped_column(String(16))
    decided_at_n: Mapped[int | None] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(16))
    alpha: Mapped[float] = mapped_column(Float)
    margin: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


DECISIONS_COLUMNS: dict[str, str] = {
    "study": "study name",
    "cell_key": "the arm's cell",
    "baseline_key": "the baseline cell of its row (paired on seed)",
    "metric": "decide.metric",
    "n": "number of seed pairs",
    "estimate": "mean paired difference, arm - baseline",
    "cs_low": "lower end of the anytime-valid confidence sequence (NULL: unbounded)",
    "cs_high": "upper end (NULL: unbounded)",
    "decision": "better | worse | equivalent | futile (t_sprt) | undecided",
    "decided_at_n": "the number of pairs at which the decision was reached (NULL while undecided)",
    "method": "t | bounded | t_sprt",
    "alpha": "the level of this comparison's sequence (decide.alpha / number of comparisons)",
    "margin": "decide.margin",
    "updated_at": "UTC time the decision was last computed",
}
"""Columns of the view ``iel_decisions`` (one row per comparison), in order."""
