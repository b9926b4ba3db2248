"""Trial runs created off the driver's critical path, handed to the workers and back to the driver.

:meth:`RunHandover.create` queues the creation of an attempt's MLflow run on the background writer
(:class:`~orchestrator.driver.tracking_writer.TrackingWriter`) and returns at once with the run's key, which
every later write of the attempt uses.  Once the writer has created the run it puts the id in a queue that
the driver loop drains at every turn (:meth:`RunHandover.take_created`): the id goes to the attempt's worker
(``TrialWorker.set_run``; the worker waits for it only to upload artifacts).  The driver thread stays the
single writer of the results database and Optuna: it records the run there in its twice-a-second poll while
the attempt runs (:meth:`RunHandover.record_created`), or at the latest with the attempt's end
(:meth:`RunHandover.await_run` waits for it).
"""

from __future__ import annotations

import queue
from collections.abc import Mapping

from orchestrator.db import ResultsDB
from orchestrator.driver.item import WorkItem
from orchestrator.driver.storage import storage_call
from orchestrator.driver.tracking_writer import TrackingWriter
from orchestrator.tracking import TrackingUnavailable

RUN_WAIT_S = 600.0  # how long an attempt's end waits for the background writer to create its run


class RunHandover:
    """See the module docstring.  Driver-thread methods (the writer's callback only fills a queue)."""

    def __init__(self, writer: TrackingWriter, db: ResultsDB) -> None:
        self.writer, self.db = writer, db
        self._created: queue.SimpleQueue[tuple[WorkItem, int, str]] = queue.SimpleQueue()
        self._unrecorded: list[tuple[WorkItem, int]] = []

    def create(
        self, item: WorkItem, exp_id: str, parent_run_id: str, name: str, tags: Mapping[str, str]
    ) -> str:
        """Queue the creation of the run of ``item``'s current attempt; returns its key."""
        item.run_id, item.run_recorded = None, False
        attempt = item.attempt
        item.run_key = self.writer.create_trial(
            exp_id, parent_run_id, name, tags, lambda run_id: self._created.put((item, attempt, run_id))
        )
        return item.run_key

    def take_created(self) -> None:
        """Hand the runs created since the last call to the workers of their attempts, if still running."""
        while True:
            try:
                item, attempt, run_id = self._created.get_nowait()
            except queue.Empty:
                return
            if item.attempt == attempt and item.run_id is None:
                item.run_id = run_id
                if item.worker is not None:
                    item.worker.set_run.remote(item.trial_id, attempt, run_id)
                self._unrecorded.append((item, attempt))

    def record_created(self) -> None:
        """:meth:`take_created`, then record the runs of the attempts still running: in the results database
        and as the Optuna trial's ``mlflow_run_id``."""
        self.take_created()
        for item, attempt in self._unrecorded:
            if item.attempt == attempt and not item.run_recorded:
                self._record(item)
                self.db.set_references(item.record.id, mlflow_run_id=item.run_id)
        self._unrecorded.clear()

    def await_run(self, item: WorkItem) -> str:
        """The id of the run of ``item``'s attempt, waiting for its creation (the caller records it with the
        attempt's end, unless ``item.run_recorded``); raises :class:`TrackingUnavailable` when it could not
        be created."""
        if item.run_id is None and item.run_key is not None:
            item.run_id = self.writer.run_id(item.run_key, RUN_WAIT_S)
        if item.run_id is None:
            error = self.writer.error
            cause = f"{type(error).__name__}: {error}" if error else f"not created within {RUN_WAIT_S:.0f} s"
            raise TrackingUnavailable(
                f"the MLflow run of trial {item.trial_id} could not be created ({cause}); check the tracking "
                "store (--mlflow / $IEL_MLFLOW_URI); the trial runs again at the next submit"
            ) from error
        return item.run_id

    def known(self, item: WorkItem) -> str | None:
        """The id of the run of ``item``'s attempt if it exists already (no waiting)."""
        return item.run_id or (self.writer.run_id(item.run_key, 0) if item.run_key else None)

    def _record(self, item: WorkItem) -> None:
        storage_call(item.optuna_trial.set_user_attr, "mlflow_run_id", item.run_id)
        item.run_recorded = True
