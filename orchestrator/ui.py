"""``iel ui``: the MLflow UI over the study store, bound to 127.0.0.1 unless asked otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

from orchestrator.settings import Settings


def mlflow_server_command(settings: Settings, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        settings.mlflow_uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    if settings.artifact_root:
        cmd += ["--artifacts-destination", settings.artifact_root]
    return cmd


def serve_mlflow(settings: Settings, host: str = "127.0.0.1", port: int = 5000) -> int:
    if settings.artifact_root:
        os.makedirs(settings.artifact_root, exist_ok=True)
    print(f"MLflow UI for {settings.mlflow_uri} at http://{host}:{port} (Ctrl-C to stop)", flush=True)
    try:
        return subprocess.call(mlflow_server_command(settings, host, port))
    except KeyboardInterrupt:
        return 0
