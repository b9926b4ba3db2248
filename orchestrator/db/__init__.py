"""Results database: schema (SQLAlchemy models + Alembic migrations), engines and the driver's repository."""

from orchestrator.db.engine import (
    DatabaseUnavailable,
    QueryError,
    QueryRefused,
    check_reachable,
    make_engine,
    normalize_url,
    readonly_query,
    redact_url,
    with_retry,
)
from orchestrator.db.models import TRIAL_SUMMARY_COLUMNS
from orchestrator.db.records import CellRecord, FailureKind, StudyRecord, TrialRecord, TrialState
from orchestrator.db.repository import DriverLocked, RecordNotFound, ResultsDB, alembic_config

__all__ = [
    "FailureKind",
    "TRIAL_SUMMARY_COLUMNS",
    "CellRecord",
    "DatabaseUnavailable",
    "DriverLocked",
    "QueryError",
    "QueryRefused",
    "RecordNotFound",
    "ResultsDB",
    "StudyRecord",
    "TrialRecord",
    "TrialState",
    "alembic_config",
    "check_reachable",
    "make_engine",
    "normalize_url",
    "readonly_query",
    "redact_url",
    "with_retry",
]
