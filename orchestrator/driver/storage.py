"""Optuna storage access with the results database's retry policy, and fast local SQLite settings."""

from __future__ import annotations

import datetime
import logging
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, cast

import optuna
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from orchestrator.db.engine import (
    DEFAULT_RETRY_ATTEMPTS,
    DEFAULT_RETRY_BACKOFF_S,
    MAX_RETRY_DELAY_S,
    is_transient,
)

T = TypeVar("T")
Param = tuple[str, float, optuna.distributions.BaseDistribution]  # a sampled param: name, internal value
_db_logger = logging.getLogger("orchestrator.db")  # retries of Optuna's storage are logged with ours


def optuna_storage(db_url: str) -> optuna.storages.BaseStorage:
    """The driver's Optuna storage: a :class:`BatchRDBStorage` (with :func:`fast_sqlite` on a writable local
    SQLite file) behind a :class:`~.optuna_cache.SingleWriterCache`."""
    from orchestrator.driver.optuna_cache import SingleWriterCache

    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if db_url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 60}}
    storage = BatchRDBStorage(db_url, engine_kwargs=kwargs)
    fast_sqlite(storage.engine)
    return SingleWriterCache(storage)


class BatchRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage with one batched write: a trial's user attributes and intermediate values in
    one transaction, where Optuna's API takes one per value.  The rows are the ones ``Trial.set_user_attr``
    and ``Trial.report`` write (Optuna's own helpers write them); as with ``report``, a step already
    reported keeps its first value."""

    def write_trial_extras(
        self,
        trial_id: int,
        user_attrs: Mapping[str, Any],
        intermediate: Mapping[int, float],
        params: Sequence[Param] = (),
    ) -> None:
        from optuna.storages._rdb.storage import _create_scoped_session

        if not user_attrs and not intermediate and not params:
            return
        with _create_scoped_session(self.scoped_session, True) as session:
            self._extras_without_commit(session, trial_id, user_attrs, intermediate, params)

    def end_trial(
        self,
        trial_id: int,
        user_attrs: Mapping[str, Any],
        intermediate: Mapping[int, float],
        state: optuna.trial.TrialState,
        values: Sequence[float] | None,
        params: Sequence[Param] = (),
    ) -> datetime.datetime | None:
        """:meth:`write_trial_extras` and ``set_trial_state_values`` (a finished ``state``) in one
        transaction, as Optuna writes them; returns the trial's ``datetime_complete`` as written, or None
        when the database refused the write (an integrity error, as ``set_trial_state_values`` returns
        False).  Raises ``UpdateFinishedTrialError`` for a trial already finished, as Optuna does."""
        from optuna.storages._rdb.storage import _create_scoped_session

        assert state.is_finished(), state
        try:
            with _create_scoped_session(self.scoped_session) as session:
                trial = self._extras_without_commit(session, trial_id, user_attrs, intermediate, params)
                for objective, v in enumerate(values or ()):
                    self._set_trial_value_without_commit(session, trial, objective, v)
                trial.state = state
                trial.datetime_complete = when = datetime.datetime.now()
        except sa_exc.IntegrityError:
            return None
        return when

    def _extras_without_commit(
        self,
        session: Any,
        trial_id: int,
        user_attrs: Mapping[str, Any],
        intermediate: Mapping[int, float],
        params: Sequence[Param] = (),
    ) -> Any:
        """Add sampled params (already checked against the study's distributions), the attributes and the
        intermediate values of steps not reported yet (rows as Optuna's own helpers write them) to
        ``session``; returns the trial's row.  Raises ``UpdateFinishedTrialError`` for a finished trial."""
        from optuna.storages._rdb import models

        trial = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
        self.check_trial_is_updatable(trial_id, trial.state)  # type: ignore[arg-type]
        for name, internal, dist in params:
            session.add(
                models.TrialParamModel(
                    trial_id=trial_id,
                    param_name=name,
                    param_value=internal,
                    distribution_json=optuna.distributions.distribution_to_json(dist),
                )
            )
        if user_attrs:
            self._upsert_user_attrs(session, trial_id, user_attrs)
        if intermediate:
            rows = models.TrialIntermediateValueModel
            reported = {step for (step,) in session.query(rows.step).filter(rows.trial_id == trial_id)}
            for step, value in intermediate.items():
                if step in reported:
                    continue
                stored, kind = rows.intermediate_value_to_stored_repr(value)
                session.add(
                    rows(
                        trial_id=trial_id, step=step, intermediate_value=stored, intermediate_value_type=kind
                    )
                )
        return trial

    def _upsert_user_attrs(self, session: Any, trial_id: int, user_attrs: Mapping[str, Any]) -> None:
        """Optuna's ``_set_trial_attr_without_commit`` for several attributes in one statement, without its
        re-read of the trial (already checked)."""
        import json

        from optuna.storages._rdb import models
        from sqlalchemy.dialects import postgresql, sqlite

        model = models.TrialUserAttributeModel
        if self.engine.name not in ("sqlite", "postgresql"):
            for key, value in user_attrs.items():
                self._set_trial_attr_without_commit(session, model, trial_id, key, value)
            return
        insert = sqlite.insert if self.engine.name == "sqlite" else postgresql.insert
        rows = [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in user_attrs.items()]
        stmt = insert(model).values(rows)
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=[model.trial_id, model.key], set_={"value_json": stmt.excluded.value_json}
            )
        )


def write_trial_extras(
    trial: optuna.trial.Trial, user_attrs: Mapping[str, Any], intermediate: Mapping[int, float] | None = None
) -> None:
    """Set ``trial``'s user attributes and report its intermediate values (``step -> value``) in one
    transaction when its storage can (:meth:`BatchRDBStorage.write_trial_extras`, through the driver's
    cache), else one call each; retried as :func:`storage_call` does."""
    batch = getattr(trial.storage, "write_trial_extras", None)
    if batch is not None:
        storage_call(batch, trial._trial_id, user_attrs, intermediate or {})
        trial._cached_frozen_trial.user_attrs.update(user_attrs)
        return
    for key, value in user_attrs.items():
        storage_call(trial.set_user_attr, key, value)
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # "the reported value is ignored because this step is already reported"
        for step, value in (intermediate or {}).items():
            storage_call(trial.report, value, step)


def end_trial(
    trial: optuna.trial.Trial,
    user_attrs: Mapping[str, Any],
    intermediate: Mapping[int, float],
    tell: Callable[[], object],
) -> None:
    """Write ``trial``'s last attributes and intermediate values (as :func:`write_trial_extras`) and end it
    with ``tell()`` (a ``study.tell``), retried as :func:`storage_call` does: in one transaction with the
    trial's end when the storage can stage them (the driver's cache, ``SingleWriterCache.stage_extras``),
    else one write before the tell.  What the tell did not write (it found the trial already finished) is
    written on its own, as before the tell."""
    stage = getattr(trial.storage, "stage_extras", None)
    if stage is None or (not user_attrs and not intermediate):
        write_trial_extras(trial, user_attrs, intermediate)
        storage_call(tell)
        return
    stage(trial._trial_id, user_attrs, intermediate)
    trial._cached_frozen_trial.user_attrs.update(user_attrs)
    try:
        storage_call(tell)
    finally:
        left = trial.storage.unstage(trial._trial_id)  # type: ignore[attr-defined]
    if left is not None:
        storage_call(trial.storage.write_trial_extras, trial._trial_id, *left)  # type: ignore[attr-defined]


def intermediate_values(
    objectives: Sequence[str], epochs: Mapping[int, Mapping[str, float]], steps: Iterable[int]
) -> dict[int, float]:
    """The intermediate values Optuna records for ``steps``: the first objective's value of each epoch that
    has one (none for several objectives; see ``CellSearch.report_value``)."""
    if len(objectives) != 1:
        return {}
    return {e: float(v) for e in steps if (v := epochs.get(e, {}).get(objectives[0])) is not None}


def fast_sqlite(engine: Engine | None) -> bool:
    """Put a writable local SQLite database in WAL mode with ``synchronous=NORMAL`` (a commit appends to the
    write-ahead log without waiting for the disk; a power loss can lose the last commits, never corrupt the
    file), as the results database is (:mod:`orchestrator.db.engine`): readers never block the writer.  Every
    connection the engine opens from now on gets it (open ones are closed).  Other databases, files on a
    read-only home, and a file another process holds in rollback mode at this moment are left as they are.
    Returns True when this call switched the file to WAL: :func:`end_fast_sqlite` switches it back."""
    from orchestrator.db.engine import sqlite_is_readonly, sqlite_path

    if engine is None or engine.url.get_backend_name() != "sqlite":
        return False
    path = sqlite_path(engine.url)
    if path is None or sqlite_is_readonly(path) or not path.exists():
        return False
    engine.dispose()
    raw = sqlite3.connect(str(path), timeout=0.5)
    try:
        before = str(raw.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        mode = str(raw.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
    except sqlite3.Error:  # another connection is in the way: leave the file as it is
        return False
    finally:
        raw.close()
    if mode != "wal":
        return False

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        try:
            if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                cur.execute("PRAGMA synchronous=NORMAL")
        finally:
            cur.close()

    return before != "wal"


def end_fast_sqlite(engine: Engine | None) -> bool:
    """Switch a file :func:`fast_sqlite` put in WAL mode back to the rollback journal, once this process is
    done writing it: the log is folded into the file and removed, so a home copied, moved or mounted
    read-only (or a store deleted without its ``-wal`` file) holds one self-contained file.  Left in WAL
    mode when another process has it open (that is safe too); returns whether it switched."""
    from orchestrator.db.engine import sqlite_path

    path = sqlite_path(engine.url) if engine is not None else None
    if engine is None or path is None:
        return False
    engine.dispose()
    raw = sqlite3.connect(str(path), timeout=0.5)
    try:
        return str(raw.execute("PRAGMA journal_mode=DELETE").fetchone()[0]).lower() == "delete"
    except sqlite3.Error:
        return False
    finally:
        raw.close()


def storage_call(fn: Callable[..., T], *args: Any) -> T:
    """Call into Optuna's storage, retrying on a lost database connection like the results database does
    (Optuna wraps the driver's error in a StorageInternalError): backoff 0.5 s, 1 s, 2 s, ..."""
    for k in range(1, DEFAULT_RETRY_ATTEMPTS + 1):
        try:
            return fn(*args)
        except optuna.exceptions.UpdateFinishedTrialError:
            if k == 1:
                raise
            # A retry of a trial's end: the earlier attempt's write reached the database before its
            # connection was lost (or the cache's re-read after it failed). The trial ended as asked.
            return cast(T, None)
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
