"""The topology of ``docker/docker-compose.yml`` without Docker: real services on loopback.

``test_study_runs_through_a_ray_cluster_postgres_and_an_mlflow_server`` (slow) starts what the compose file
starts, through the same ``docker/entrypoint.sh`` roles: a Ray head and a Ray worker node (``ray start
--block``, token authentication on, their own ``--temp-dir``), an MLflow server over PostgreSQL (its database
created by the entrypoint) that serves artifacts, and a PostgreSQL results database (``postgres_server``
fixture).  Then ``python -m orchestrator.cli submit --address --db --mlflow`` runs a study of one no-op trial
and one tiny real trial, and the test checks the trials in PostgreSQL, the runs in MLflow (through its HTTP
API) and the artifacts the workers uploaded through the server.  Every process it starts carries a marker in
its environment; teardown kills exactly those (never ``ray stop``, which would stop other local clusters).

The fast tests cover what only shows with remote stores: settings for a database-backed MLflow store, and a
tracking server that is down or rejects the host name (found in seconds, with the fix in the message).
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from orchestrator.settings import Settings, is_direct_store
from orchestrator.tracking import Tracker, TrackingUnavailable
from tests.postgres import PostgresServer, free_port

ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
BIN = Path(sys.executable).parent  # ray, mlflow and iel of this environment
MARKER = "IEL_TEST_CLUSTER_ID"
STARTUP_S = 120.0
SUBMIT_S = 150.0


# ------------------------------------------------------------------------------------- fast: settings
def test_settings_for_remote_and_database_backed_stores(tmp_path: Path) -> None:
    home = str(tmp_path / "h")
    server = Settings.resolve(home=home, mlflow="http://mlflow:5000", db="postgresql://u:p@db:5432/iel")
    assert (server.mlflow_uri, server.artifact_root) == ("http://mlflow:5000", None)
    assert server.db_url == "postgresql+psycopg://u:p@db:5432/iel"
    # An MLflow store opened directly in PostgreSQL: the psycopg 3 driver we ship, and artifacts under the
    # home folder (before: ./mlruns of whichever process created the experiment).
    direct = Settings.resolve(home=home, mlflow="postgresql://u:p@db:5432/mlflow")
    assert direct.mlflow_uri == "postgresql+psycopg://u:p@db:5432/mlflow"
    assert direct.artifact_root == str(tmp_path / "h" / "mlartifacts")
    local = Settings.resolve(home=home)
    assert local.mlflow_uri.startswith("sqlite:///") and local.artifact_root == direct.artifact_root
    for uri in ("sqlite:///x.db", "file:///tmp/mlruns", "/tmp/mlruns", "mlruns", "mysql+pymysql://u@h/db"):
        assert is_direct_store(uri), uri
    for uri in ("http://h:5000", "https://mlflow.example.org", "databricks", "databricks://profile"):
        assert not is_direct_store(uri), uri


# ------------------------------------------------------------------------------- fast: tracking server
def test_an_unreachable_tracking_server_fails_fast() -> None:
    port = free_port()  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(TrackingUnavailable, match=rf"no MLflow server answers at 'http://127.0.0.1:{port}'"):
        Tracker(f"http://127.0.0.1:{port}")
    # MLflow's own client retries a refused connection for about four minutes before giving up.
    assert time.monotonic() - t0 < 15


@pytest.fixture
def host_checking_server() -> Iterator[str]:
    """A stand-in for an MLflow >= 3.5 server that does not allow the client's host name."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            healthy = self.path == "/health"
            body = b"OK" if healthy else b"Invalid Host header - possible DNS rebinding attack detected"
            self.send_response(200 if healthy else 403)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_rejected_host_name_is_explained(host_checking_server: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(TrackingUnavailable) as info:
        Tracker(host_checking_server)
    assert "--allowed-hosts" in str(info.value) and host_checking_server.split("//")[1] in str(info.value)
    assert time.monotonic() - t0 < 15  # a 403 is not retried


# -------------------------------------------------------------------------------- processes we start
def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _carries(pid: int, marker: str) -> bool:
    try:
        return f"{MARKER}={marker}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def _marked_pids(marker: str) -> set[int]:
    """Processes whose environment carries our marker: the ones we started and everything they started
    (Ray's GCS, raylets, agents and workers inherit it), also those re-parented to init."""
    pids = {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()}
    return {pid for pid in pids if pid != os.getpid() and _carries(pid, marker)}


class Cluster:
    """The processes of one topology: started through the entrypoint, logged to files, torn down by pid."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.extra: dict[str, dict[str, str]] = {}  # each process's own variables (a container's env)

    def start(self, name: str, *args: str, **extra_env: str) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        self.extra[name] = {"IEL_ROLE_FILE": str(self.workdir / f"{name}.role"), **extra_env}
        env = {**self.env, **self.extra[name]}
        proc = subprocess.Popen(
            ["bash", str(ENTRYPOINT), *args],
            env=env,
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str, tail: int = 3000) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"--- {name}.log ---\n{self.log(name)}" for name in self.procs)

    def wait(self, what: str, ready: Callable[[], bool], timeout_s: float = STARTUP_S) -> None:
        """Poll ``ready`` until it holds; fail at once when a process died, or when time runs out."""
        deadline = time.monotonic() + timeout_s
        while not ready():
            dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
            if dead:
                pytest.fail(f"waiting for {what}: exited {dead}\n{self.logs()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{what} not ready within {timeout_s:.0f}s\n{self.logs()}")
            time.sleep(0.25)

    def healthchecks(self, timeout_s: float = 90) -> dict[str, tuple[int, str]]:
        """``entrypoint.sh healthcheck`` in each process's environment, as ``docker exec`` in its container
        would run it (all at once); name -> (exit status, stderr)."""
        checks = {
            name: subprocess.Popen(
                ["bash", str(ENTRYPOINT), "healthcheck"],
                env={**self.env, **self.extra[name]},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name in self.procs
        }
        return {name: (p.wait(timeout=timeout_s), p.stderr.read()[-2000:]) for name, p in checks.items()}  # type: ignore[union-attr]

    def stop(self) -> None:
        """SIGTERM each root (``ray start --block`` stops its node), then SIGKILL every marked process left."""
        marker = self.env[MARKER]
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for _ in range(3):
            left = _marked_pids(marker)
            if not left:
                return
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _http_status(port: int, path: str, host: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        return conn.getresponse().status
    finally:
        conn.close()


def _compose_mlflow_args(destination: Path) -> list[str]:
    """The MLflow server flags of docker-compose.yml (defaults), with a local artifact folder, 1 worker."""
    from tests.test_docker_files import SECRETS, interpolate

    compose = interpolate(yaml.safe_load((ROOT / "docker" / "docker-compose.yml").read_text()), SECRETS)
    args = list(compose["services"]["mlflow"]["command"])
    assert args[0] == "mlflow"
    args = args[1:]
    args[args.index("--artifacts-destination") + 1] = str(destination)
    args[args.index("--workers") + 1] = "1"
    return args


STUDY = {
    "version": 1,
    "name": "topology",
    "description": "one no-op and one tiny real trial through a Ray cluster, PostgreSQL and an MLflow server",
    "base": {
        "device": "cpu",
        "epochs": 1,
        "batch_size": 4,
        "data": {"type": "cells", "num_images": 8, "size": 32, "val_fraction": 0.25},
        "noise": {"type": "none", "rate": 0.0},
        "model": {"type": "unet", "width": 4, "depth": 2},
        "iel": {"type": "none"},
        "optimizer": {"type": "adam", "lr": 3.0e-3},
        "artifacts": {"checkpoint": True, "prediction_grid": True},
    },
    "factors": {"kind": ["noop", "train"]},
    "baseline": {"kind": "noop"},
    "seeds": 1,
    "max_concurrent": 2,
    "retries": 0,
}


# ------------------------------------------------------------------------------------ slow: topology
@pytest.mark.slow
@pytest.mark.postgres
def test_study_runs_through_a_ray_cluster_postgres_and_an_mlflow_server(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    results_url = postgres_server.create_database()
    mlflow_db = f"iel_mlflow_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    postgres_server.created.append(mlflow_db)  # dropped with the server's other databases
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "IEL_", "MLFLOW_TRACKING"))}
    env |= {"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}
    env |= {"RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}

    phases: dict[str, float] = {}
    clock = [time.monotonic()]

    def phase(name: str) -> None:
        now = time.monotonic()
        phases[name], clock[0] = now - clock[0], now

    # Ray's token authentication, as on a real cluster: a generated token, presented by every process.
    made = subprocess.run(
        [str(BIN / "ray"), "get-auth-token", "--generate"],
        env={**env, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    token = made.stdout.strip()
    assert made.returncode == 0 and re.fullmatch(r"[0-9a-f]{64}", token), made.stderr
    env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, MARKER: uuid.uuid4().hex}
    phase("token")

    gcs, client, mlflow_port = free_port(), free_port(), free_port()
    node = {
        "IEL_RAY_NODE_IP": "127.0.0.1",
        "IEL_RAY_NUM_CPUS": "1",
        "IEL_RAY_OBJECT_STORE_BYTES": str(200 * 1024**2),
    }
    # A short temp dir: Ray's socket paths under it must stay below the 107-character limit.
    ray_tmp = Path(tempfile.mkdtemp(prefix="ielray-"))
    node["IEL_RAY_TEMP_DIR"] = str(ray_tmp)
    cluster = Cluster(tmp_path, env)
    try:
        cluster.start(
            "head",
            "head",
            f"--dashboard-agent-listen-port={free_port()}",
            IEL_RAY_PORT=str(gcs),
            IEL_RAY_CLIENT_PORT=str(client),
            IEL_RAY_DASHBOARD="false",
            **node,
        )
        cluster.start(
            "mlflow",
            "mlflow",
            *_compose_mlflow_args(tmp_path / "mlartifacts"),
            MLFLOW_BACKEND_STORE_URI=postgres_server.url(mlflow_db),
            IEL_MLFLOW_HOST="127.0.0.1",
            IEL_MLFLOW_PORT=str(mlflow_port),
        )
        cluster.wait("the Ray head", lambda: "Ray runtime started" in cluster.log("head", 100_000))
        cluster.start(
            "worker",
            "worker",
            f"--dashboard-agent-listen-port={free_port()}",
            IEL_RAY_HEAD=f"127.0.0.1:{gcs}",
            **node,
        )
        cluster.wait("the Ray worker node", lambda: "Ray runtime started" in cluster.log("worker", 100_000))
        cluster.wait(
            "the MLflow server",
            lambda: _listening(mlflow_port) and _http_status(mlflow_port, "/health", "127.0.0.1") == 200,
        )
        phase("services up")

        # The containers' health checks, as Docker would run them.
        checks = cluster.healthchecks()
        assert all(status == 0 for status, _ in checks.values()), checks
        # The allowed host names of the compose file: workers say "mlflow:5000"; others get 403.
        search = "/api/2.0/mlflow/experiments/search?max_results=1"
        assert _http_status(mlflow_port, search, "mlflow:5000") == 200
        assert _http_status(mlflow_port, search, "attacker.example:5000") == 403
        phase("health checks")

        # The driver, as `iel submit --address` from a machine of the cluster.
        work = tmp_path / "driver"
        work.mkdir()
        study = work / "topology.yaml"
        study.write_text(yaml.safe_dump(STUDY, sort_keys=False))
        mlflow_uri = f"http://127.0.0.1:{mlflow_port}"
        submitted = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "submit", str(study), "--address", f"127.0.0.1:{gcs}",
             "--db", results_url, "--mlflow", mlflow_uri],
            env={**cluster.env, "IEL_HOME": str(work / "home")},
            cwd=work,
            capture_output=True,
            text=True,
            timeout=SUBMIT_S,
        )  # fmt: skip
        phase("submit")
        output = submitted.stdout[-4000:] + submitted.stderr[-4000:]
        assert submitted.returncode == 0, f"{output}\n{cluster.logs()}"
        assert "trained 2, reused 0, kept 0, failed 0" in submitted.stdout, output
        # Nothing fell back to a local store of the driver.
        assert not (work / "mlruns").exists() and not (work / "home" / "mlartifacts").exists()

        # Trials COMPLETE in PostgreSQL, with the artifact URIs the workers reported.
        from orchestrator.db import ResultsDB, TrialState

        trials = {t.config["kind"]: t for t in ResultsDB(results_url).trials("topology")}
        assert set(trials) == {"noop", "train"}
        assert all(t.state == TrialState.COMPLETE and t.mlflow_run_id for t in trials.values())
        engine = sa.create_engine(results_url)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT name, uri FROM iel_artifacts WHERE trial_id = :t"), {"t": trials["train"].id}
            ).all()
        engine.dispose()
        artifacts = dict(rows)
        assert {"config.json", "checkpoint.pt", "result.json"} <= set(artifacts), artifacts
        run_id = trials["train"].mlflow_run_id
        assert all(uri.startswith("mlflow-artifacts:/") and run_id in uri for uri in artifacts.values())

        # Runs FINISHED in MLflow, read back through the server's HTTP API.
        client = MlflowClient(mlflow_uri)
        exp = client.get_experiment_by_name("iel/topology")
        runs = client.search_runs([exp.experiment_id], max_results=100)
        assert runs and all(r.info.status == "FINISHED" for r in runs), [r.info.status for r in runs]
        by_id = {r.info.run_id: r for r in runs}
        for t in trials.values():
            run = by_id[t.mlflow_run_id]
            assert run.data.tags["iel.trial_hash"] == t.trial_hash
            assert run.data.metrics["dice"] == pytest.approx(t.final_metrics["dice"])
        listed = {a.path for a in client.list_artifacts(run_id)}
        assert {"config.json", "checkpoint.pt", "result.json", "predictions.png"} <= listed
        local = client.download_artifacts(run_id, "config.json", str(tmp_path / "download"))
        assert json.loads(Path(local).read_text())["model"]["width"] == 4
        # The bytes went through the server to its --artifacts-destination.
        stored = tmp_path / "mlartifacts" / exp.experiment_id / run_id / "artifacts" / "checkpoint.pt"
        assert stored.is_file() and stored.stat().st_size > 0
        study_runs = [r for r in runs if r.data.tags.get("iel.role") == "study"]
        assert {"results.csv", "results.md"} <= {
            a.path for a in client.list_artifacts(study_runs[0].info.run_id)
        }
        phase("checks")
    finally:
        cluster.stop()
        phase("teardown")
        print("\ntopology phases: " + ", ".join(f"{k} {v:.1f}s" for k, v in phases.items()))
        left = _marked_pids(env[MARKER])
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert not left, f"processes of the test cluster survived teardown: {sorted(left)}"
