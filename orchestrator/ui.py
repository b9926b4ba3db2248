"""``iel ui``: the MLflow UI over the study store, bound to 127.0.0.1 unless asked otherwise.

:func:`serve_mlflow` runs ``mlflow server`` in the foreground (the command); :func:`wait_http` and
:func:`stop_process` help scripts and tests that run it in the background.  The server reads the same
tracking store the driver writes (SQLite file or PostgreSQL) and serves the artifacts
(``--artifacts-destination`` is the local ``mlartifacts/`` folder with the embedded defaults).  It refuses
a home without a store, a busy port and an unknown study with a message (exit 2), and its server stops with
it (Ctrl-C or SIGTERM).
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
from collections.abc import Callable
from contextlib import suppress

from ielcore.errors import IELError
from orchestrator.settings import Settings, sqlite_file
from orchestrator.tracking import relocate_artifacts

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


SERVER_START_S = 180.0  # a cold `mlflow server` on a busy machine can take a minute


def port_in_use(host: str, port: int) -> bool:
    """True when nothing can listen on ``host:port`` now (another server holds it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def busy_port_error(host: str, port: int, what: str) -> IELError:
    return IELError(
        f"port {port} on {host} is already in use (another `iel {what}` or another server?), so this {what} "
        f"cannot start and a browser at http://{host}:{port} would show that other server; stop it, or pick "
        "a free port with --port"
    )


def study_experiment(settings: Settings, study: str) -> str:
    """The MLflow experiment id of ``study`` in the store; :class:`IELError` naming the studies otherwise."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(settings.mlflow_uri)
    exp = client.get_experiment_by_name(f"iel/{study}")
    if exp is None:
        names = sorted(
            e.name.removeprefix("iel/") for e in client.search_experiments() if e.name.startswith("iel/")
        )
        raise IELError(
            f"study {study!r} has no MLflow experiment in {settings.mlflow_uri}; studies there: "
            f"{names or 'none'} (run `iel submit` first, or check --home / $IEL_HOME)"
        )
    return str(exp.experiment_id)


def _check_store(settings: Settings) -> None:
    path = sqlite_file(settings.mlflow_uri)
    if path is not None and not path.exists():
        raise IELError(
            f"no MLflow store at {path}: nothing has been tracked under this home yet; run `iel submit "
            "STUDY.yaml` first, or point --home / $IEL_HOME (or --mlflow / $IEL_MLFLOW_URI) at an existing store"
        )


def serve_mlflow(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 5000,
    study: str | None = None,
    announce: Callable[[str], None] = lambda s: print(s, flush=True),
) -> int:
    """Run ``mlflow server`` over the study store until Ctrl-C or SIGTERM (which stop its server too).

    Refuses (:class:`IELError`) a missing store (it would create an empty one), a busy port, and an unknown
    ``study``; with ``study`` the URL printed opens on its experiment."""
    if settings.mlflow_uri.startswith(("http://", "https://")):
        url = settings.mlflow_uri.rstrip("/")
        if study:
            url += f"/#/experiments/{study_experiment(settings, study)}/runs"
        announce(f"the study store is an MLflow server already: open {url} in a browser")
        return 0
    _check_store(settings)
    relocate_artifacts(settings)
    url = f"http://{host}:{port}"
    if study:
        url += f"/#/experiments/{study_experiment(settings, study)}/runs"
    if port_in_use(host, port):
        raise busy_port_error(host, port, "ui")
    proc = subprocess.Popen(
        mlflow_server_command(settings, host, port), env={**os.environ, **SERVER_ENV}, start_new_session=True
    )

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        wait_http(f"http://{host}:{port}/health", SERVER_START_S, proc)
        announce(f"MLflow UI for {settings.mlflow_uri} at {url} (Ctrl-C to stop)")
        code = proc.wait()
        if code != 0:
            raise IELError(f"the MLflow server stopped with status {code}; its messages are above")
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        stop_process(proc)
        signal.signal(signal.SIGTERM, previous)


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
