"""The stores a driver writes: the results database, with the study's driver lock, and the MLflow store.

The study's lock covers both stores: a row in the results database, and in the MLflow store the study's
experiment tag ``iel.driver`` (owner ``host:pid``, heartbeat, results database), held beside a local
MLflow store by an exclusive ``flock`` too.  A second driver of the same study on another ``--db`` but the
same MLflow store therefore refuses before it closes any run as stale.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from orchestrator.db import DriverLocked, ResultsDB
from orchestrator.db.engine import redact_url
from orchestrator.driver.cluster import owner_is_dead
from orchestrator.settings import Settings, sqlite_file
from orchestrator.tracking import Tracker

LOCK_TAG = "iel.driver"
MLFLOW_HEARTBEAT_S = 10.0  # how often the MLflow lock's heartbeat is refreshed
MLFLOW_STALE_AFTER_S = 60.0  # an MLflow lock not refreshed for this long belongs to a dead driver


class MlflowLock:
    """The study's lock on the MLflow side (see the module docstring)."""

    def __init__(self, tracker: Tracker, exp_id: str, owner: str, db_url: str) -> None:
        self.tracker, self.exp_id, self.owner, self.db_url = tracker, exp_id, owner, db_url
        self._fd: int | None = None
        self._beat = 0.0

    def _held(self) -> dict[str, Any] | None:
        exp = self.tracker.client.get_experiment(self.exp_id)
        raw = exp.tags.get(LOCK_TAG)
        if not raw:
            return None
        try:
            held = json.loads(raw)
        except ValueError:
            return None
        return held if isinstance(held, dict) and held.get("owner") else None

    def _flock(self, study: str) -> None:
        path = sqlite_file(self.tracker.tracking_uri)
        if path is None:
            return
        lock = path.parent / f".{path.name}.{self.exp_id}.driver.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 300, 0).decode(errors="replace").strip() or "another driver"
            os.close(fd)
            where = f"{holder}, which holds the study's lock in the MLflow store {path}"
            raise DriverLocked(study, where, 0.0, MLFLOW_STALE_AFTER_S) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, self.owner.encode(), 0)
        self._fd = fd

    def acquire(self, study: str) -> None:
        """Take the lock, or raise :class:`DriverLocked` naming the live driver that holds it."""
        self._flock(study)
        held = self._held()
        if held is not None and held["owner"] != self.owner:
            age = time.time() - float(held.get("heartbeat", 0))
            if age < MLFLOW_STALE_AFTER_S and not owner_is_dead(str(held["owner"])):
                self.release()
                where = (
                    f"{held['owner']} (results database {held.get('db', '?')}), which holds the study's "
                    f"lock in the MLflow store {self.tracker.tracking_uri}"
                )
                raise DriverLocked(study, where, age, MLFLOW_STALE_AFTER_S)
        self._write()

    def _write(self) -> None:
        value = {"owner": self.owner, "heartbeat": time.time(), "db": redact_url(self.db_url)}
        self.tracker.client.set_experiment_tag(self.exp_id, LOCK_TAG, json.dumps(value))
        self._beat = time.monotonic()

    def heartbeat(self) -> None:
        if time.monotonic() - self._beat >= MLFLOW_HEARTBEAT_S:
            self._write()

    def release(self) -> None:
        try:
            held = self._held()
            if held is not None and held["owner"] == self.owner:
                self.tracker.client.delete_experiment_tag(self.exp_id, LOCK_TAG)
        finally:
            if self._fd is not None:
                os.close(self._fd)  # closing releases the flock
                self._fd = None


class Stores:
    """The results database, with this study's driver lock held by ``owner``, and the MLflow store."""

    def __init__(self, db: ResultsDB, tracker: Tracker, study: str, owner: str, *, db_url: str) -> None:
        self.db = db
        self.tracker = tracker
        self.study = study
        self.owner = owner
        self.db_url = db_url
        self.mlflow_lock: MlflowLock | None = None

    @classmethod
    def open(cls, settings: Settings, study: str, owner: str) -> Stores:
        """Open both stores and take the study's lock in the results database (from a driver of this host
        that is gone, at once).  The MLflow side is locked by :meth:`lock_mlflow`, once the cluster has been
        checked: a study the cluster cannot run leaves no trace, not even an MLflow experiment."""
        sqlite = settings.db_url.startswith("sqlite")
        # A database server that cannot be used fails before any file of the home is written.
        server_db = None if sqlite else ResultsDB(settings.db_url)  # raises DatabaseUnavailable
        if sqlite or settings.artifact_root is not None:
            settings.ensure_home()
        db = server_db or ResultsDB(settings.db_url)
        tracker = Tracker(settings.mlflow_uri, settings.artifact_root)
        try:
            db.acquire_driver_lock(study, owner)
        except DriverLocked as e:
            if not owner_is_dead(e.owner):
                raise
            db.acquire_driver_lock(study, owner, stale_after_s=0)
        return cls(db, tracker, study, owner, db_url=settings.db_url)

    def lock_mlflow(self, description: str = "") -> None:
        """Take the study's lock on the MLflow side (creating its experiment); before any run is touched."""
        lock = MlflowLock(
            self.tracker, self.tracker.experiment(self.study, description), self.owner, self.db_url
        )
        lock.acquire(self.study)
        self.mlflow_lock = lock

    def heartbeat(self) -> None:
        self.db.heartbeat_driver_lock(self.study, self.owner)
        if self.mlflow_lock is not None:
            self.mlflow_lock.heartbeat()

    def close(self) -> None:
        """Release the locks (the database stays usable for reads)."""
        try:
            if self.mlflow_lock is not None:
                with contextlib.suppress(Exception):
                    self.mlflow_lock.release()
        finally:
            self.db.release_driver_lock(self.study, self.owner)


def lock_file(settings: Settings, exp_id: str) -> Path | None:
    """The ``flock`` file beside a local MLflow store for experiment ``exp_id`` (None for a server)."""
    path = sqlite_file(settings.mlflow_uri)
    return None if path is None else path.parent / f".{path.name}.{exp_id}.driver.lock"
