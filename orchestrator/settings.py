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
        mlflow_uri = mlflow or os.environ.get("IEL_MLFLOW_URI") or f"sqlite:///{root / 'mlflow.db'}"
        # With a local store we choose the artifact folder; an MLflow server chooses its own.
        artifact_root = (
            str(root / "mlartifacts") if mlflow_uri.startswith(("sqlite:", "file:", "/")) else None
        )
        ray_address = address or os.environ.get("IEL_RAY_ADDRESS") or None
        return cls(root, normalise_db_url(db_url), mlflow_uri, artifact_root, ray_address)

    def ensure_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)


def normalise_db_url(url: str) -> str:
    """``postgresql://`` -> ``postgresql+psycopg://`` (the psycopg 3 driver we ship)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url
