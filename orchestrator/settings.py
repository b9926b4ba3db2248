"""Where a study's state lives: embedded defaults under one folder, or real services by flag/environment.

With no flags everything is under ``./iel-runs/`` (or ``$IEL_HOME``): ``iel.db`` (SQLite, WAL; our tables
and Optuna's), ``mlflow.db`` (MLflow's SQLite store) and ``mlartifacts/``; Ray starts locally.  Flags or
``$IEL_DB_URL`` / ``$IEL_MLFLOW_URI`` / ``$IEL_RAY_ADDRESS`` point the same code at PostgreSQL, an MLflow
server and a Ray cluster.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    home: Path
    db_url: str
    mlflow_uri: str
    artifact_root: str | None
    ray_address: str | None

    @classmethod
    def resolve(
        cls,
        *,
        home: str | None = None,
        db: str | None = None,
        mlflow: str | None = None,
        address: str | None = None,
    ) -> Settings:
        root = Path(home or os.environ.get("IEL_HOME") or "iel-runs").absolute()
        db_url = db or os.environ.get("IEL_DB_URL") or sqlite_url(root / "iel.db")
        mlflow_uri = normalise_db_url(
            mlflow or os.environ.get("IEL_MLFLOW_URI") or sqlite_url(root / "mlflow.db", for_mlflow=True)
        )
        # With a store the driver opens itself (a path, SQLite, or a database URL such as PostgreSQL) we
        # choose the artifact folder; an MLflow server chooses its own.  (Without this a database store put
        # artifacts in ./mlruns of whichever process created the experiment.)
        artifact_root = str(root / "mlartifacts") if is_direct_store(mlflow_uri) else None
        ray_address = address or os.environ.get("IEL_RAY_ADDRESS") or None
        return cls(root, normalise_db_url(db_url), mlflow_uri, artifact_root, ray_address)

    def ensure_home(self) -> None:
        """Create the home folder; create SQLite stores once, under a file lock: the results database (our
        tables and Optuna's) and MLflow's store (atomically (see :func:`orchestrator.stores.ensure_mlflow_store`), so drivers started at the
        same moment on a fresh home never race on MLflow's migrations; a new store beside a results database
        that names runs of it gets a warning (the store was deleted)."""
        self.home.mkdir(parents=True, exist_ok=True)
        from orchestrator.stores import ensure_mlflow_store, ensure_results_store, warn_lost_runs

        ensure_results_store(self.db_url)
        if ensure_mlflow_store(self.mlflow_uri, self.artifact_root):
            warn_lost_runs(self.db_url, self.mlflow_uri)


def sqlite_url(path: Path, *, for_mlflow: bool = False) -> str:
    """The SQLAlchemy URL of the SQLite file ``path``, quoted so that any character (``?``, ``#``, ``%``,
    spaces, quotes) stays part of the path: ``sqlite:////a%3Fb/iel.db`` names the file ``/a?b/iel.db``.

    ``for_mlflow``: when the path needs quoting, name the driver (``sqlite+pysqlite:``), because MLflow
    creates the parent folder of whatever follows a literal ``sqlite:///`` without unquoting it (a stray
    ``a%3Fb`` folder beside the home).  Paths that need no quoting keep the plain ``sqlite:///`` form.
    """
    from sqlalchemy.engine import URL

    plain = f"sqlite:///{path}"
    quoted = URL.create("sqlite", database=str(path)).render_as_string(hide_password=False)
    if quoted == plain or not for_mlflow:
        return quoted
    return URL.create("sqlite+pysqlite", database=str(path)).render_as_string(hide_password=False)


def sqlite_file(url: str) -> Path | None:
    """The file a ``sqlite`` URL names (unquoted), or None for another backend or an in-memory database."""
    from sqlalchemy import exc
    from sqlalchemy.engine import make_url

    if not url.lower().startswith("sqlite"):
        return None
    try:
        db = make_url(url).database
    except exc.ArgumentError:
        return None
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db)


_DIRECT_STORE_SCHEMES = ("sqlite", "file", "postgresql", "postgres", "mysql", "mssql")


def is_direct_store(mlflow_uri: str) -> bool:
    """True when the driver opens the MLflow store itself (a path, ``file:``, SQLite or a SQL database URL).

    False for a tracking server (``http(s)://``, ``databricks``...), which keeps the artifacts itself.  A direct
    store's artifacts live on the driver's file system, so Ray workers on other machines cannot upload to it:
    use an MLflow server (``mlflow server --serve-artifacts``) with a cluster.
    """
    if mlflow_uri.startswith("databricks"):  # "databricks", "databricks://profile", "databricks-uc"
        return False
    if ":" not in mlflow_uri or mlflow_uri.startswith("/"):
        return True
    return mlflow_uri.split(":", 1)[0].split("+", 1)[0].lower() in _DIRECT_STORE_SCHEMES


def normalise_db_url(url: str) -> str:
    """``postgresql://`` -> ``postgresql+psycopg://`` (the psycopg 3 driver we ship)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url
