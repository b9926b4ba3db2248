"""MLflow writes off the driver's critical path: one background thread, in order, batched, flushed on close.

The driver hands every MLflow write of a trial to a :class:`TrackingWriter` -- its run's creation, params,
per-epoch metrics, its end -- and never waits for one.  :meth:`TrackingWriter.create_trial` returns a *run
key* at once; later writes name the run by that key, and the writer resolves it to the run's id when it
applies them (a run is always created before any write queued after its creation).  Creations go first:
whatever else is queued, a run is created as soon as the writer is between two writes, and its
``on_created`` callback (on the writer's thread) hands the id on.  The other writes are applied in the order
they were submitted; what is queued when the writer wakes is one batch, in which a run's metrics are
gathered into one ``log_batch`` (with the run's end when that is in the batch too).  A run's params wait up
to :data:`PARAMS_HOLD_S` for the run's next write and go in its request (a short trial's params, metrics,
tags and end in one ``log_batch``); they are written on their own when that time is up, and at flush and
close.  The study summaries (:meth:`TrackingWriter.refresh`) are recomputed at most every
:data:`REFRESH_INTERVAL_S` (or four times their own cost, whichever is longer), and always at close.
While the driver loop is on its critical path (a trial's end, the next trial's ask and start:
:meth:`TrackingWriter.critical_path`, except inside :meth:`TrackingWriter.driver_waiting`) each write but a
run's creation waits for it, at most :data:`DEFER_MAX_S`: the writer thread shares the interpreter (and the
cores) with the driver and would otherwise slow every trial's bookkeeping; flush and close wait for nothing.

:meth:`TrackingWriter.close` drains everything (normal end, exception, Ctrl-C alike).  A crash that loses
queued writes leaves runs RUNNING, which the next submit closes (:meth:`~orchestrator.tracking.Tracker.
close_stale`), or trials with no run, which the next submit runs again (a trial still RUNNING) or logs from
the results database (a finished one): the results database, not MLflow, is the record of a trial's
outcome.  Thread safety: submit from one thread (the driver loop); :meth:`run_id` from any.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.tracking import Tracker, TrackingUnavailable

_log = logging.getLogger("orchestrator.tracking")
Rows = list[tuple[int, str, float]]
PENDING = "pending-"  # run keys of runs not created yet; MLflow's own run ids are hexadecimal
REFRESH_INTERVAL_S = 1.0
REFRESH_COST_FACTOR = 4.0  # a refresh that took t seconds waits at least this many times t for the next
PARAMS_HOLD_S = 1.0  # a run's params wait at most this long to share a request with its next write
DEFER_MAX_S = 0.05  # a write waits at most this long for the driver loop to leave its critical path
DEFER_POLL_S = 0.001


@dataclass(frozen=True)
class _Create:
    key: str
    exp_id: str
    parent_run_id: str
    name: str
    tags: Mapping[str, str]
    on_created: Callable[[str], None] | None


@dataclass(frozen=True)
class _Params:
    run: str
    config: Mapping[str, Any]


@dataclass(frozen=True)
class _Metrics:
    run: str
    rows: Rows


@dataclass(frozen=True)
class _End:
    run: str
    status: str
    error: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    rows: Rows = field(default_factory=list)


_Op = _Params | _Metrics | _End


class TrackingWriter:
    """Applies a :class:`Tracker`'s writes on a background thread (see the module docstring)."""

    def __init__(self, tracker: Tracker, refresh_interval_s: float = REFRESH_INTERVAL_S) -> None:
        self.tracker = tracker
        self.refresh_interval_s = refresh_interval_s
        self._cond = threading.Condition()
        self._creates: deque[_Create] = deque()
        self._ops: deque[_Op] = deque()
        self._unapplied = 0  # writes submitted and not applied yet
        self._keys = 0
        self._ids: dict[str, str | None] = {}  # run key -> run id (None: its creation failed)
        self._refresh: Callable[[Tracker], None] | None = None  # the refresh waiting to run
        self._refresh_after = 0  # ... once this many writes were taken from the queue and applied
        self._queued_total = 0  # writes ever queued (run creations aside)
        self._taken_total = 0  # writes ever taken from the queue and applied (or held)
        self._refresh_due = 0.0  # monotonic time before which no refresh runs
        self._force_refresh = False  # flush() or close(): the waiting refresh runs now
        self._refreshing = False
        self._stopping = False
        self._flushing = False  # flush() waits: held params are written now
        self._held: dict[str, tuple[Mapping[str, Any], float]] = {}  # run -> its params, written by then
        self._error: BaseException | None = None
        self._driver_busy = False  # the driver loop is on its critical path
        self._thread = threading.Thread(target=self._work, name="iel-mlflow-writer", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------------------------- submitting
    def create_trial(
        self,
        exp_id: str,
        parent_run_id: str,
        name: str,
        tags: Mapping[str, str],
        on_created: Callable[[str], None] | None = None,
    ) -> str:
        """Queue the creation of a trial's run (:meth:`Tracker.create_trial`); returns its run key, which
        the other methods accept in place of a run id.  ``on_created(run_id)`` is called on the writer's
        thread once the run exists (never when its creation failed)."""
        with self._cond:
            self._keys += 1
            key = f"{PENDING}{self._keys}"
            self._creates.append(_Create(key, exp_id, parent_run_id, name, dict(tags), on_created))
            self._unapplied += 1
            self._cond.notify_all()
        return key

    def log_params(self, run: str, config: Mapping[str, Any]) -> None:
        self._put(_Params(run, config))

    def log_metrics(self, run: str, rows: Sequence[tuple[int, str, float]]) -> None:
        self._put(_Metrics(run, list(rows)))

    def finish(
        self,
        run: str,
        status: str,
        error: str | None = None,
        tags: Mapping[str, str] | None = None,
        metrics: Sequence[tuple[int, str, float]] = (),
    ) -> None:
        self._put(_End(run, status, error, dict(tags or {}), list(metrics)))

    def refresh(self, fn: Callable[[Tracker], None]) -> None:
        """Run ``fn(tracker)`` on the writer's thread after the writes queued before it; of several refreshes
        waiting only the last runs, at most every :attr:`refresh_interval_s` (always at flush and close)."""
        with self._cond:
            self._refresh = fn
            self._refresh_after = self._queued_total
            self._cond.notify_all()

    def _put(self, op: _Op) -> None:
        with self._cond:
            self._ops.append(op)
            self._queued_total += 1
            self._unapplied += 1
            self._cond.notify_all()

    # ------------------------------------------------------------------------------- the driver loop
    @contextlib.contextmanager
    def critical_path(self) -> Iterator[None]:
        """The driver loop runs: writes other than run creations wait for it (see the module docstring)."""
        self._set_busy(True)
        try:
            yield
        finally:
            self._set_busy(False)

    @contextlib.contextmanager
    def driver_waiting(self) -> Iterator[None]:
        """The driver loop blocks (waiting for workers): the writer's turn."""
        busy = self._driver_busy
        self._set_busy(False)
        try:
            yield
        finally:
            self._set_busy(busy)

    def _set_busy(self, busy: bool) -> None:
        # A plain assignment, no lock: the driver's thread calls this around every wait, where a Ctrl-C
        # can arrive at any bytecode; an interrupt between taking and releasing a lock would leave it
        # held and the writer stuck.  The writer polls the flag (see _defer).
        self._driver_busy = busy

    def _defer(self) -> None:
        """Wait (at most DEFER_MAX_S, polling every DEFER_POLL_S) while the driver loop is on its critical
        path -- not for a run waiting to be created (a trial's end needs its id), nor at flush or close --
        then create the runs waiting."""
        deadline = time.monotonic() + DEFER_MAX_S
        while (
            self._driver_busy
            and not (self._creates or self._stopping or self._flushing)
            and time.monotonic() < deadline
        ):
            time.sleep(DEFER_POLL_S)
        self._create_waiting()

    # -------------------------------------------------------------------------------------- waiting
    def run_id(self, run: str, timeout_s: float | None = None) -> str | None:
        """The id of the run ``run`` names (a run key or an id), waiting up to ``timeout_s`` for its creation;
        None when it failed, or is still not created after ``timeout_s``."""
        if not run.startswith(PENDING):
            return run
        with self._cond:
            self._cond.wait_for(lambda: run in self._ids or not self._thread.is_alive(), timeout_s)
            return self._ids.get(run)

    @property
    def error(self) -> BaseException | None:
        """The first write that failed (later writes are still tried)."""
        return self._error

    def flush(self) -> None:
        """Block until every write submitted so far is applied (and the waiting refresh has run)."""
        with self._cond:
            self._force_refresh = self._flushing = True
            self._cond.notify_all()
            self._cond.wait_for(
                lambda: (
                    (not self._unapplied and self._refresh is None and not self._refreshing)
                    or not self._thread.is_alive()
                )
            )
            self._force_refresh = self._stopping
            self._flushing = False

    def close(self) -> None:
        """Apply every queued write, then stop the thread; raise :class:`TrackingUnavailable` if one failed."""
        if self._thread.is_alive():
            with self._cond:
                self._stopping = self._force_refresh = True
                self._cond.notify_all()
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
            with self._cond:
                self._cond.wait_for(self._has_work, self._wait_s())
                ops = list(self._ops)
                self._ops.clear()
                done = self._stopping and not self._creates and not ops
            applied = self._apply(ops)
            with self._cond:
                self._taken_total += len(ops)
                self._unapplied -= applied
                self._cond.notify_all()
            if self._refresh is not None:  # it may wait for the writes just applied
                self._maybe_refresh()
            if done:
                return

    def _has_work(self) -> bool:
        return bool(self._creates or self._ops or self._stopping or self._refresh_ready() or self._held_due())

    def _refresh_ready(self) -> bool:
        """A refresh waits, is due (or forced), and every write queued before it was applied."""
        return (
            self._refresh is not None
            and (self._force_refresh or time.monotonic() >= self._refresh_due)
            and self._taken_total >= self._refresh_after
        )

    def _held_due(self) -> bool:
        return bool(self._held) and (
            self._stopping or self._flushing or time.monotonic() >= min(t for _, t in self._held.values())
        )

    def _wait_s(self) -> float | None:
        due = [t for _, t in self._held.values()]
        if self._refresh is not None:
            due.append(self._refresh_due)
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _apply(self, ops: list[_Op]) -> int:
        """Apply one batch in order, gathering each run's metrics until its end (or the batch's end), and a
        run's held params into its next write; runs waiting to be created are created first, and between
        any two writes.  Returns how many submitted writes were applied (held params count when written)."""
        self._create_waiting()
        held_before = len(self._held)
        pending: dict[str, Rows] = {}
        for op in ops:
            if isinstance(op, _Metrics):  # gathered, written with the run's end or after the batch
                self._create_waiting()
                pending.setdefault(op.run, []).extend(op.rows)
                continue
            self._defer()  # (and creates the runs waiting)
            if isinstance(op, _End):
                rows = pending.pop(op.run, []) + op.rows
                params = self._take_held(op.run)
                self._call(self.tracker.finish, op.run, op.status, op.error, op.tags, rows, params)
            elif (run := self._resolved(op.run)) is not None:  # (None: its creation failed, recorded)
                if run in self._held:  # params of this run again: the earlier ones first
                    self._call(self.tracker.log_params, run, self._take_held(run))
                self._held[run] = (op.config, time.monotonic() + PARAMS_HOLD_S)
        self._flush_metrics(pending)
        self._release_held()
        return len(ops) - (len(self._held) - held_before)

    def _resolved(self, run: str) -> str | None:
        """The id of the run a key names (its creation was applied before any write queued after it)."""
        if not run.startswith(PENDING):
            return run
        with self._cond:
            return self._ids.get(run)

    def _take_held(self, run: str) -> Mapping[str, Any] | None:
        resolved = self._resolved(run)
        held = self._held.pop(resolved, None) if resolved is not None else None
        return None if held is None else held[0]

    def _release_held(self) -> None:
        """Write the held params whose time is up (all of them at flush and close)."""
        with self._cond:
            force = self._stopping or self._flushing
        now = time.monotonic()
        for run in [r for r, (_, t) in self._held.items() if force or now >= t]:
            self._defer()
            self._call(self.tracker.log_params, run, self._take_held(run))

    def _flush_metrics(self, pending: dict[str, Rows]) -> None:
        for run, rows in pending.items():
            self._defer()
            self._call(self.tracker.log_metrics, run, rows, None, self._take_held(run))
        pending.clear()

    def _create_waiting(self) -> None:
        while True:
            with self._cond:
                if not self._creates:
                    return
                create = self._creates.popleft()
            run_id: str | None = None
            try:
                run_id = self.tracker.create_trial(
                    create.exp_id, create.parent_run_id, create.name, create.tags
                )
            except Exception as e:
                self._failed("create_trial", e)
            with self._cond:
                self._ids[create.key] = run_id
                self._unapplied -= 1
                self._cond.notify_all()
            if run_id is not None and create.on_created is not None:
                try:
                    create.on_created(run_id)
                except Exception as e:  # the callback's own problem: not an MLflow write that failed
                    _log.warning("handing on MLflow run %s failed: %s", run_id, e)

    def _maybe_refresh(self) -> None:
        with self._cond:
            fn = self._refresh
            if fn is None or not self._refresh_ready():
                return
            self._refresh = None
            self._force_refresh = False
            self._refreshing = True
        self._defer()
        t0 = time.monotonic()
        self._call(fn, self.tracker)
        cost = time.monotonic() - t0
        with self._cond:
            self._refreshing = False
            self._refresh_due = time.monotonic() + max(self.refresh_interval_s, REFRESH_COST_FACTOR * cost)
            self._cond.notify_all()

    def _call(self, fn: Any, run_or_tracker: Any, *args: Any) -> None:
        """Apply one write; a run key is resolved to its run's id first (a run whose creation failed is
        skipped: that failure is already recorded)."""
        if isinstance(run_or_tracker, str) and run_or_tracker.startswith(PENDING):
            with self._cond:
                run_or_tracker = self._ids.get(run_or_tracker)
            if run_or_tracker is None:
                return
        try:
            fn(run_or_tracker, *args)
        except Exception as e:  # kept, reported at close; the next submit repairs the runs
            self._failed(getattr(fn, "__name__", type(fn).__name__), e)

    def _failed(self, what: str, e: Exception) -> None:
        _log.warning("MLflow write %s failed: %s", what, str(e).splitlines()[0][:300] if str(e) else e)
        if self._error is None:
            self._error = e
