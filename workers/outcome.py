"""What a worker hands back for one attempt: a plain snapshot, never an exception."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


class FailureKind:
    ERROR = "error"  # an exception in the trial
    DIVERGED = "diverged"  # non-finite loss (the epoch is recorded)
    TIMEOUT = "timeout"  # past the study's timeout_s
    OOM = "oom"  # out of memory (CPU allocation or the GPU memory fraction)
    WORKER_DIED = "worker_died"  # the worker process or its node was lost
    DRIVER_DIED = "driver_died"  # the driver was killed while the trial ran (found on resume)


@dataclass
class Outcome:
    trial_id: int
    attempt: int
    host: str
    device: str
    state: str = "FAILED"  # COMPLETE | PRUNED | FAILED
    failure_kind: str | None = None
    error: str | None = None
    failed_epoch: int | None = None
    traceback: str | None = None
    result: dict[str, Any] | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0
    replace_worker: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
