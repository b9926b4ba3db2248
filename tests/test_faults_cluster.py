"""Faults of whole processes: the driver SIGKILLed mid-study, a second driver on the same study, and a
worker node removed from a multi-node Ray cluster (several raylets on loopback, ``ray.cluster_utils``).

The drivers under test are real ``python -m orchestrator.cli submit`` processes; every process they or
the cluster start is found through ``/proc`` and killed in teardown, so nothing outlives a test.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from mlflow.tracking import MlflowClient

from orchestrator import cli
from orchestrator.settings import Settings
from tests.studyfiles import noop_study, write_study
from tests.test_faults import (
    DEADLINE_S,
    alive,
    assert_exactly_once,
    descendants,
    kill_all,
    trial_runs,
    trial_workers,
    wait_for,
)
from tests.test_orchestrator import assert_consistent

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def driver_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IEL_", "RAY_ADDRESS", "PYTEST"))}
    env.update(
        PYTHONPATH=str(ROOT),
        RAY_USAGE_STATS_ENABLED="0",
        MLFLOW_ENABLE_ASYNC_LOGGING="false",
        GIT_PYTHON_REFRESH="quiet",
    )
    return env


class Driver:
    """``iel submit`` in its own process (and session), its output in a log file."""

    def __init__(self, study: Path, home: Path, *extra: str) -> None:
        self.log_path = home.parent / f"driver-{study.stem}-{os.getpid()}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "submit", str(study), "--home", str(home), *extra],
            cwd=ROOT,
            env=driver_env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.seen: set[int] = set()

    def track(self) -> set[int]:
        """Remember every process the driver started so far (Ray's processes, its workers)."""
        self.seen |= descendants(self.proc.pid)
        return self.seen

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def cleanup(self) -> None:
        self.track()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=60)
        kill_all({p for p in self.seen if alive(p)})
        self.log.close()


@pytest.fixture
def drivers() -> Iterator[list[Driver]]:
    started: list[Driver] = []
    yield started
    for d in started:
        d.cleanup()


def states(db_path: Path) -> dict[str, int]:
    """Trial states straight from the SQLite file (read-only: never in the driver's way)."""
    if not db_path.exists():
        return {}
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
        try:
            rows = conn.execute("SELECT state, count(*) FROM iel_trials GROUP BY state").fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return {}
    return {state: n for state, n in rows}


def completed_rows(db_path: Path) -> dict[str, tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute(
            "SELECT trial_hash, id, attempts, finished_at, mlflow_run_id FROM iel_trials WHERE state = 'COMPLETE'"
        ).fetchall()
    finally:
        conn.close()
    return {r[0]: tuple(r[1:]) for r in rows}


def _counts(stdout: str) -> dict[str, int]:
    found = re.search(r"trained (\d+), reused (\d+), kept (\d+), failed (\d+)", stdout)
    assert found, stdout
    return dict(zip(("trained", "reused", "kept", "failed"), map(int, found.groups()), strict=True))


@pytest.mark.usefixtures("ray_local")
def test_driver_sigkill_then_resubmit_completes_without_duplicates(
    tmp_path: Path, iel_home: Path, drivers: list[Driver], capsys: pytest.CaptureFixture[str]
) -> None:
    """Faults 3 and 7: while a driver runs, a second `iel submit` of the same study refuses and names it;
    the driver is then SIGKILLed (its Ray processes die with it); `iel submit` again completes the study,
    keeps the finished trials (counted, not trained again), closes what the dead driver left RUNNING in
    MLflow, Optuna and our tables, and nothing is recorded twice."""
    doc = noop_study(
        "drvkill",
        base={
            "kind": "noop",
            "epochs": 3,
            "noop": {"sleep_s": 0.7},
            "optimizer": {"type": "adam", "lr": 1e-3},
        },
        factors={"noise.rate": [0.0, 0.2]},
        baseline={"noise.rate": 0.0},
        seeds=2,
        max_concurrent=2,
    )
    path = write_study(tmp_path, doc)
    db_path = iel_home / "iel.db"
    # The first driver joins the session's local Ray as a client (``--address``): its trial workers are
    # processes of that instance, and Ray ends the actors of a job whose driver died.
    first = Driver(path, iel_home, "--address", ray.get_runtime_context().gcs_address)
    drivers.append(first)
    wait_for(
        "the first driver to finish 2 trials while others run",
        lambda: (
            first.proc.poll() is not None
            or (states(db_path).get("COMPLETE", 0) >= 2 and states(db_path).get("RUNNING", 0) >= 1)
        ),
    )
    assert first.proc.poll() is None, first.output()

    # 7. A second driver on the same study refuses, naming the running one; it starts nothing.
    code = cli.main(["submit", str(path), "--home", str(iel_home)])
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err
    assert f"being driven by {socket.gethostname()}:{first.proc.pid}" in err

    # 3. SIGKILL the driver mid-study; its trial workers go with it (Ray ends a dead job's actors).
    assert trial_workers(os.getpid(), running_only=False)
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(timeout=60)
    wait_for("the dead driver's workers to exit", lambda: not trial_workers(os.getpid(), running_only=False))
    before = completed_rows(db_path)
    left_running = states(db_path).get("RUNNING", 0)
    assert 2 <= len(before) < 4 and left_running >= 1

    code = cli.main(["submit", str(path), "--home", str(iel_home)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    counts = _counts(out)
    assert counts == {"trained": 4 - len(before), "reused": 0, "kept": len(before), "failed": 0}
    after = completed_rows(db_path)
    assert {h: after[h] for h in before} == before  # finished trials untouched: same row, attempt, run

    settings = Settings.resolve(home=str(iel_home))
    assert_exactly_once(settings, "drvkill", 4)
    assert_consistent(iel_home, "drvkill")  # nothing RUNNING in MLflow or Optuna
    killed = [r for r in trial_runs(settings, "drvkill") if r.info.status == "KILLED"]
    assert len(killed) == left_running
    assert all("stopped before the run ended" in r.data.tags["iel.error"] for r in killed)
    client = MlflowClient(settings.mlflow_uri)
    exp = client.get_experiment_by_name("iel/drvkill")
    study_runs = client.search_runs([exp.experiment_id], "tags.`iel.role` = 'study'")
    # One study run per submit: the killed driver's closed as KILLED by the resume, the resume's FINISHED.
    assert sorted(r.info.status for r in study_runs) == ["FINISHED", "KILLED"]


# ------------------------------------------------------------------------------------ multi-node (2)
@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A head node with no CPU (so trials land on worker nodes) and two 1-CPU worker nodes."""
    import ray._common.utils
    import ray._private.utils
    from ray.cluster_utils import Cluster

    # Keep this cluster out of /tmp/ray/ray_current_cluster: other processes on this machine that call
    # ray.init() must not find it.
    monkeypatch.setattr(ray._private.utils, "write_ray_address", lambda *a, **k: None)
    monkeypatch.setattr(ray._common.utils, "reset_ray_address", lambda *a, **k: None)
    mine = descendants(os.getpid())
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        for _ in range(2):
            c.add_node(num_cpus=1)
        c.wait_for_nodes(timeout=DEADLINE_S)
        yield c
    finally:
        started = descendants(os.getpid()) - mine
        c.shutdown()
        kill_all({p for p in started if alive(p)})


def _raylet_pid(node: Any) -> int:
    import ray._private.ray_constants as rc

    return int(node.all_processes[rc.PROCESS_TYPE_RAYLET][0].process.pid)


def test_worker_node_removed_mid_study_moves_its_trials(
    tmp_path: Path, iel_home: Path, cluster: Any, drivers: list[Driver]
) -> None:
    """Fault 2: a node dies (its raylet and workers killed, no graceful exit) while it trains; its trial
    is retried on the remaining node and the study completes with every trial recorded once."""
    doc = noop_study(
        "nodeloss",
        base={
            "kind": "noop",
            "epochs": 3,
            "noop": {"sleep_s": 1.0},
            "optimizer": {"type": "adam", "lr": 1e-3},
        },
        seeds=1,
        max_concurrent=2,
        retries=1,
    )
    path = write_study(tmp_path, doc)
    driver = Driver(path, iel_home, "--address", cluster.address)
    drivers.append(driver)
    nodes = sorted(cluster.worker_nodes, key=_raylet_pid)

    def training_node() -> Any:
        if driver.proc.poll() is not None:
            return "exited"
        return next((n for n in nodes if trial_workers(_raylet_pid(n))), None)

    victim = wait_for("a worker node to train a trial", training_node, every=0.1)
    assert victim != "exited", driver.output()
    cluster.remove_node(victim, allow_graceful=False)
    assert driver.proc.wait(timeout=DEADLINE_S) == 0, driver.output()

    settings = Settings.resolve(home=str(iel_home))
    trials = assert_exactly_once(settings, "nodeloss", 4)
    assert_consistent(iel_home, "nodeloss")
    retried = [t for t in trials if t.attempts == 2]
    assert len(retried) == 1, [(t.id, t.attempts) for t in trials]
    lost = [
        r
        for r in trial_runs(settings, "nodeloss")
        if r.data.tags["iel.trial_id"] == str(retried[0].id) and r.data.tags["iel.attempt"] == "1"
    ]
    assert [r.info.status for r in lost] == ["FAILED"]
    assert lost[0].data.tags["iel.error"].startswith("[worker_died]")
    assert "trained 4, reused 0, kept 0, failed 0" in driver.output()
