"""The study's driver lock in the results database (one live driver per study, across machines)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, delete, insert, or_, select, update
from sqlalchemy import exc as sa_exc

from ielcore.errors import IELError
from orchestrator.db.base import DBCore
from orchestrator.db.models import (
    DriverLock,
    utcnow,
)


class DriverLocked(IELError):
    """Another live driver holds the study's lock."""

    def __init__(
        self, study_name: str, owner: str, heartbeat_age_s: float, stale_after_s: float | None
    ) -> None:
        self.study_name, self.owner = study_name, owner
        if stale_after_s is None:  # raised by heartbeat: we were stale and someone took over
            super().__init__(
                f"this driver lost the lock of study {study_name!r}; it is now held by {owner}. "
                f"Stop this driver: two drivers must never run one study."
            )
            return
        wait = max(stale_after_s - heartbeat_age_s, 0.0)
        super().__init__(
            f"study {study_name!r} is being driven by {owner} (last heartbeat {heartbeat_age_s:.0f} s ago). "
            f"Wait for that driver to finish or stop it; if its process is dead, its lock goes stale "
            f"in {wait:.0f} s and the study can then be resumed."
        )


class DriverLocks(DBCore):
    """Acquire, heartbeat and release a study's driver lock."""

    def acquire_driver_lock(
        self, study_name: str, owner: str, stale_after_s: float = 60, *, now: datetime | None = None
    ) -> None:
        """Take the study's driver lock for ``owner`` (``host:pid``).  Succeeds when it is free, already
        ours, or its heartbeat is older than ``stale_after_s``; else raises :class:`DriverLocked`."""
        now = now or utcnow()
        cutoff = now - timedelta(seconds=stale_after_s)

        def run(conn: Connection) -> tuple[str, datetime] | None:
            taken = conn.execute(
                update(DriverLock)
                .where(
                    DriverLock.study_name == study_name,
                    or_(DriverLock.owner == owner, DriverLock.heartbeat_at < cutoff),
                )
                .values(owner=owner, acquired_at=now, heartbeat_at=now)
            ).rowcount
            if taken:
                return None
            held = conn.execute(
                select(DriverLock.owner, DriverLock.heartbeat_at).where(DriverLock.study_name == study_name)
            ).first()
            if held is not None:
                return held.owner, held.heartbeat_at
            conn.execute(
                insert(DriverLock).values(
                    study_name=study_name, owner=owner, acquired_at=now, heartbeat_at=now
                )
            )
            return None

        try:
            held = self._tx(run)
        except sa_exc.IntegrityError:  # another driver inserted the lock between our read and insert
            held = self._tx(run)
        if held is not None:
            raise DriverLocked(study_name, held[0], (now - held[1]).total_seconds(), stale_after_s)

    def heartbeat_driver_lock(self, study_name: str, owner: str, *, now: datetime | None = None) -> None:
        """Refresh the lock's heartbeat; raises :class:`DriverLocked` if another driver took it over."""
        now = now or utcnow()

        def run(conn: Connection) -> tuple[str, datetime] | None:
            where = and_(DriverLock.study_name == study_name, DriverLock.owner == owner)
            if conn.execute(update(DriverLock).where(where).values(heartbeat_at=now)).rowcount:
                return None
            held = conn.execute(
                select(DriverLock.owner, DriverLock.heartbeat_at).where(DriverLock.study_name == study_name)
            ).first()
            return (held.owner, held.heartbeat_at) if held is not None else ("nobody (lock released)", now)

        held = self._tx(run)
        if held is not None:
            raise DriverLocked(study_name, held[0], (now - held[1]).total_seconds(), None)

    def release_driver_lock(self, study_name: str, owner: str) -> None:
        """Drop the lock if ``owner`` holds it (no error otherwise)."""
        where = and_(DriverLock.study_name == study_name, DriverLock.owner == owner)
        self._tx(lambda conn: conn.execute(delete(DriverLock).where(where)))

    # -- ad-hoc SQL -------------------------------------------------------------------------------
