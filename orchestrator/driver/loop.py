"""The driver loop: dispatch, collect, poll -- nothing else.

A free worker takes the next trial (or fused group) at once, with no batch barriers; the loop wakes on
the first result and collects every other one already in; twice a second it polls the running workers
for per-epoch reports (pruning, MLflow), records the MLflow runs created meanwhile, enforces hard timeouts
and refreshes the driver lock.  What runs next is the queue's business (:mod:`.queue`), what is written
where the recorder's (:mod:`.recorder`).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray

from ielcore.states import FailureKind, TrialState
from orchestrator import early_signals
from orchestrator.driver.cluster import (
    Interrupted,
    InterruptGuard,
    check_resources,
    check_workers_start,
    init_ray,
    this_owner,
    worker_env,
)
from orchestrator.driver.faults import disk_full_error, nothing_to_do
from orchestrator.driver.item import WorkItem
from orchestrator.driver.queue import TrialQueue, build_queue
from orchestrator.driver.recorder import Recorder
from orchestrator.driver.stores import Stores
from orchestrator.plan import Plan, build_plan
from orchestrator.progress import Progress
from orchestrator.settings import Settings, sqlite_file
from orchestrator.study import StudySpec
from orchestrator.study_version import check_against_recorded
from workers.pool import WorkerPool, WorkerResources
from workers.protocol import TrialOutcome

POLL_INTERVAL_S = 0.5
HARD_TIMEOUT_GRACE_S = 30.0  # a trial past 1.5 * timeout_s + this ignored its deadline: its worker is killed


@dataclass(frozen=True)
class StudyOutcome:
    study: str
    counts: dict[str, int]
    failed: int
    trained: int
    reused: int
    kept: int
    wall_s: float
    study_run_id: str  # the study's MLflow run (attach files to it with orchestrator.tracking.Tracker)


class DriverLoop:
    """Runs the queue's trials on the pool until the queue is exhausted and nothing runs."""

    def __init__(
        self,
        spec: StudySpec,
        recorder: Recorder,
        queue: TrialQueue,
        pool: WorkerPool,
        running: dict[Any, WorkItem],
        guard: InterruptGuard | None = None,
    ) -> None:
        self.spec, self.recorder, self.queue, self.pool = spec, recorder, queue, pool
        self.guard = guard or InterruptGuard()
        self.progress = recorder.progress
        self.running = running  # result reference -> item, shared with the caller (closed on exit)

    def run(self) -> None:
        with self.recorder.writer.critical_path():  # MLflow writes wait while the loop works
            self._run()

    def _run(self) -> None:
        last_poll = 0.0
        waiting_since: float | None = None
        while True:
            self.guard.check()  # a signal whose KeyboardInterrupt some library swallowed still stops us
            self._dispatch()
            if not self.running:
                if self.queue.exhausted:
                    return
                # Trials wait and no worker runs: wait for one to start (bounded).
                waiting_since = waiting_since or time.monotonic()
                check_workers_start(self.pool, time.monotonic() - waiting_since)
                with self.recorder.writer.driver_waiting():
                    self.pool.wait_started(POLL_INTERVAL_S)
                self.recorder.stores.heartbeat()
                continue
            waiting_since = None
            self._collect_ready()
            self.recorder.runs.take_created()
            now = time.monotonic()
            if now - last_poll >= POLL_INTERVAL_S:
                last_poll = now
                self._poll()
                self.recorder.runs.record_created()
                self.recorder.check()
                self.recorder.stores.heartbeat()
                self.progress.show()

    def _dispatch(self) -> None:
        """Hand the waiting trials to the free workers (a fused group to one worker, one call)."""
        while self.queue.has_work():
            worker = self.pool.acquire()
            if worker is None:
                self.pool.grow(self.queue.waiting())
                return
            with self.guard.critical():  # a started trial is always in self.running (closed on exit)
                self._start(worker)

    def _start(self, worker: Any) -> None:
        group = self.queue.next_group()
        for item in group:  # the worker first: it gets the attempt's MLflow run once the run is created
            item.worker, item.started = worker, time.monotonic()
        tasks = [self.recorder.start_attempt(item, item.fuse_group) for item in group]
        if len(group) == 1:
            refs = [worker.run.remote(tasks[0])]
        else:
            self.progress.fused += len(group)
            refs = list(worker.run_group.options(num_returns=len(tasks)).remote(tasks))
        self.running.update(zip(refs, group))

    def _collect_ready(self) -> None:
        """Wake on the first result (a free worker takes the next trial at once), then take every other
        result that is already in."""
        with self.recorder.writer.driver_waiting():
            ready, rest = ray.wait(list(self.running), num_returns=1, timeout=POLL_INTERVAL_S)
        if ready and rest:
            ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        for ref in ready:
            with self.guard.critical():  # a trial's end is recorded whole, or it stays in self.running
                item = self.running[ref]
                outcome = self._collect(ref, item)
                retry = self.recorder.finish(item, outcome)
                del self.running[ref]
            if retry:
                self.queue.retry(item)
            else:
                self.queue.on_finished(item, outcome)

    def _collect(self, ref: Any, item: WorkItem) -> TrialOutcome:
        try:
            outcome: TrialOutcome = ray.get(ref)
        except ray.exceptions.RayError as e:  # process killed, node lost, actor died
            self.pool.discard(item.worker)
            return self._lost(item, e)
        if outcome.replace_worker:
            self.pool.discard(item.worker)
        else:
            self.pool.release(item.worker)
        return outcome

    def _lost(self, item: WorkItem, e: Exception) -> TrialOutcome:
        """The outcome of an attempt whose worker died (or was killed past the trial's hard deadline)."""
        duration = time.monotonic() - item.started
        if item.hard_killed:
            kind, error = (
                FailureKind.TIMEOUT,
                f"stopped after {self.spec.timeout_s} s (timeout_s): the trial did not stop at its "
                "deadline, so its worker was killed",
            )
        else:
            kind = FailureKind.WORKER_DIED
            error = f"the worker was lost: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
        return TrialOutcome(
            trial_id=item.trial_id,
            attempt=item.attempt,
            state=TrialState.FAILED,
            failure_kind=kind,
            error=error,
            duration_s=duration,
        )

    def _poll(self) -> None:
        """Collect per-epoch reports: feed the pruner, log to MLflow in batches, enforce hard timeouts."""
        if not self.running:
            return
        items = {item.trial_id: item for item in self.running.values()}
        workers = {id(item.worker): item.worker for item in self.running.values()}  # a fused group shares one
        refs = [worker.poll.remote() for worker in workers.values()]
        try:
            with self.recorder.writer.driver_waiting():
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=2.0)
        except ray.exceptions.RayError:
            return
        for ref in ready:
            try:
                reports = ray.get(ref)
            except ray.exceptions.RayError:
                continue
            for trial_id, epoch, metrics in reports:
                item = items.get(trial_id)
                if item is None:
                    continue
                item.epochs[epoch] = metrics
                if not item.prune_requested and self.recorder.should_prune(item, epoch, metrics):
                    item.prune_requested = True
                    item.worker.stop.remote(trial_id)
        for item in items.values():
            self.recorder.log_epochs(item)
            self._enforce_deadline(item)

    def _enforce_deadline(self, item: WorkItem) -> None:
        timeout = self.spec.timeout_s
        if (
            timeout
            and not item.hard_killed
            and time.monotonic() - item.started > 1.5 * timeout + HARD_TIMEOUT_GRACE_S
        ):
            item.hard_killed = True
            ray.kill(item.worker, no_restart=True)  # the trial ignores its deadline: stop it hard


class StudyRunner:
    """Runs one study to the end; construct, then :meth:`run`. Not thread safe.

    Re-submitting a study resumes it: stale RUNNING records a killed driver left behind are closed first,
    finished trial hashes are never trained again (kept in this study, reused from another one).
    """

    def __init__(
        self,
        spec: StudySpec,
        settings: Settings,
        *,
        max_concurrent: int | None = None,
        allow_cpu: bool = False,
        progress: Callable[[str], None] | None = None,
        num_cpus: int | None = None,
    ) -> None:
        self.spec = spec
        self.plan: Plan = build_plan(spec)
        self.settings = settings
        self.max_concurrent = max_concurrent or spec.max_concurrent
        self.allow_cpu = allow_cpu
        self.num_cpus = num_cpus
        self.owner = this_owner()
        self.progress = Progress.for_plan(self.plan, progress, concurrency=self.max_concurrent)
        self.guard = InterruptGuard()

    def run(self) -> StudyOutcome:
        """Run the study.  Ctrl-C (SIGINT) and SIGTERM raise :class:`~.cluster.Interrupted` (its
        ``exit_status`` is 130 / 143) once the bookkeeping is closed; further signals meanwhile only print
        "cleaning up, please wait", and stay deferred after an interrupt until the process exits.  A full
        disk raises :class:`~.faults.DiskFull` (one message, after closing what can be closed)."""
        t0 = time.monotonic()
        self.guard = InterruptGuard()
        self.guard.install()
        self.guard.received = early_signals.pending()  # a swallowed Ctrl-C before the guard: stop at check()
        # MLflow logs every database error with its traceback before raising it; the driver reports the
        # error itself (e.g. one message for a full disk).
        mlflow_db_log = logging.getLogger("mlflow.store.db.utils")
        level = mlflow_db_log.level
        mlflow_db_log.setLevel(logging.CRITICAL)
        interrupted = False
        try:
            early = self._start_early()
            self.progress.phase("opening stores...")
            try:
                stores = Stores.open(self.settings, self.spec.name, self.owner)
            except BaseException:
                if early is not None:
                    early.shutdown()
                raise
            try:
                study_run = self._drive(stores, early)
                counts = stores.db.status_counts(self.spec.name)
            finally:
                self.guard.defer()
                with contextlib.suppress(Exception):  # a lock left behind is taken over at the next start
                    stores.close()
        except KeyboardInterrupt as e:
            interrupted = True
            if self.guard.received is not None and not isinstance(e, Interrupted):
                raise Interrupted(self.guard.received) from None  # a library re-raised a bare one
            raise
        except Exception as e:
            full = disk_full_error(e, self.settings)
            if full is not None:
                raise full from e
            raise
        finally:
            mlflow_db_log.setLevel(level)
            if not interrupted and self.guard.received is None:
                self.guard.restore()
        self.guard.check()  # a signal during the last writes: the study is not done
        self.progress.show(final=True)
        p = self.progress
        return StudyOutcome(
            study=self.spec.name,
            counts=counts,
            failed=p.failed,
            trained=p.done,
            reused=p.reused,
            kept=p.kept,
            wall_s=time.monotonic() - t0,
            study_run_id=study_run,
        )

    def _resources(self, idle: bool) -> WorkerResources:
        """Start Ray (unless there is nothing to run) and check the cluster's resources."""
        if idle:  # nothing to run: Ray is not started
            return WorkerResources(cpus=self.spec.resources.cpus, gpus=0)
        self.progress.phase("starting Ray...")
        try:
            init_ray(self.settings.ray_address, num_cpus=self.num_cpus)
        except SystemExit as e:  # Ray's own SIGTERM handler, active while ray.init runs
            if e.code != signal.SIGTERM:
                raise
            self.guard.received = signal.SIGTERM
            raise Interrupted(signal.SIGTERM) from None
        self.guard.install()  # ray.init replaced the SIGTERM handler with a bare sys.exit
        return check_resources(self.spec, self.allow_cpu)

    def _start_early(self) -> WorkerPool | None:
        """On a new home (its SQLite results database does not exist yet) nothing is recorded, so nothing can
        be refused, kept or reused: Ray and the workers start first, and the workers start while the
        stores are created (a new home's stores take 1-3 s to create).  None elsewhere."""
        path = sqlite_file(self.settings.db_url)
        if path is None or path.exists():
            return None
        resources = self._resources(idle=False)
        pool = WorkerPool(self.max_concurrent, resources, worker_env(resources))
        pool.grow(min(self.max_concurrent, max(1, self.plan.n_trials())))
        return pool

    def _drive(self, stores: Stores, early: WorkerPool | None = None) -> str:
        # The cluster is checked before anything is recorded: a study it cannot run leaves no trace.
        # An edit (or changed data or code) that would mix results is refused before Ray starts -- or, on a
        # new home, where Ray started first, still refused here (another driver may have been faster).
        pool = early
        try:
            check_against_recorded(stores.db, self.spec, self.plan)
            if pool is None:
                resources = self._resources(nothing_to_do(stores.db, self.spec, self.plan))
                pool = WorkerPool(self.max_concurrent, resources, worker_env(resources))
            stores.lock_mlflow(self.spec.description)
            recorder = Recorder(stores, self.spec, self.plan, self.settings, self.progress)
        except BaseException:
            if pool is not None:
                pool.shutdown()  # workers started early
            raise
        self.progress.phase("workers starting...")
        running: dict[Any, WorkItem] = {}
        queue: TrialQueue | None = None
        interrupted: BaseException | None = None
        failed = False
        try:
            queue = build_queue(self.spec, self.plan, recorder)
            DriverLoop(self.spec, recorder, queue, pool, running, self.guard).run()
        except (KeyboardInterrupt, SystemExit) as e:
            interrupted = e
        except Exception:
            failed = True
            raise
        finally:
            self.guard.defer()  # a second Ctrl-C must not abort the bookkeeping
            pool.shutdown()
            try:
                recorder.close(list(running.values()), queue.drain() if queue else [], interrupted)
            except Exception:
                if not (failed or interrupted):
                    raise  # else: the first error is the one to report; a resume repairs the rest
        if interrupted is not None:
            raise interrupted
        return recorder.study_run


def run_study(spec: StudySpec, settings: Settings, **kwargs: Any) -> StudyOutcome:
    return StudyRunner(spec, settings, **kwargs).run()
