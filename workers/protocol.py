"""The typed protocol between the driver and a worker: a :class:`TrialTask` in, a :class:`TrialOutcome` out.

Both are frozen snapshots that Ray pickles across processes.  A worker never raises out of a task: every
failure is an outcome with a :class:`~ielcore.states.FailureKind` and a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ielcore.result import TrialResult
from ielcore.states import FailureKind, TrialState


@dataclass(frozen=True)
class TrialTask:
    """One attempt of one trial, as the driver hands it to a worker."""

    trial_id: int
    attempt: int
    config: dict[str, Any]
    # The MLflow run the worker uploads the artifacts to; None with a tracking_uri: the driver creates the
    # run while the attempt trains and hands its id over with TrialWorker.set_run.  No tracking_uri: no upload.
    run_id: str | None = None
    tracking_uri: str | None = None
    timeout_s: float | None = None
    fuse_group: str | None = None  # the plan's fusion group this attempt trains in (None: alone)
    trial_hash: str | None = None  # the identity the driver planned (config + code): checked before training


@dataclass(frozen=True)
class TrialOutcome:
    """What a worker hands back for one attempt."""

    trial_id: int
    attempt: int
    state: TrialState  # COMPLETE | PRUNED | FAILED
    host: str = ""
    device: str = ""
    failure_kind: FailureKind | None = None
    error: str | None = None
    failed_epoch: int | None = None
    traceback: str | None = None
    result: TrialResult | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0
    replace_worker: bool = False  # the worker is unusable (out of memory, a failed health check)
    fused_members: int = 1  # how many trials trained together in this attempt's model
