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
        db_url = db or os.environ.get("IEL_DB_URL") or f"sqlite:///{root / 'iel.db'}"
        mlflow_uri = normalise_db_url(
            mlflow or os.environ.get("IEL_MLFLOW_URI") or f"sqlite:///{root / 'mlflow.db'}"
        )
        # With a store the driver opens itself (a path, SQLite, or a database URL such as PostgreSQL) we
        # choose the artifact folder; an MLflow server chooses its own.  (Without this a database store put
        # artifacts in ./mlruns of whichever process created the experiment.)
        artifact_root = str(root / "mlartifacts") if is_direct_store(mlflow_uri) else None
        ray_address = address or os.environ.get("IEL_RAY_ADDRESS") or None
        return cls(root, normalise_db_url(db_url), mlflow_uri, artifact_root, ray_address)

    def ensure_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)


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
