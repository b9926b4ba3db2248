"""Plain, frozen snapshots of database rows.

The results database never hands out live ORM objects: every read returns one of these records, so a
record can be pickled, sent to a Ray worker or cached without touching the database again.  The dict
fields (``factors``, ``config``, ``final_metrics``, ``spec``, ``counts``) are fresh copies; treat them as
read-only.  States are the enums of :mod:`ielcore.states`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ielcore.states import FailureKind, TrialState


@dataclass(frozen=True)
class TrialRecord:
    """One row of ``iel_trials`` with its study, cell and final metrics."""

    id: int
    study_id: int
    study_name: str
    cell_id: int
    cell_key: str
    factors: dict[str, Any]
    is_baseline: bool
    seed: int
    search_index: int | None
    trial_hash: str
    config: dict[str, Any]
    state: TrialState
    failure_kind: FailureKind | None  # why a FAILED trial stopped
    error: str | None
    failed_epoch: int | None
    attempts: int
    reused_from_id: int | None
    optuna_study_name: str | None
    optuna_trial_number: int | None
    mlflow_run_id: str | None
    host: str | None
    device: str | None
    code_version: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None
    final_metrics: dict[str, float | None] = field(default_factory=dict)

    @property
    def reused(self) -> bool:
        """True when this trial's results were copied from an identical, already finished trial."""
        return self.reused_from_id is not None


@dataclass(frozen=True)
class CellRecord:
    """One ablation cell (a point of the factor grid) of a study."""

    id: int
    study_id: int
    cell_key: str
    factors: dict[str, Any]
    is_baseline: bool
    optuna_study_name: str | None


@dataclass(frozen=True)
class StudyRecord:
    """A study with its trial counts: ``counts`` maps every :class:`TrialState` value (and ``"reused"``)
    to a number of trials."""

    id: int
    name: str
    description: str
    spec: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    counts: dict[str, int]

    @property
    def n_trials(self) -> int:
        return sum(self.counts.get(s.value, 0) for s in TrialState)


__all__ = ["CellRecord", "FailureKind", "StudyRecord", "TrialRecord", "TrialState"]
