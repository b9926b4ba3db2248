"""The embedded stores on disk: MLflow's SQLite store created once and atomically, and runs a damaged store lost.

* :func:`ensure_mlflow_store` creates ``mlflow.db`` under an exclusive file lock, in a temporary file that is
  renamed into place only when MLflow's tables and migrations are complete.  Two drivers started at once on a
  fresh home never race on MLflow's migrations, and an interrupted creation leaves no half-made store (a
  half-made one from an older version, holding no run, is moved aside and made again).
* :func:`missing_runs` / :func:`repair_missing_runs`: after ``mlflow.db`` was deleted or replaced, the
  results database still names MLflow runs of finished trials that the store no longer has; the repair
  creates each again from the database's record (params, per-epoch and final metrics) and links it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ielcore.errors import IELError
from orchestrator.settings import sqlite_file, sqlite_url

if TYPE_CHECKING:
    from orchestrator.db import ResultsDB, TrialRecord
    from orchestrator.tracking import Tracker

logger = logging.getLogger("orchestrator.stores")

_CREATING = ".creating-"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing) for the duration of the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _store_state(path: Path) -> str:
    """``"ready"`` (MLflow's tables at a migration head), ``"missing"``, ``"unfinished"`` (no migration stamp,
    no run: an interrupted creation) or ``"unknown"`` (not recognisable, left for MLflow to judge)."""
    if not path.exists():
        return "missing"
    if path.stat().st_size == 0:
        return "unfinished"
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return "unknown"
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if (
            "alembic_version" in tables
            and "experiments" in tables
            and conn.execute("SELECT count(*) FROM alembic_version").fetchone()[0]
        ):
            return "ready"
        if "runs" in tables and conn.execute("SELECT count(*) FROM runs").fetchone()[0]:
            return "unknown"
        return "unfinished"
    except sqlite3.DatabaseError:
        return "unknown"
    finally:
        conn.close()


def ensure_mlflow_store(mlflow_uri: str, artifact_root: str | None) -> bool:
    """Create the MLflow SQLite store named by ``mlflow_uri`` if it does not exist yet; True when created.

    A no-op for other stores (an MLflow server, PostgreSQL): a server creates its own store, and a database
    serialises MLflow's migrations itself.  The store is built in ``.<name>.creating-<pid>`` beside its final
    place and renamed into place (atomic on one file system), all under ``.<name>.lock``.
    """
    path = sqlite_file(mlflow_uri)
    if path is None or _store_state(path) == "ready":
        return False
    try:
        return _create_once(path, artifact_root)
    except OSError as e:
        raise IELError(
            f"cannot create the MLflow store {path} ({e.strerror or e}); make sure its folder is writable and "
            "has free space, or point --home / $IEL_HOME or --mlflow / $IEL_MLFLOW_URI elsewhere"
        ) from e


def _create_once(path: Path, artifact_root: str | None) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.parent / f".{path.name}.lock"):
        for stale in path.parent.glob(f".{path.name}{_CREATING}*"):  # ours, left by an interrupted creation
            stale.unlink(missing_ok=True)
        state = _store_state(path)
        if state in ("ready", "unknown"):
            return False
        if state == "unfinished":
            aside = path.with_name(f"{path.name}.unfinished")
            os.replace(path, aside)
            logger.warning("moved an unfinished MLflow store (no run in it) aside to %s", aside)
        tmp = path.with_name(f".{path.name}{_CREATING}{os.getpid()}")
        try:
            _create_store(tmp, artifact_root or str(path.parent / "mlartifacts"))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return True


def _create_store(path: Path, artifact_root: str) -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    try:
        store = SqlAlchemyStore(sqlite_url(path, for_mlflow=True), artifact_root)
    except Exception as e:  # translate at the boundary
        raise IELError(
            f"cannot create the MLflow store {path.with_name(path.name.split(_CREATING)[0][1:])} "
            f"({type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}); make sure the home "
            "folder is writable and has free space, or point --mlflow / $IEL_MLFLOW_URI elsewhere"
        ) from e
    store.engine.dispose()


def warn_lost_runs(db_url: str, mlflow_uri: str, warn: Callable[[str], None] | None = None) -> int:
    """After :func:`ensure_mlflow_store` made a new, empty store: count the finished trials that the SQLite
    results database links to MLflow runs (all now lost) and warn once, naming both files and the repair."""
    path = sqlite_file(db_url)
    if path is None or not path.exists():
        return 0
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            sql = "SELECT count(*) FROM iel_trials WHERE mlflow_run_id IS NOT NULL AND state = 'COMPLETE'"
            n = int(conn.execute(sql).fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:  # no such table yet, or unreadable: the results database reports that itself
        return 0
    if n:
        (warn or logger.warning)(
            f"the MLflow store {sqlite_file(mlflow_uri)} did not exist and was created empty, but the results "
            f"database {path} links {n} finished trial(s) to MLflow runs that were in it: those runs are lost "
            "(the results are intact). Restore the old mlflow.db from a backup to keep them; otherwise the "
            "driver creates their runs again from the results database."
        )
    return n


def _has_tables(path: Path, names: set[str]) -> bool:
    if not path.exists():
        return False
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            found = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.Error:
        return True  # unreadable or damaged: opening the results database reports it, with its fix
    return names <= found


_RESULTS_TABLES = {"iel_alembic_version", "version_info"}  # ours (Alembic) and Optuna's


def ensure_results_store(db_url: str) -> bool:
    """Create our tables and Optuna's in the SQLite results database once, under ``.<name>.lock``; True when
    this call made them.  (Optuna's table creation is not safe against a second process doing the same.)"""
    path = sqlite_file(db_url)
    if path is None or _has_tables(path, _RESULTS_TABLES):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.parent / f".{path.name}.lock"):
        if _has_tables(path, _RESULTS_TABLES):
            return False
        import optuna

        from orchestrator.db import ResultsDB

        ResultsDB(db_url).close()
        try:
            storage = optuna.storages.RDBStorage(db_url, engine_kwargs={"connect_args": {"timeout": 60}})
        except Exception as e:  # translate at the boundary
            raise IELError(
                f"cannot create Optuna's tables in the results database {path} ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:300] if str(e) else ''}); make sure the file is writable, or point "
                "--db / $IEL_DB_URL elsewhere"
            ) from e
        storage.engine.dispose()
    return True


# ------------------------------------------------------------------------------ runs lost by the store
@dataclass(frozen=True)
class MissingRuns:
    """Finished trials of a study whose MLflow run the tracking store does not have."""

    study: str
    trial_ids: tuple[int, ...]
    run_ids: tuple[str, ...]

    def message(self, tracking_uri: str) -> str:
        n = len(self.trial_ids)
        return (
            f"{n} finished trial(s) of study {self.study!r} name MLflow runs that the tracking store "
            f"{tracking_uri} does not have (e.g. {self.run_ids[0]}): the store was deleted or replaced after "
            "they ran. Their results are intact in the results database; `iel submit` creates their runs "
            "again from it (parameters and metrics; artifacts stay where they were written)."
        )


def _existing_run_ids(tracker: Tracker, exp_id: str) -> set[str]:
    from mlflow.entities import ViewType

    ids: set[str] = set()
    token: str | None = None
    while True:
        page = tracker.client.search_runs(
            [exp_id], run_view_type=ViewType.ALL, max_results=10_000, page_token=token
        )
        ids.update(r.info.run_id for r in page)
        token = page.token
        if not token:
            return ids


def missing_runs(db: ResultsDB, tracker: Tracker, exp_id: str, study: str) -> MissingRuns:
    """The finished trials of ``study`` whose recorded MLflow run is not in experiment ``exp_id``."""
    from orchestrator.db import TrialState

    done = [t for t in db.trials(study) if t.state == TrialState.COMPLETE and t.mlflow_run_id]
    have = _existing_run_ids(tracker, exp_id) if done else set()
    lost = [t for t in done if t.mlflow_run_id not in have]
    return MissingRuns(study, tuple(t.id for t in lost), tuple(str(t.mlflow_run_id) for t in lost))


def _create_trial_run(
    tracker: Tracker, exp_id: str, parent: str, name: str, config: Mapping[str, Any], tags: Mapping[str, str]
) -> str:
    """A trial run under ``parent`` with the trial's configuration as params (MLflow's client directly)."""
    from mlflow.entities import Param

    from orchestrator.tracking import flatten

    all_tags = {**tags, "iel.role": "trial", "mlflow.parentRunId": parent}
    run_id = str(tracker.client.create_run(exp_id, tags=all_tags, run_name=name).info.run_id)
    params = [Param(k, v) for k, v in flatten(config).items()]
    for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
        tracker.client.log_batch(run_id, params=params[i : i + 100], synchronous=True)
    return run_id


def repair_missing_runs(
    db: ResultsDB,
    tracker: Tracker,
    exp_id: str,
    study: str,
    cell_runs: Mapping[str, str],
    tags: Callable[[TrialRecord], Mapping[str, str]] = lambda rec: {},
    warn: Callable[[str], None] = logger.warning,
) -> int:
    """Create again, from the results database, the MLflow run of every finished trial of ``study`` whose
    run the store lost (see :class:`MissingRuns`); link it to the trial and return how many were made.

    ``cell_runs`` maps a cell key to its MLflow cell run (the parent of the new runs); ``tags(rec)`` gives the
    driver's usual trial tags.  A recreated run carries ``iel.recreated_from_run`` (the lost run's id).
    """
    lost = missing_runs(db, tracker, exp_id, study)
    if not lost.trial_ids:
        return 0
    warn(lost.message(tracker.tracking_uri))
    for trial_id, old_run in zip(lost.trial_ids, lost.run_ids):
        rec = db.get_trial(trial_id)
        parent = cell_runs.get(rec.cell_key)
        if parent is None:
            continue
        extra: dict[str, Any] = {"iel.recreated_from_run": old_run, "iel.trial_id": str(rec.id)}
        run_id = _create_trial_run(
            tracker, exp_id, parent, f"{rec.cell_key} seed={rec.seed}", rec.config, {**tags(rec), **extra}
        )
        source = rec.reused_from_id if rec.reused_from_id is not None else rec.id
        from orchestrator.tracking import trial_metric_rows

        epochs: dict[int, dict[str, float]] = {}
        for e, n, v in db.epoch_metrics(source):
            if v is not None:
                epochs.setdefault(int(e), {})[n] = float(v)
        tracker.finish(run_id, "FINISHED", metrics=trial_metric_rows(epochs, rec.final_metrics))
        db.set_references(rec.id, mlflow_run_id=run_id)
    return len(lost.trial_ids)
