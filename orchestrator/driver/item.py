"""One trial the driver works on, across its attempts (driver-internal, mutable, never sent anywhere)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.db import TrialRecord
from orchestrator.plan import Cell
from orchestrator.search import CellSearch


@dataclass(eq=False)
class WorkItem:
    """A trial to run: its database record, cell, Optuna search and resolved configuration.

    ``optuna_trial`` is None for a grid trial until its first attempt starts (it is asked from Optuna only
    then).  ``fuse_group`` names the plan's fusion group the trial trains in (``fuse: auto``), or None.
    The attempt fields (``run_key`` to ``hard_killed``) are reset by each attempt's start.
    """

    record: TrialRecord
    cell: Cell
    search: CellSearch
    config: dict[str, Any]
    optuna_trial: Any = None
    fuse_group: str | None = None
    attempt: int = 0
    run_key: str | None = None  # the attempt's MLflow run as the background writer knows it (see .handover)
    run_id: str | None = None  # its id, once the writer has created it
    run_recorded: bool = False  # the id is recorded in Optuna (and the results database)
    worker: Any = None
    started: float = 0.0
    epochs: dict[int, dict[str, float]] = field(default_factory=dict)
    logged_epochs: set[int] = field(default_factory=set)
    prune_requested: bool = False
    hard_killed: bool = False

    @property
    def trial_id(self) -> int:
        return self.record.id
