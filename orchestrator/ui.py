"""``iel ui``: the MLflow UI over the study store, bound to 127.0.0.1 unless asked otherwise.

:func:`serve_mlflow` runs ``mlflow server`` in the foreground (the command); :func:`wait_http` and
:func:`stop_process` help scripts and tests that run it in the background.  The server reads the same
tracking store the driver writes (SQLite file or PostgreSQL) and serves the artifacts
(``--artifacts-destination`` is the local ``mlartifacts/`` folder with the embedded defaults).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import suppress

from ielcore.errors import IELError
from orchestrator.settings import Settings

# The server's job runner serves MLflow's GenAI features only; without it the server starts faster.
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


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
    if settings.mlflow_uri.startswith(("http://", "https://")):
        print(
            f"the study store is an MLflow server already: open {settings.mlflow_uri} in a browser",
            flush=True,
        )
        return 0
    if settings.artifact_root:
        os.makedirs(settings.artifact_root, exist_ok=True)
    print(f"MLflow UI for {settings.mlflow_uri} at http://{host}:{port} (Ctrl-C to stop)", flush=True)
    try:
        return subprocess.call(mlflow_server_command(settings, host, port), env={**os.environ, **SERVER_ENV})
    except KeyboardInterrupt:
        return 0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS's choice for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers 200; raise :class:`IELError` when ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise IELError(f"the server exited with status {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except (urllib.error.URLError, OSError) as e:
            last = str(e)
        time.sleep(0.25)
    raise IELError(f"{url} did not answer within {timeout_s:.0f}s ({last}); is the port free?")


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """SIGTERM the process group started with ``start_new_session=True``; SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout_s)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout_s)
