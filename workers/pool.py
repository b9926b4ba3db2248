"""A pool of long-lived :class:`~workers.actor.TrialWorker` actors.

The driver asks the pool for an idle worker, hands it a trial, and gives the worker back when the trial
ends; a worker that died (process killed, node lost) or became unusable (out of memory) is replaced by a
fresh actor, which Ray places on whatever node has room.

A new actor is handed out only once it has started (its first ``ping`` answered).  An actor the cluster
cannot place (more workers than the cluster has room for, or a node lost) just stays *starting*: no trial
ever waits on it, so the study goes on with the workers that run, and the pending actor is used as soon as
room appears (a node joins, or the autoscaler adds one).
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


_RemoteWorker = ray.remote(max_concurrency=4, max_restarts=0)(TrialWorker)  # type: ignore[call-overload]


class WorkerPool:
    """Creates up to ``size`` workers lazily; not thread safe (the driver loop owns it)."""

    def __init__(self, size: int, resources: WorkerResources, env: dict[str, str] | None = None) -> None:
        self.size = size
        self.resources = resources
        self.env = env or {}
        self._idle: list[Any] = []
        self._busy: set[Any] = set()
        self._starting: dict[Any, Any] = {}  # worker -> ref of its first ping
        self._created = 0
        self.start_failures = 0  # consecutive workers that died before answering their first ping
        self.last_start_error: str | None = None

    def _new(self) -> Any:
        res = self.resources
        fraction = res.gpu_memory_fraction
        if fraction is None and 0 < res.gpus < 1:
            fraction = res.gpus
        options: dict[str, Any] = {"num_cpus": res.cpus, "num_gpus": res.gpus}
        if self.env:
            options["runtime_env"] = {"env_vars": self.env}
        worker = _RemoteWorker.options(**options).remote(
            self._created, fraction if res.gpus > 0 else None, max(1, int(res.cpus))
        )
        self._created += 1
        return worker

    def _promote(self, timeout: float = 0.0) -> None:
        """Move workers whose first ping answered to the idle list (waiting up to ``timeout`` s)."""
        if not self._starting:
            return
        refs = {ref: worker for worker, ref in self._starting.items()}
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout)
        for ref in ready:
            worker = refs[ref]
            del self._starting[worker]
            try:
                ray.get(ref)
            except ray.exceptions.RayError as e:
                self.start_failures += 1
                self.last_start_error = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
                with contextlib.suppress(Exception):
                    ray.kill(worker, no_restart=True)
                continue
            self.start_failures = 0
            self._idle.append(worker)

    def acquire(self) -> Any | None:
        """A started idle worker, or None (then :meth:`grow` starts more)."""
        self._promote()
        if not self._idle:
            return None
        worker = self._idle.pop()
        self._busy.add(worker)
        return worker

    def grow(self, waiting: int) -> None:
        """Start workers for ``waiting`` trials that found no idle one (at most ``size`` workers in all)."""
        room = self.size - len(self._busy) - len(self._idle) - len(self._starting)
        for _ in range(max(0, min(room, waiting - len(self._idle) - len(self._starting)))):
            worker = self._new()
            self._starting[worker] = worker.ping.remote()

    def wait_started(self, timeout: float) -> None:
        """Block up to ``timeout`` s until a starting worker answers (or dies)."""
        self._promote(timeout)

    def release(self, worker: Any) -> None:
        """Give a busy worker back (idempotent: every member of a fused group releases the same worker)."""
        if worker not in self._busy:
            return
        self._busy.discard(worker)
        self._idle.append(worker)

    def discard(self, worker: Any) -> None:
        """Kill a dead or unusable worker; the next acquire starts a replacement."""
        self._busy.discard(worker)
        self._starting.pop(worker, None)
        if worker in self._idle:
            self._idle.remove(worker)
        with contextlib.suppress(Exception):
            ray.kill(worker, no_restart=True)

    @property
    def busy(self) -> set[Any]:
        return set(self._busy)

    @property
    def starting(self) -> int:
        return len(self._starting)

    @property
    def created(self) -> int:
        return self._created

    def shutdown(self) -> None:
        for worker in list(self._idle) + list(self._busy) + list(self._starting):
            with contextlib.suppress(Exception):
                ray.kill(worker, no_restart=True)
        self._idle.clear()
        self._busy.clear()
        self._starting.clear()
