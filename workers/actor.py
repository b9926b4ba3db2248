"""The long-lived Ray actor that trains trials.

A :class:`TrialWorker` owns a device (or a GPU fraction) for the whole study and keeps warm state across
trials: imports, the CUDA context and generated datasets.  It takes a :class:`~workers.protocol.TrialTask`
and hands back a :class:`~workers.protocol.TrialOutcome`.  It runs :func:`ielcore.train_trial`, buffers
per-epoch reports for the driver to collect (:meth:`TrialWorker.poll`), honours a stop request
(:meth:`TrialWorker.stop`, used for pruning), uploads the trial's artifacts to the MLflow run the driver
created for it, and turns every failure into an outcome with a reason; it never raises out of
:meth:`TrialWorker.run`.  The driver creates that run in the background while the trial trains and hands its
id over with :meth:`TrialWorker.set_run` (a task may also carry it); the worker waits for it, up to
:data:`RUN_ID_WAIT_S`, only when it has files to upload.  Contract: the worker never changes a run's status,
never writes the results database or Optuna's storage (the driver is the single writer).  ``run`` is called
by one driver at a time; ``poll``/``stop``/``set_run``/``ping`` are thread safe and may be called while
``run`` is in progress.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ielcore.result import TrialResult
from ielcore.states import FailureKind, RunStatus, TrialState
from workers.protocol import TrialOutcome, TrialTask

RUN_ID_WAIT_S = 300.0  # how long a trial with artifacts waits for the driver to hand over its MLflow run
_CLOSED_KEPT = 4096  # attempts remembered as ended, so that a run handed over too late is not kept


class _Attempt:
    """The per-attempt state of one trial in a worker: its task, reporter and scratch folder."""

    def __init__(self, worker: TrialWorker, task: TrialTask) -> None:
        self.task = task
        self.started = time.time()
        deadline = time.monotonic() + task.timeout_s if task.timeout_s else None
        self.reporter = _Reporter(worker, task.trial_id, deadline)
        self.out_dir = tempfile.mkdtemp(prefix=f"iel-trial-{task.trial_id}-")
        self.base = TrialOutcome(
            trial_id=task.trial_id,
            attempt=task.attempt,
            state=TrialState.FAILED,
            host=worker.host,
            device=worker.device,
        )


class _Reporter:
    """Buffers reports for the driver; tells the trainer to stop on request or past the deadline."""

    def __init__(self, worker: TrialWorker, trial_id: int, deadline: float | None) -> None:
        self.worker = worker
        self.trial_id = trial_id
        self.deadline = deadline
        self.timed_out = False

    def report(self, epoch: int, metrics: Mapping[str, float]) -> bool:
        with self.worker._lock:
            self.worker._reports.append((self.trial_id, epoch, dict(metrics)))
            stop = self.trial_id in self.worker._stop
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.timed_out = True
            return False
        return not stop


class CodeMismatch(RuntimeError):
    """The worker's code would train a task into another trial than the driver planned."""


def _check_identity(task: TrialTask, host: str) -> None:
    """Refuse a task whose planned identity this worker's code does not give (another ``ielcore`` or
    PyTorch version on this node than on the driver's)."""
    if task.trial_hash is None:
        return
    from ielcore.codeprint import code_fingerprint, trial_identity

    here = trial_identity(task.config)
    if here != task.trial_hash:
        raise CodeMismatch(
            f"the worker on host {host} runs other code than the driver planned this trial with (identity "
            f"here {here[:12]}, planned {task.trial_hash[:12]}; code fingerprint here "
            f"{code_fingerprint()[:12]}): the ielcore package or the PyTorch version differs between the "
            "driver's machine and this node. Install the same version of the platform on every node."
        )


def _is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or "can't allocate memory" in text


class TrialWorker:
    """Plain class; :mod:`workers.pool` wraps it as a threaded Ray actor."""

    def __init__(
        self, worker_index: int = 0, gpu_memory_fraction: float | None = None, torch_threads: int = 1
    ) -> None:
        import mlflow.tracking  # noqa: F401  (warm imports: a trial's clock never pays for them)
        import torch

        import ielcore.train  # noqa: F401

        self.worker_index = worker_index
        self.host = socket.gethostname()
        self._lock = threading.Lock()
        self._reports: list[tuple[int, int, dict[str, float]]] = []
        self._stop: set[int] = set()
        self._runs = threading.Condition(self._lock)
        self._run_ids: dict[tuple[int, int], str] = {}  # (trial id, attempt) -> its MLflow run
        self._ended: deque[tuple[int, int]] = deque(maxlen=_CLOSED_KEPT)
        self._data_cache: dict[str, Any] = {}
        self._mlflow_clients: dict[str, Any] = {}
        self.device = "cpu"
        if torch.cuda.is_available():
            torch.cuda.init()
            self.device = torch.cuda.get_device_name(0)
            if gpu_memory_fraction is not None:
                # Ray's fractional GPUs are logical only; this caps what the caching allocator may take.
                torch.cuda.set_per_process_memory_fraction(float(gpu_memory_fraction), 0)
        torch.set_num_threads(max(1, int(torch_threads)))  # the trial's resources.cpus

    # ------------------------------------------------------------------------------ driver-facing API
    def ping(self) -> dict[str, Any]:
        return {"host": self.host, "pid": os.getpid(), "device": self.device, "index": self.worker_index}

    def poll(self) -> list[tuple[int, int, dict[str, float]]]:
        with self._lock:
            out, self._reports = self._reports, []
        return out

    def stop(self, trial_id: int) -> None:
        with self._lock:
            self._stop.add(trial_id)

    def set_run(self, trial_id: int, attempt: int, run_id: str) -> None:
        """The MLflow run of an attempt, created by the driver after the attempt was handed over."""
        with self._runs:
            if (trial_id, attempt) not in self._ended:
                self._run_ids[(trial_id, attempt)] = run_id
                self._runs.notify_all()

    def run(self, task: TrialTask) -> TrialOutcome:
        """Train one trial (see :class:`~workers.protocol.TrialTask`)."""
        from ielcore.train import train_trial

        attempt = _Attempt(self, task)
        try:
            _check_identity(task, self.host)
            result = train_trial(
                task.config, attempt.reporter, out_dir=attempt.out_dir, data_cache=self._data_cache
            )
            outcome = self._classify(attempt, result)
        except BaseException as exc:  # a failure is data: it becomes the outcome's reason
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            outcome = self._fail(attempt, exc)
        return self._close(attempt, outcome)

    def run_group(self, tasks: Sequence[TrialTask]) -> list[TrialOutcome]:
        """Train trials of one fusion group together (``ielcore.fused.train_fused``), one outcome each.

        Each member keeps its own reporter (pruning, timeout) and MLflow run.  If the fused group fails as a
        whole (e.g. out of memory for the stacked model), its members are trained one by one instead, so a
        fusion problem never costs a trial (their outcomes say ``fused_members=1``).
        """
        from ielcore.fused import train_fused

        if len(tasks) == 1:
            return [self.run(tasks[0])]
        attempts = [_Attempt(self, task) for task in tasks]
        try:
            for task in tasks:
                _check_identity(task, self.host)
            results = train_fused(
                [t.config for t in tasks],
                [a.reporter for a in attempts],
                out_dirs=[a.out_dir for a in attempts],
                data_cache=self._data_cache,
            )
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            for a in attempts:
                shutil.rmtree(a.out_dir, ignore_errors=True)
            return [self.run(task) for task in tasks]
        outcomes = []
        for attempt, result in zip(attempts, results):
            try:
                outcome = self._classify(attempt, result)
            except BaseException as exc:
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                outcome = self._fail(attempt, exc)
            outcomes.append(self._close(attempt, replace(outcome, fused_members=len(tasks))))
        return outcomes

    def _classify(self, attempt: _Attempt, result: TrialResult) -> TrialOutcome:
        """Turn a trainer result into the attempt's outcome and upload its artifacts."""
        task = attempt.task
        outcome = replace(attempt.base, result=result, device=result.device, state=TrialState.COMPLETE)
        # Past the deadline in its last epoch a trial has still finished: it stays COMPLETE.
        if attempt.reporter.timed_out and result.status != RunStatus.COMPLETE:
            outcome = replace(
                outcome,
                state=TrialState.FAILED,
                failure_kind=FailureKind.TIMEOUT,
                error=f"stopped after {task.timeout_s} s (timeout_s) in epoch {result.epochs_run}",
                failed_epoch=result.epochs_run,
            )
        elif result.status == RunStatus.PRUNED:
            outcome = replace(outcome, state=TrialState.PRUNED)
        elif result.status == RunStatus.DIVERGED:
            outcome = replace(
                outcome,
                state=TrialState.FAILED,
                failure_kind=FailureKind.DIVERGED,
                error=result.error,
                failed_epoch=result.failed_epoch,
            )
        if task.tracking_uri:
            outcome = replace(outcome, artifacts=self._upload(task, attempt.out_dir))
        return outcome

    def _fail(self, attempt: _Attempt, exc: BaseException) -> TrialOutcome:
        kind = FailureKind.OOM if _is_oom(exc) else FailureKind.ERROR
        error = f"{type(exc).__name__}: {exc}"
        if kind == FailureKind.OOM:
            error = (
                f"out of memory on {self.device}: {error[:1500]} -- lower batch_size, the model size "
                "or the image size, or give each trial more memory (fewer per node; on a GPU a larger "
                "resources.gpu_memory_fraction)"
            )
        return replace(
            attempt.base,
            state=TrialState.FAILED,
            failure_kind=kind,
            error=error,
            traceback=traceback.format_exc(limit=20),
            replace_worker=kind == FailureKind.OOM or not self._healthy(),
        )

    def _close(self, attempt: _Attempt, outcome: TrialOutcome) -> TrialOutcome:
        shutil.rmtree(attempt.out_dir, ignore_errors=True)
        key = (attempt.task.trial_id, attempt.task.attempt)
        with self._lock:
            self._stop.discard(attempt.task.trial_id)
            self._run_ids.pop(key, None)
            self._ended.append(key)
        return replace(outcome, duration_s=time.time() - attempt.started)

    # ------------------------------------------------------------------------------------- internals
    def _run_id(self, task: TrialTask) -> str:
        """The attempt's MLflow run: the task's, or the one the driver hands over (waiting for it)."""
        if task.run_id:
            return task.run_id
        key = (task.trial_id, task.attempt)
        with self._runs:
            self._runs.wait_for(lambda: key in self._run_ids, RUN_ID_WAIT_S)
            run_id = self._run_ids.get(key)
        if run_id is None:
            from ielcore.errors import IELError

            raise IELError(
                f"the driver did not hand over the MLflow run of trial {task.trial_id} (attempt "
                f"{task.attempt}) within {RUN_ID_WAIT_S:.0f} s, so its artifacts cannot be uploaded; the "
                "driver's MLflow writes are failing or far behind (see the driver's log)"
            )
        return run_id

    def _upload(self, task: TrialTask, out_dir: str) -> dict[str, str]:
        """Upload every artifact file to the attempt's run; return name -> artifact URI (no call when none)."""
        names = sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else []
        if not names:
            return {}
        tracking_uri, run_id = str(task.tracking_uri), self._run_id(task)
        client = self._mlflow_clients.get(tracking_uri)
        if client is None:
            from mlflow.tracking import MlflowClient

            client = self._mlflow_clients[tracking_uri] = MlflowClient(tracking_uri)
        try:
            client.log_artifacts(run_id, out_dir)
            root = client.get_run(run_id).info.artifact_uri
        except Exception as e:  # the usual cause on a cluster: this node cannot reach the driver's store
            from ielcore.errors import IELError

            raise IELError(
                f"could not upload the artifacts of MLflow run {run_id} to {tracking_uri} from host "
                f"{self.host} ({type(e).__name__}: {str(e)[:600]}); every Ray node must reach the tracking "
                "URI the driver uses (--mlflow / $IEL_MLFLOW_URI): on a cluster use an MLflow server with "
                "--serve-artifacts, not a local file or SQLite store"
            ) from e
        return {name: f"{root}/{name}" for name in names}

    def _healthy(self) -> bool:
        try:
            import torch

            x = torch.ones(8, device="cuda" if torch.cuda.is_available() else "cpu")
            return bool((x * 2).sum().item() == 16)
        except Exception:
            return False
