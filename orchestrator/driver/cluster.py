"""The cluster side of the driver: Ray start, resource checks, worker start checks, lock owners, signals."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
from collections.abc import Iterator
from typing import Any

import ray

from ielcore.errors import IELError
from orchestrator.study import StudySpec
from workers.pool import WorkerPool, WorkerResources

WORKER_ENV_PASSTHROUGH = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "MLFLOW_TRACKING_CLIENT_CERT_PATH",
)
WORKER_START_TIMEOUT_S = 300.0  # trials waiting and no worker could start for this long: ClusterError
WORKER_START_FAILURES = 3  # workers in a row that died while starting: ClusterError


class ClusterError(IELError):
    pass


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
    """The resources of one worker; a study that asks for GPUs on a cluster without any is refused."""
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


def worker_env(resources: WorkerResources) -> dict[str, str]:
    """What every worker's environment must add: MLflow's credentials, when the driver has them (remote
    workers do not inherit the driver's environment).  Usually nothing, so Ray can give the workers its
    already started worker processes (a ``runtime_env`` needs new ones: about a second each); the torch
    threads go to the worker itself (:class:`~workers.pool.WorkerPool`)."""
    return {k: os.environ[k] for k in WORKER_ENV_PASSTHROUGH if k in os.environ}


def check_workers_start(pool: WorkerPool, waited_s: float) -> None:
    """Raise :class:`ClusterError` when workers keep dying at start, or none could start for too long."""
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


def _proc_state(pid: int) -> str | None:
    """The state letter of ``pid`` in ``/proc/PID/stat`` (``R``, ``S``, ``Z``...), or None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def owner_is_dead(owner: str) -> bool:
    """True when a lock owner ``host:pid`` is a process of this host that no longer exists, or is a zombie
    (it exited and only waits for its parent to reap it: it will never release or refresh a lock)."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive (or a zombie), another user's
        pass
    return _proc_state(int(pid)) in ("Z", "X")


def this_owner() -> str:
    """The lock owner name of this driver process: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


# ------------------------------------------------------------------------------------------ signals
class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM reached the driver; ``exit_status`` is the conventional 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


CLEANING_UP = "iel: cleaning up, please wait (the running trials are being recorded as stopped)"


class InterruptGuard:
    """SIGINT and SIGTERM as :class:`Interrupted` while a study runs, and deferred while it is closed.

    * :meth:`install` (again after ``ray.init``, which replaces the SIGTERM handler with a bare
      ``sys.exit``): the first signal raises :class:`Interrupted` and is remembered in :attr:`received`,
      so a library that swallows the exception cannot make the driver run on (:meth:`check` raises again).
    * :meth:`critical`: a step whose writes belong together holds a signal until it is done.
    * :meth:`defer`: while the bookkeeping is closed every further signal only prints :data:`CLEANING_UP`;
      a second Ctrl-C cannot abort it.  After an interrupt the handlers stay deferred until the process
      exits (its ``atexit`` hooks, e.g. Ray's shutdown, then run without a traceback); otherwise
      :meth:`restore` puts the previous handlers back.
    Main thread only; elsewhere the guard does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, write: Any = None) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._at_exit = False
        self._write = write or (lambda text: os.write(2, (text + "\n").encode()))

    def _raise(self, signum: int, frame: Any) -> None:
        if self.received is None:
            self.received = signum
        raise Interrupted(signum)

    def _wait(self, signum: int, frame: Any) -> None:
        if self.received is None:
            self.received = signum
        with contextlib.suppress(OSError):
            self._write(CLEANING_UP)

    def _set(self, handler: Any) -> bool:
        try:
            for signum in self.SIGNALS:
                previous = signal.signal(signum, handler)
                self._previous.setdefault(signum, previous)
        except ValueError:  # not the main thread
            return False
        return True

    def install(self) -> None:
        self._set(self._raise)

    def check(self) -> None:
        """Raise :class:`Interrupted` when a signal arrived (also one whose exception was swallowed)."""
        if self.received is not None:
            raise Interrupted(self.received)

    def _record(self, signum: int, frame: Any) -> None:
        if self.received is None:
            self.received = signum

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """A step whose writes belong together (a trial's start in three stores, its end): a signal inside
        it is held and raised as :class:`Interrupted` right after it."""
        try:
            saved = {signum: signal.signal(signum, self._record) for signum in self.SIGNALS}
        except ValueError:  # not the main thread
            yield
            return
        try:
            yield
        finally:
            for signum, handler in saved.items():
                signal.signal(signum, handler)
        self.check()

    def defer(self) -> None:
        if self._set(self._wait) and not self._at_exit:
            atexit.register(self._quiet_exit)  # runs before Ray's shutdown hook (registered earlier)
            self._at_exit = True

    def _quiet_exit(self) -> None:
        """After an interrupt, ignore further signals while the process exits: Python resets its handlers
        to the default during finalisation, where a late Ctrl-C would kill the process mid-shutdown."""
        if self.received is not None:
            with contextlib.suppress(ValueError):
                for signum in self.SIGNALS:
                    signal.signal(signum, signal.SIG_IGN)

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signum, previous)
        self._previous.clear()
