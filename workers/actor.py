"""The long-lived Ray actor that trains trials.

A :class:`TrialWorker` owns a device (or a GPU fraction) for the whole study and keeps warm state across
trials: imports, the CUDA context and generated datasets.  It runs :func:`ielcore.train_trial`, buffers
per-epoch reports for the driver to collect (:meth:`TrialWorker.poll`), honours a stop request
(:meth:`TrialWorker.stop`, used for pruning), uploads the trial's artifacts to the MLflow run the driver
created for it, and turns every failure into an outcome with a reason; it never raises out of
:meth:`TrialWorker.run`.  Contract: the worker never changes a run's status, never writes the results
database or Optuna's storage (the driver is the single writer).  ``run`` is called by one driver at a time;
``poll``/``stop``/``ping`` are thread safe and may be called while ``run`` is in progress.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from workers.outcome import FailureKind, Outcome


class _Attempt:
    """The per-attempt state of one trial in a worker: reporter, scratch folder and outcome."""

    def __init__(self, worker: TrialWorker, task: Mapping[str, Any]) -> None:
        trial_id = int(task["trial_id"])
        self.task = task
        self.started = time.time()
        deadline = time.monotonic() + float(task["timeout_s"]) if task.get("timeout_s") else None
        self.reporter = _Reporter(worker, trial_id, deadline)
        self.out_dir = tempfile.mkdtemp(prefix=f"iel-trial-{trial_id}-")
        self.outcome = Outcome(
            trial_id=trial_id, attempt=int(task["attempt"]), host=worker.host, device=worker.device
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


def _is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or "can't allocate memory" in text


class TrialWorker:
    """Plain class; :func:`workers.pool.remote_worker_class` wraps it as a threaded Ray actor."""

    def __init__(self, worker_index: int = 0, gpu_memory_fraction: float | None = None) -> None:
        import mlflow.tracking  # noqa: F401  (warm imports: a trial's clock never pays for them)
        import torch

        import ielcore.train  # noqa: F401

        self.worker_index = worker_index
        self.host = socket.gethostname()
        self._lock = threading.Lock()
        self._reports: list[tuple[int, int, dict[str, float]]] = []
        self._stop: set[int] = set()
        self._data_cache: dict[str, Any] = {}
        self._mlflow_clients: dict[str, Any] = {}
        self.device = "cpu"
        if torch.cuda.is_available():
            torch.cuda.init()
            self.device = torch.cuda.get_device_name(0)
            if gpu_memory_fraction is not None:
                # Ray's fractional GPUs are logical only; this caps what the caching allocator may take.
                torch.cuda.set_per_process_memory_fraction(float(gpu_memory_fraction), 0)
        torch.set_num_threads(max(1, int(os.environ.get("IEL_TORCH_THREADS", "1"))))

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

    def run(self, task: Mapping[str, Any]) -> dict[str, Any]:
        """Train one trial. ``task`` keys: trial_id, attempt, config, run_id, tracking_uri, timeout_s."""
        from ielcore.train import train_trial

        attempt = _Attempt(self, task)
        try:
            result = train_trial(
                task["config"], attempt.reporter, out_dir=attempt.out_dir, data_cache=self._data_cache
            )
            self._classify(attempt, result)
        except BaseException as exc:  # a failure is data: it becomes the outcome's reason
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            self._fail(attempt, exc)
        return self._close(attempt)

    def run_group(self, tasks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Train trials of one fusion group together (``ielcore.fused.train_fused``), one outcome each.

        Each member keeps its own reporter (pruning, timeout) and MLflow run.  If the fused group fails as a
        whole (e.g. out of memory for the stacked model), its members are trained one by one instead, so a
        fusion problem never costs a trial.
        """
        from ielcore.fused import train_fused

        if len(tasks) == 1:
            return [self.run(tasks[0])]
        attempts = [_Attempt(self, task) for task in tasks]
        try:
            results = train_fused(
                [t["config"] for t in tasks],
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
                self._classify(attempt, result)
            except BaseException as exc:
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                self._fail(attempt, exc)
            outcomes.append(self._close(attempt))
        return outcomes

    def _classify(self, attempt: _Attempt, result: Any) -> None:
        """Turn a trainer result into the attempt's outcome and upload its artifacts."""
        from ielcore.train import TrialStatus

        outcome, task = attempt.outcome, attempt.task
        outcome.result = result.to_dict()
        outcome.device = result.device
        # Past the deadline in its last epoch a trial has still finished: it stays COMPLETE.
        if attempt.reporter.timed_out and result.status != TrialStatus.COMPLETE:
            outcome.state, outcome.failure_kind = "FAILED", FailureKind.TIMEOUT
            outcome.error = f"stopped after {task['timeout_s']} s (timeout_s) in epoch {result.epochs_run}"
            outcome.failed_epoch = result.epochs_run
        elif result.status == TrialStatus.PRUNED:
            outcome.state = "PRUNED"
        elif result.status == TrialStatus.DIVERGED:
            outcome.state, outcome.failure_kind = "FAILED", FailureKind.DIVERGED
            outcome.error, outcome.failed_epoch = result.error, result.failed_epoch
        else:
            outcome.state = "COMPLETE"
        if task.get("run_id") and task.get("tracking_uri"):
            outcome.artifacts = self._upload(task["tracking_uri"], task["run_id"], attempt.out_dir)

    def _fail(self, attempt: _Attempt, exc: BaseException) -> None:
        outcome = attempt.outcome
        outcome.state = "FAILED"
        outcome.failure_kind = FailureKind.OOM if _is_oom(exc) else FailureKind.ERROR
        outcome.error = f"{type(exc).__name__}: {exc}"
        if outcome.failure_kind == FailureKind.OOM:
            outcome.error = (
                f"out of memory on {self.device}: {outcome.error[:1500]} -- lower batch_size, the model size "
                "or the image size, or give each trial more memory (fewer per node; on a GPU a larger "
                "resources.gpu_memory_fraction)"
            )
        outcome.traceback = traceback.format_exc(limit=20)
        outcome.replace_worker = outcome.failure_kind == FailureKind.OOM or not self._healthy()

    def _close(self, attempt: _Attempt) -> dict[str, Any]:
        shutil.rmtree(attempt.out_dir, ignore_errors=True)
        with self._lock:
            self._stop.discard(attempt.outcome.trial_id)
        attempt.outcome.duration_s = time.time() - attempt.started
        return attempt.outcome.to_dict()

    # ------------------------------------------------------------------------------------- internals
    def _upload(self, tracking_uri: str, run_id: str, out_dir: str) -> dict[str, str]:
        """Upload every artifact file to the given run; return name -> artifact URI (no call when none)."""
        names = sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else []
        if not names:
            return {}
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
