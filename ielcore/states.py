"""The one vocabulary of trial states, shared by the trainer, the workers and the driver.

* :class:`RunStatus` -- how a training run ended, as the trainer (``ielcore.train``) sees it.
* :class:`TrialState` -- a trial's life cycle in the results database, Optuna and MLflow:
  ``PENDING -> RUNNING -> COMPLETE | PRUNED | FAILED``.
* :class:`FailureKind` -- why a FAILED trial stopped.

Every enum is a :class:`enum.StrEnum`: its value is the string stored in the database and in result files.
"""

from __future__ import annotations

import enum


class RunStatus(enum.StrEnum):
    COMPLETE = "complete"
    PRUNED = "pruned"  # the reporter asked to stop
    DIVERGED = "diverged"  # non-finite loss


class TrialState(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAILED = "FAILED"

    @property
    def is_finished(self) -> bool:
        return self in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED)


class FailureKind(enum.StrEnum):
    ERROR = "error"  # an exception in the trial
    DIVERGED = "diverged"  # non-finite loss (the epoch is recorded)
    TIMEOUT = "timeout"  # past the study's timeout_s
    OOM = "oom"  # out of memory (CPU allocation or the GPU memory fraction)
    WORKER_DIED = "worker_died"  # the worker process or its node was lost
    DRIVER_DIED = "driver_died"  # the driver was killed while the trial ran (found on resume)
