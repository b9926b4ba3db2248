"""The driver: turns a plan into finished trials, asynchronously, as the single writer of every store.

A free worker takes the next trial at once (no batch barriers).  For each attempt the driver creates the
MLflow run, marks the trial RUNNING, hands the worker the resolved configuration, streams its per-epoch
reports into the pruner and MLflow, and records the outcome in the results database, Optuna and MLflow
alike.  Finished trial hashes are never trained again (kept in this study, reused from another one).
Re-submitting a study resumes it: stale RUNNING records a killed driver left behind are closed first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import optuna
import ray
from sqlalchemy import exc as sa_exc

from ielcore.errors import IELError, SpecError
from ielcore.spec import TrialConfig
from orchestrator.db import DriverLocked, ResultsDB, TrialRecord, TrialState
from orchestrator.db.engine import (
    DEFAULT_RETRY_ATTEMPTS,
    DEFAULT_RETRY_BACKOFF_S,
    MAX_RETRY_DELAY_S,
    is_transient,
)
from orchestrator.plan import Cell, Plan, build_plan, search_trial_config
from orchestrator.progress import Progress
from orchestrator.search import CellSearch
from orchestrator.settings import Settings
from orchestrator.study import StudySpec
from orchestrator.tracking import Tracker
from orchestrator.version import code_version, git_commit, package_versions
from workers.outcome import FailureKind
from workers.pool import WorkerPool, WorkerResources

RETRYABLE = {FailureKind.ERROR, FailureKind.OOM, FailureKind.WORKER_DIED}
POLL_INTERVAL_S = 0.5
WORKER_ENV_PASSTHROUGH = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "MLFLOW_TRACKING_CLIENT_CERT_PATH",
)
MAX_FUSED = 8  # trials fused into one model at most (fuse: auto)
HARD_TIMEOUT_GRACE_S = 30.0  # a trial past 1.5 * timeout_s + this ignored its deadline: its worker is killed
WORKER_START_TIMEOUT_S = 300.0  # trials waiting and no worker could start for this long: ClusterError
WORKER_START_FAILURES = 3  # workers in a row that died while starting: ClusterError

T = TypeVar("T")
_db_logger = logging.getLogger("orchestrator.db")  # retries of Optuna's storage are logged with ours


class ClusterError(IELError):
    pass


@dataclass
class _Item:
    """One trial the driver is working on (across its attempts)."""

    record: TrialRecord
    cell: Cell
    search: CellSearch
    optuna_trial: Any
    config: dict[str, Any]
    attempt: int = 0
    run_id: str | None = None
    worker: Any = None
    started: float = 0.0
    epochs: dict[int, dict[str, float]] = field(default_factory=dict)
    logged_epochs: set[int] = field(default_factory=set)
    prune_requested: bool = False
    hard_killed: bool = False


@dataclass(frozen=True)
class StudyOutcome:
    study: str
    counts: dict[str, int]
    failed: int
    trained: int
    reused: int
    kept: int
    wall_s: float


def init_ray(address: str | None, *, num_cpus: int | None = None) -> None:
    """Connect to a Ray cluster, or start a local instance (dashboard off, bound to 127.0.0.1)."""
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"namespace": "iel", "log_to_driver": False, "configure_logging": False}
    if address:
        kwargs["address"] = address
        # A driver joining a cluster does not pick up Ray's token file by itself: with a token available,
        # use token authentication (never disable it).
        token_file = os.path.expanduser("~/.ray/auth_token")
        if "RAY_AUTH_MODE" not in os.environ and (
            os.environ.get("RAY_AUTH_TOKEN") or os.path.exists(token_file)
        ):
            os.environ["RAY_AUTH_MODE"] = "token"
    else:  # "local": a new instance, never a cluster that `ray start` left in /tmp/ray/ray_current_cluster
        kwargs.update(address="local", include_dashboard=False, dashboard_host="127.0.0.1")
        if num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
    try:
        ray.init(**kwargs)
    except Exception as e:
        raise ClusterError(
            f"cannot connect to the Ray cluster at {address!r} ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
            "start it with `ray start --head` or fix --address / $IEL_RAY_ADDRESS; with token authentication "
            "set RAY_AUTH_MODE=token and the cluster's RAY_AUTH_TOKEN"
            if address
            else f"cannot start a local Ray instance ({type(e).__name__}: {e}); check free memory and /tmp space"
        ) from e


def check_resources(spec: StudySpec, allow_cpu: bool) -> WorkerResources:
    res = spec.resources
    gpus = res.gpus
    if gpus > 0:
        available = ray.cluster_resources().get("GPU", 0)
        if available <= 0:
            if not allow_cpu:
                raise ClusterError(
                    f"the study asks for {gpus} GPU(s) per trial (resources.gpus) but the Ray cluster has no GPU; "
                    "run it on a cluster with GPUs, set resources.gpus: 0, or pass --allow-cpu to train on CPUs"
                )
            gpus = 0
    return WorkerResources(
        cpus=res.cpus, gpus=gpus, gpu_memory_fraction=res.gpu_memory_fraction if gpus else None
    )


class StudyRunner:
    """Runs one study to the end; construct, then :meth:`run`. Not thread safe."""

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
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.progress = Progress(self.plan.n_trials(), progress)
        self.db: ResultsDB | None = None

    # ------------------------------------------------------------------------------------------ setup
    def _open_stores(self) -> None:
        settings = self.settings
        if settings.db_url.startswith("sqlite") or (settings.artifact_root is not None):
            settings.ensure_home()
        self.db = ResultsDB(settings.db_url)  # raises DatabaseUnavailable before any trial starts
        self.tracker = Tracker(settings.mlflow_uri, settings.artifact_root)
        try:
            self.db.acquire_driver_lock(self.spec.name, self.owner)
        except DriverLocked as e:
            if not _owner_is_dead(e.owner):
                raise
            # The holder was a driver on this host whose process is gone (killed): take its lock over.
            self.db.acquire_driver_lock(self.spec.name, self.owner, stale_after_s=0)

    def _optuna_storage(self) -> Any:
        import optuna

        url = self.settings.db_url
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if url.startswith("sqlite"):
            kwargs = {"connect_args": {"timeout": 60}}
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)

    def _prepare(self) -> None:
        assert self.db is not None
        spec, db, tracker = self.spec, self.db, self.tracker
        self.study_id = db.ensure_study(spec.name, spec.description, dict(spec.raw))
        self.exp_id = tracker.experiment(spec.name, spec.description)
        stale_runs = tracker.close_stale(self.exp_id, "the driver that ran this stopped before the run ended")
        self.study_run = tracker.ensure_run(
            self.exp_id,
            spec.name,
            {"iel.role": "study", "iel.study": spec.name, "iel.git_commit": git_commit()},
        )
        storage = self._optuna_storage()
        self.searches: dict[str, CellSearch] = {}
        self.cell_ids: dict[str, int] = {}
        self.cell_runs: dict[str, str] = {}
        stale_optuna = 0
        for cell in self.plan.cells:
            search = CellSearch(storage, spec, cell)
            stale_optuna += search.fail_stale()
            self.searches[cell.key] = search
            self.cell_ids[cell.key] = db.ensure_cell(
                self.study_id, cell.key, dict(cell.factors), cell.is_baseline, search.name
            )
            self.cell_runs[cell.key] = tracker.ensure_run(
                self.exp_id,
                cell.key,
                {
                    "iel.role": "cell",
                    "iel.study": spec.name,
                    "iel.cell": cell.key,
                    "iel.baseline": str(cell.is_baseline).lower(),
                },
                parent_run_id=self.study_run,
            )
        stale_rows = 0
        for rec in db.stale_running(spec.name):
            db.finish_trial(
                rec.id,
                TrialState.FAILED,
                error="the driver stopped while this trial ran; it will run again",
                failure_kind=FailureKind.DRIVER_DIED,
            )
            stale_rows += 1
        self.stale = {"mlflow_runs": stale_runs, "optuna_trials": stale_optuna, "trial_rows": stale_rows}
        self.code_version = code_version()

    # --------------------------------------------------------------------------------------- planning
    def _grid_queue(self) -> deque[_Item]:
        assert self.db is not None
        queue: deque[_Item] = deque()
        for planned in self.plan.trials:
            cell = self.plan.cell(planned.cell_key)
            rec = self.db.ensure_trial(
                self.study_id,
                self.cell_ids[cell.key],
                planned.seed,
                planned.trial_hash,
                planned.config.to_dict(),
                None,
                self.code_version,
            )
            item = self._resolve_existing(rec, cell, None, planned.config.to_dict())
            if item is not None:
                queue.append(item)
        return queue

    def _resolve_existing(
        self, rec: TrialRecord, cell: Cell, optuna_trial: Any, config: dict[str, Any]
    ) -> _Item | None:
        """Kept, reused, or to run (returned as an item)."""
        assert self.db is not None
        search = self.searches[cell.key]
        if rec.state == TrialState.COMPLETE:
            self.progress.kept += 1
            if optuna_trial is not None:
                _storage_call(search.tell_complete, optuna_trial, rec.final_metrics)
            return None
        original = self.db.find_complete_by_hash(rec.trial_hash, exclude_study_id=self.study_id)
        if original is not None:
            self._reuse(rec, cell, optuna_trial, original)
            return None
        # A grid trial is asked from Optuna only when it starts (see _start_attempt): asking the whole grid
        # up front would leave N trials RUNNING there, and every ask re-reads the unfinished ones (O(N^2)).
        return _Item(
            record=rec, cell=cell, search=search, optuna_trial=optuna_trial, config=config, attempt=0
        )

    def _reuse(self, rec: TrialRecord, cell: Cell, optuna_trial: Any, original: TrialRecord) -> None:
        assert self.db is not None
        search = self.searches[cell.key]
        self.db.mark_reused(rec.id, original)
        attrs = {"trial_hash": rec.trial_hash, "seed": rec.seed, "reused_from": original.id}
        if optuna_trial is None:
            number = _storage_call(search.add_reused, {}, original.final_metrics, attrs)
        else:
            _storage_call(search.tell_complete, optuna_trial, original.final_metrics)
            number = int(optuna_trial.number)
        run_id = self.tracker.start_trial(
            self.exp_id,
            self.cell_runs[cell.key],
            f"{cell.key} seed={rec.seed} (reused)",
            rec.config,
            self._tags(rec)
            | {
                "iel.reused_from_run": original.mlflow_run_id or "",
                "iel.reused_from_study": original.study_name,
            },
        )
        rows = [(int(e), n, v) for e, n, v in self.db.epoch_metrics(original.id) if v is not None]
        rows += [(0, f"final_{k}", v) for k, v in original.final_metrics.items() if v is not None]
        self.tracker.finish(run_id, "FINISHED", metrics=rows)
        self.db.set_references(
            rec.id, mlflow_run_id=run_id, optuna_study_name=search.name, optuna_trial_number=number
        )
        self.progress.reused += 1

    def _next_search_item(self) -> _Item | None:
        """Ask the next cell with budget left for a configuration (lazily, when a worker is free)."""
        assert self.db is not None and self.spec.search is not None
        while self._search_budget:
            key, left = self._search_budget[0]
            if left <= 0:
                self._search_budget.popleft()
                continue
            self._search_budget[0] = (key, left - 1)
            cell = self.plan.cell(key)
            search = self.searches[key]
            trial, params = _storage_call(search.ask)
            seed = self.spec.seeds[trial.number % len(self.spec.seeds)]
            try:
                cfg = search_trial_config(cell, params, seed)
            except SpecError as e:  # a sampled combination can be invalid (e.g. an IEL gain over its limit)
                _storage_call(trial.set_user_attr, "error", str(e)[:1000])
                _storage_call(search.tell_failed, trial)
                self.progress.invalid += 1
                continue
            _storage_call(trial.set_user_attr, "seed", seed)
            _storage_call(trial.set_user_attr, "trial_hash", cfg.hash)
            rec = self.db.ensure_trial(
                self.study_id,
                self.cell_ids[key],
                seed,
                cfg.hash,
                cfg.to_dict(),
                trial.number,
                self.code_version,
            )
            item = self._resolve_existing(rec, cell, trial, cfg.to_dict())
            if item is not None:
                return item
        return None

    # ------------------------------------------------------------------------------------ attempts
    def _tags(self, rec: TrialRecord) -> dict[str, str]:
        return {
            "iel.study": self.spec.name,
            "iel.cell": rec.cell_key,
            "iel.seed": str(rec.seed),
            "iel.trial_hash": rec.trial_hash,
            "iel.trial_id": str(rec.id),
            "iel.git_commit": git_commit(),
            "iel.code_version": self.code_version,
            "iel.versions": package_versions(),
            "iel.driver_host": socket.gethostname(),
        }

    def _dispatch(self, item: _Item, worker: Any) -> Any:
        self.progress.running += 1
        return worker.run.remote(self._start_attempt(item, worker))

    def _dispatch_group(self, items: list[_Item], worker: Any) -> list[Any]:
        """Hand a fusion group to one worker: one call, one result reference per member."""
        tasks = [self._start_attempt(item, worker) for item in items]
        self.progress.running += len(items)
        self.progress.fused += len(items)
        return list(worker.run_group.options(num_returns=len(tasks)).remote(tasks))

    def _start_attempt(self, item: _Item, worker: Any) -> dict[str, Any]:
        """Create the attempt's MLflow run, mark the trial RUNNING, and build the worker's task."""
        assert self.db is not None
        item.attempt += 1
        rec = item.record
        if item.optuna_trial is None:  # a grid trial: asked now, so only running trials are RUNNING in Optuna
            item.optuna_trial = _storage_call(item.search.study.ask)
            _storage_call(item.optuna_trial.set_user_attr, "trial_hash", rec.trial_hash)
            _storage_call(item.optuna_trial.set_user_attr, "seed", rec.seed)
        item.run_id = self.tracker.start_trial(
            self.exp_id,
            self.cell_runs[item.cell.key],
            f"{item.cell.key} seed={rec.seed}"
            + (f" #{rec.search_index}" if rec.search_index is not None else ""),
            item.config,
            self._tags(rec) | {"iel.attempt": str(item.attempt)},
        )
        item.record = self.db.mark_running(
            rec.id,
            attempt=rec.attempts + 1,
            mlflow_run_id=item.run_id,
            host="",
            device="",
            optuna_study_name=item.search.name,
            optuna_trial_number=int(item.optuna_trial.number),
        )
        item.worker, item.started = worker, time.monotonic()
        item.epochs.clear()
        item.logged_epochs.clear()
        item.prune_requested = False
        return {
            "trial_id": rec.id,
            "attempt": item.attempt,
            "config": item.config,
            "run_id": item.run_id,
            "tracking_uri": self.settings.mlflow_uri,
            "timeout_s": self.spec.timeout_s,
        }

    def _flush_epochs(self, item: _Item) -> None:
        new = sorted(e for e in item.epochs if e not in item.logged_epochs)
        if not new or item.run_id is None:
            return
        rows = [(e, k, v) for e in new for k, v in item.epochs[e].items()]
        self.tracker.log_metrics(item.run_id, rows)
        item.logged_epochs.update(new)

    def _finish(self, item: _Item, outcome: dict[str, Any]) -> bool:
        """Record one attempt's outcome; returns True when the trial must run again (retry)."""
        assert self.db is not None
        self.progress.running -= 1
        result = outcome.get("result") or {}
        for h in result.get("history", []):
            item.epochs[int(h["epoch"])] = {k: v for k, v in h.items() if k != "epoch"}
        rec = item.record
        rows = [(e, k, float(v)) for e, m in sorted(item.epochs.items()) for k, v in m.items()]
        # Epochs not streamed yet go to MLflow with the run's end (one log_batch), and to the results
        # database in the same transaction as the outcome.
        unlogged = [(e, k, v) for e, k, v in rows if e not in item.logged_epochs]
        item.logged_epochs.update(item.epochs)
        state = outcome["state"]
        host_tags = {"iel.host": outcome.get("host") or "", "iel.device": outcome.get("device") or ""}
        final = dict(result.get("final_metrics") or {})
        if state == "COMPLETE":
            epochs_run = result.get("epochs_run", 0)
            self.tracker.finish(
                item.run_id or "",
                "FINISHED",
                tags=host_tags,
                metrics=unlogged + [(epochs_run, f"final_{k}", v) for k, v in final.items()],
            )
            self.db.finish_trial(
                rec.id,
                TrialState.COMPLETE,
                final_metrics=final,
                duration_s=outcome["duration_s"],
                artifacts=outcome.get("artifacts") or {},
                host=outcome.get("host"),
                device=outcome.get("device"),
                epoch_metrics=rows,
            )
            _storage_call(item.search.tell_complete, item.optuna_trial, final)
            self.progress.done += 1
            self.progress.durations.append(outcome["duration_s"])
            return False
        if state == "PRUNED":
            epoch = max(item.epochs) if item.epochs else 0
            reason = f"pruned by the {self.spec.search.pruner if self.spec.search else ''} pruner after epoch {epoch}"
            self.tracker.finish(item.run_id or "", "KILLED", error=reason, tags=host_tags, metrics=unlogged)
            self.db.finish_trial(
                rec.id,
                TrialState.PRUNED,
                final_metrics=final,
                error=reason,
                duration_s=outcome["duration_s"],
                host=outcome.get("host"),
                device=outcome.get("device"),
                epoch_metrics=rows,
            )
            _storage_call(item.search.tell_pruned, item.optuna_trial)
            self.progress.pruned += 1
            return False
        kind = outcome.get("failure_kind") or FailureKind.ERROR
        error = outcome.get("error") or "unknown failure"
        self.tracker.finish(
            item.run_id or "", "FAILED", error=f"[{kind}] {error}", tags=host_tags, metrics=unlogged
        )
        retry = kind in RETRYABLE and item.attempt <= self.spec.retries
        self.db.finish_trial(
            rec.id,
            TrialState.FAILED,
            error=error,
            failure_kind=kind,
            failed_epoch=outcome.get("failed_epoch"),
            duration_s=outcome.get("duration_s"),
            host=outcome.get("host"),
            device=outcome.get("device"),
            epoch_metrics=rows,
        )
        if retry:
            self.progress.retried += 1
            return True
        _storage_call(item.search.tell_failed, item.optuna_trial)
        self.progress.failed += 1
        return False

    # ------------------------------------------------------------------------------------------ loop
    def run(self) -> StudyOutcome:
        t0 = time.monotonic()
        self._open_stores()
        assert self.db is not None
        interrupted: BaseException | None = None
        pool: WorkerPool | None = None
        running: dict[Any, _Item] = {}
        queue: deque[_Item] = deque()
        previous = signal.getsignal(signal.SIGTERM)
        try:
            signal.signal(signal.SIGTERM, _raise_interrupt)
        except ValueError:  # not the main thread
            previous = None
        try:
            # The cluster is checked before anything is recorded: a study it cannot run leaves no trace.
            init_ray(self.settings.ray_address, num_cpus=self.num_cpus)
            resources = check_resources(self.spec, self.allow_cpu)
            self._prepare()
            env = {"IEL_TORCH_THREADS": str(max(1, int(resources.cpus)))}
            # Remote workers do not inherit the driver's environment: pass MLflow's credentials on.
            env.update({k: os.environ[k] for k in WORKER_ENV_PASSTHROUGH if k in os.environ})
            pool = WorkerPool(self.max_concurrent, resources, env)
            if self.spec.search is None:
                queue = self._grid_queue()
            self._search_budget: deque[tuple[str, int]] = deque()
            if self.spec.search is not None:
                for cell in self.plan.cells:
                    done = self.searches[cell.key].finished_count()
                    self._search_budget.append((cell.key, max(0, self.spec.search.n_trials - done)))
                    self.progress.kept += min(done, self.spec.search.n_trials)
            last_poll = 0.0
            waiting_since: float | None = None
            while True:
                while True:
                    if not queue and self.spec.search is not None:
                        nxt = self._next_search_item()
                        if nxt is not None:
                            queue.append(nxt)
                    if not queue:
                        break
                    worker = pool.acquire()
                    if worker is None:
                        pool.grow(len(queue) + sum(left for _, left in self._search_budget))
                        break
                    item = queue.popleft()
                    # Split the queue evenly over the workers so fusion never leaves one idle.
                    share = -(-(len(queue) + 1) // max(1, self.max_concurrent))
                    group = self._take_fusion_group(item, queue, min(MAX_FUSED, share))
                    if len(group) > 1:
                        running.update(zip(self._dispatch_group(group, worker), group))
                    else:
                        running[self._dispatch(item, worker)] = item
                if not running:
                    if not queue:
                        break
                    # Trials wait and no worker runs: wait for one to start (bounded).
                    waiting_since = waiting_since or time.monotonic()
                    self._check_workers_start(pool, time.monotonic() - waiting_since)
                    pool.wait_started(POLL_INTERVAL_S)
                    self.db.heartbeat_driver_lock(self.spec.name, self.owner)
                    continue
                waiting_since = None
                # Wake on the first result (a free worker takes the next trial at once), then take every
                # other result that is already in.
                refs = list(running)
                ready, rest = ray.wait(refs, num_returns=1, timeout=POLL_INTERVAL_S)
                if ready and rest:
                    ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
                for ref in ready:
                    item = running.pop(ref)
                    outcome = self._collect(ref, item, pool)
                    if self._finish(item, outcome):
                        queue.appendleft(item)
                now = time.monotonic()
                if now - last_poll >= POLL_INTERVAL_S:
                    last_poll = now
                    self._poll(running, pool)
                    self.db.heartbeat_driver_lock(self.spec.name, self.owner)
                    self.progress.show()
        except (KeyboardInterrupt, SystemExit) as e:
            interrupted = e
        finally:
            self._close(running, pool, interrupted, queue)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        if interrupted is not None:
            raise interrupted
        self.progress.show(final=True)
        counts = self.db.status_counts(self.spec.name)
        return StudyOutcome(
            study=self.spec.name,
            counts=counts,
            failed=self.progress.failed,
            trained=self.progress.done,
            reused=self.progress.reused,
            kept=self.progress.kept,
            wall_s=time.monotonic() - t0,
        )

    def _take_fusion_group(self, first: _Item, queue: deque[_Item], limit: int) -> list[_Item]:
        """With ``fuse: auto``, the queued trials that can train together with ``first`` (same fusion key:
        same architecture, data shape and schedule; seeds, noise, IEL and learning rate may differ)."""
        if self.spec.fuse != "auto" or self.spec.search is not None:
            return [first]
        from ielcore.fused import fusion_key

        key = fusion_key(first.config)
        if key is None:
            return [first]
        group = [first]
        for item in list(queue):
            if len(group) >= limit:
                break
            if fusion_key(item.config) == key:
                queue.remove(item)
                group.append(item)
        return group

    def _check_workers_start(self, pool: WorkerPool, waited_s: float) -> None:
        res = pool.resources
        if pool.start_failures >= WORKER_START_FAILURES:
            raise ClusterError(
                f"{pool.start_failures} workers in a row died while starting ({pool.last_start_error}); "
                "check the Ray nodes' logs and that this package and its dependencies are installed there"
            )
        if waited_s > WORKER_START_TIMEOUT_S:
            raise ClusterError(
                f"no worker could start in {WORKER_START_TIMEOUT_S:.0f} s: each needs {res.cpus} CPU(s) and "
                f"{res.gpus} GPU(s) (resources.cpus / resources.gpus) and the Ray cluster has "
                f"{ {k: v for k, v in ray.cluster_resources().items() if k in ('CPU', 'GPU')} }; "
                "add nodes or ask for fewer resources per trial"
            )

    def _collect(self, ref: Any, item: _Item, pool: WorkerPool) -> dict[str, Any]:
        try:
            outcome: dict[str, Any] = ray.get(ref)
        except ray.exceptions.RayError as e:  # process killed, node lost, actor died
            pool.discard(item.worker)
            if item.hard_killed:
                return {
                    "state": "FAILED",
                    "failure_kind": FailureKind.TIMEOUT,
                    "host": "",
                    "device": "",
                    "error": f"stopped after {self.spec.timeout_s} s (timeout_s): the trial did not stop at its "
                    "deadline, so its worker was killed",
                    "duration_s": time.monotonic() - item.started,
                }
            return {
                "state": "FAILED",
                "failure_kind": FailureKind.WORKER_DIED,
                "host": "",
                "device": "",
                "error": f"the worker was lost: {type(e).__name__}: {str(e).splitlines()[0][:300]}",
                "duration_s": time.monotonic() - item.started,
            }
        if outcome.get("replace_worker"):
            pool.discard(item.worker)
        else:
            pool.release(item.worker)
        return outcome

    def _poll(self, running: dict[Any, _Item], pool: WorkerPool) -> None:
        """Collect per-epoch reports: feed the pruner, log to MLflow in batches, enforce hard timeouts."""
        if not running:
            return
        items = {item.record.id: item for item in running.values()}
        workers = {id(item.worker): item.worker for item in running.values()}  # a fused group shares one
        refs = [worker.poll.remote() for worker in workers.values()]
        try:
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
                if not item.prune_requested and _storage_call(
                    item.search.report, item.optuna_trial, epoch, metrics
                ):
                    item.prune_requested = True
                    item.worker.stop.remote(trial_id)
        for item in items.values():
            self._flush_epochs(item)
            timeout = self.spec.timeout_s
            if (
                timeout
                and not item.hard_killed
                and time.monotonic() - item.started > 1.5 * timeout + HARD_TIMEOUT_GRACE_S
            ):
                item.hard_killed = True
                ray.kill(item.worker, no_restart=True)  # the trial ignores its deadline: stop it hard

    def _close(
        self,
        running: dict[Any, _Item],
        pool: WorkerPool | None,
        interrupted: BaseException | None,
        queue: deque[_Item] | None = None,
    ) -> None:
        assert self.db is not None
        reason = "the study was interrupted (Ctrl-C / SIGTERM)" if interrupted else "the driver stopped"
        for item in queue or ():  # asked from Optuna but never started: no trial is left RUNNING there
            if item.optuna_trial is not None:
                with contextlib.suppress(Exception):
                    item.search.tell_failed(item.optuna_trial)
        for item in running.values():
            try:
                self.tracker.finish(item.run_id or "", "KILLED", error=reason)
                self.db.finish_trial(
                    item.record.id, TrialState.FAILED, error=reason, failure_kind=FailureKind.DRIVER_DIED
                )
                item.search.tell_failed(item.optuna_trial)
            except Exception:
                pass
        if pool is not None:
            pool.shutdown()
        try:
            status = "KILLED" if interrupted else "FINISHED"
            for run_id in getattr(self, "cell_runs", {}).values():
                self.tracker.finish(run_id, status)
            if getattr(self, "study_run", None):
                self.tracker.finish(self.study_run, status)
        finally:
            self.db.release_driver_lock(self.spec.name, self.owner)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _owner_is_dead(owner: str) -> bool:
    """True when a lock owner ``host:pid`` is a process of this host that no longer exists."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _storage_call(fn: Callable[..., T], *args: Any) -> T:
    """Call into Optuna's storage, retrying on a lost database connection like the results database does
    (Optuna wraps the driver's error in a StorageInternalError): backoff 0.5 s, 1 s, 2 s, ..."""
    for k in range(1, DEFAULT_RETRY_ATTEMPTS + 1):
        try:
            return fn(*args)
        except (optuna.exceptions.StorageInternalError, sa_exc.DBAPIError) as e:
            cause = e if isinstance(e, sa_exc.DBAPIError) else e.__cause__
            if k == DEFAULT_RETRY_ATTEMPTS or cause is None or not is_transient(cause):
                raise
            delay = min(DEFAULT_RETRY_BACKOFF_S * 2 ** (k - 1), MAX_RETRY_DELAY_S)
            _db_logger.warning(
                "Optuna storage operation failed (%s); retry %d/%d in %.2f s",
                str(getattr(cause, "orig", None) or cause).splitlines()[0][:200],
                k,
                DEFAULT_RETRY_ATTEMPTS - 1,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")


def run_study(spec: StudySpec, settings: Settings, **kwargs: Any) -> StudyOutcome:
    return StudyRunner(spec, settings, **kwargs).run()


__all__ = ["StudyRunner", "StudyOutcome", "run_study", "init_ray", "ClusterError", "TrialConfig"]
