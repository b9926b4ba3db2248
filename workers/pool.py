"""A pool of long-lived :class:`~workers.actor.TrialWorker` actors.

The driver asks the pool for an idle worker, hands it a trial, and gives the worker back when the trial
ends; a worker that died (process killed, node lost) or became unusable (out of memory) is replaced by a
fresh actor, which Ray places on whatever node has room.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import ray

from workers.actor import TrialWorker


@dataclass(frozen=True)
class WorkerResources:
    cpus: float = 1.0
    gpus: float = 0.0
    gpu_memory_fraction: float | None = None


_RemoteWorker = ray.remote(max_concurrency=4, max_restarts=0)(TrialWorker)


class WorkerPool:
    """Creates up to ``size`` workers lazily; not thread safe (the driver loop owns it)."""

    def __init__(self, size: int, resources: WorkerResources, env: dict[str, str] | None = None) -> None:
        self.size = size
        self.resources = resources
        self.env = env or {}
        self._idle: list[Any] = []
        self._busy: set[Any] = set()
        self._created = 0

    def _new(self) -> Any:
        res = self.resources
        fraction = res.gpu_memory_fraction
        if fraction is None and 0 < res.gpus < 1:
            fraction = res.gpus
        options: dict[str, Any] = {"num_cpus": res.cpus, "num_gpus": res.gpus}
        if self.env:
            options["runtime_env"] = {"env_vars": self.env}
        worker = _RemoteWorker.options(**options).remote(self._created, fraction if res.gpus > 0 else None)
        self._created += 1
        return worker

    def acquire(self) -> Any | None:
        """An idle worker, creating one if the pool is below its size; None when all are busy."""
        if self._idle:
            worker = self._idle.pop()
        elif len(self._busy) < self.size:
            worker = self._new()
        else:
            return None
        self._busy.add(worker)
        return worker

    def release(self, worker: Any) -> None:
        self._busy.discard(worker)
        self._idle.append(worker)

    def discard(self, worker: Any) -> None:
        """Kill a dead or unusable worker; the next acquire creates a replacement."""
        self._busy.discard(worker)
        with contextlib.suppress(Exception):
            ray.kill(worker, no_restart=True)

    @property
    def busy(self) -> set[Any]:
        return set(self._busy)

    @property
    def created(self) -> int:
        return self._created

    def shutdown(self) -> None:
        for worker in list(self._idle) + list(self._busy):
            with contextlib.suppress(Exception):
                ray.kill(worker, no_restart=True)
        self._idle.clear()
        self._busy.clear()
