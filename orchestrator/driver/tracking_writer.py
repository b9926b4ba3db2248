"""MLflow writes off the driver's critical path: one background thread, in order, batched, flushed on close.

The driver creates runs itself (it needs their ids at once) and hands everything else -- params, per-epoch
metrics, a run's end -- to a :class:`TrackingWriter`.  The writer applies the writes in the order they were
submitted; what is queued when it wakes is one batch, in which a run's metrics are gathered into one
``log_batch`` (with the run's end when that is in the batch too).  :meth:`TrackingWriter.close` drains the
queue (normal end, exception, Ctrl-C alike).  A crash that loses queued writes leaves runs RUNNING, which
the next submit closes (:meth:`~orchestrator.tracking.Tracker.close_stale`); the results database, not
MLflow, is the record of a trial's outcome.  Thread safety: submit from one thread (the driver loop).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.tracking import Tracker, TrackingUnavailable

_log = logging.getLogger("orchestrator.tracking")
Rows = list[tuple[int, str, float]]


@dataclass(frozen=True)
class _Params:
    run_id: str
    config: Mapping[str, Any]


@dataclass(frozen=True)
class _Metrics:
    run_id: str
    rows: Rows


@dataclass(frozen=True)
class _End:
    run_id: str
    status: str
    error: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    rows: Rows = field(default_factory=list)


@dataclass(frozen=True)
class _Refresh:
    """Recompute and write the study's summaries (see :mod:`orchestrator.driver.summaries`)."""

    fn: Callable[[Tracker], None]


_Op = _Params | _Metrics | _End | _Refresh
_STOP = object()


class TrackingWriter:
    """Applies a :class:`Tracker`'s writes on a background thread (see the module docstring)."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self._queue: queue.Queue[Any] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="iel-mlflow-writer", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------------------------- submitting
    def log_params(self, run_id: str, config: Mapping[str, Any]) -> None:
        self._queue.put(_Params(run_id, config))

    def log_metrics(self, run_id: str, rows: Sequence[tuple[int, str, float]]) -> None:
        self._queue.put(_Metrics(run_id, list(rows)))

    def finish(
        self,
        run_id: str,
        status: str,
        error: str | None = None,
        tags: Mapping[str, str] | None = None,
        metrics: Sequence[tuple[int, str, float]] = (),
    ) -> None:
        self._queue.put(_End(run_id, status, error, dict(tags or {}), list(metrics)))

    def refresh(self, fn: Callable[[Tracker], None]) -> None:
        """Run ``fn(tracker)`` on the writer's thread after the writes queued before it; of several refreshes
        waiting in one batch only the last runs."""
        self._queue.put(_Refresh(fn))

    @property
    def error(self) -> BaseException | None:
        """The first write that failed (later writes are still tried)."""
        return self._error

    def flush(self) -> None:
        """Block until every write submitted so far is applied."""
        self._queue.join()

    def close(self) -> None:
        """Apply every queued write, then stop the thread; raise :class:`TrackingUnavailable` if one failed."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        if self._error is not None:
            raise TrackingUnavailable(
                f"some MLflow writes failed ({type(self._error).__name__}: {str(self._error)[:300]}); the "
                "results database holds every outcome, and the next `iel submit` of this study closes the "
                "runs left RUNNING"
            ) from self._error

    # ------------------------------------------------------------------------------------- applying
    def _work(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = _STOP in batch
            try:
                self._apply([op for op in batch if op is not _STOP])
            finally:
                for _ in batch:
                    self._queue.task_done()
            if stop:
                return

    def _apply(self, ops: list[_Op]) -> None:
        """Apply one batch in order, gathering each run's metrics until its end (or the batch's end)."""
        pending: dict[str, Rows] = {}
        last_refresh = max((i for i, op in enumerate(ops) if isinstance(op, _Refresh)), default=-1)
        for i, op in enumerate(ops):
            if isinstance(op, _Refresh):
                if i == last_refresh:
                    for run_id, rows in pending.items():
                        self._call(self.tracker.log_metrics, run_id, rows)
                    pending.clear()
                    self._call(op.fn, self.tracker)
                continue
            if isinstance(op, _Metrics):
                pending.setdefault(op.run_id, []).extend(op.rows)
            elif isinstance(op, _End):
                rows = pending.pop(op.run_id, []) + op.rows
                self._call(self.tracker.finish, op.run_id, op.status, op.error, op.tags, rows)
            else:
                self._call(self.tracker.log_params, op.run_id, op.config)
        for run_id, rows in pending.items():
            self._call(self.tracker.log_metrics, run_id, rows)

    def _call(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as e:  # kept, reported at close; the next submit repairs the runs
            _log.warning(
                "MLflow write %s failed: %s",
                getattr(fn, "__name__", type(fn).__name__),
                str(e).splitlines()[0][:300] if str(e) else e,
            )
            if self._error is None:
                self._error = e
