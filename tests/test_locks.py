"""The study's driver lock: a zombie owner is dead, and the lock covers the MLflow store too (a second
driver on another ``--db`` but the same MLflow store refuses instead of closing the first one's runs)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from mlflow.tracking import MlflowClient

from orchestrator import cli
from orchestrator.db import DriverLocked, ResultsDB
from orchestrator.driver.cluster import owner_is_dead
from orchestrator.driver.stores import LOCK_TAG, Stores
from orchestrator.settings import Settings, sqlite_url
from orchestrator.tracking import Tracker
from tests.studyfiles import noop_study, write_study
from tests.test_faults import alive, assert_exactly_once, trial_runs, wait_for
from tests.test_faults_cluster import Driver, states
from tests.test_faults_cluster import drivers as drivers_fixture
from tests.test_orchestrator import assert_consistent

drivers = drivers_fixture  # the fixture: `iel submit` processes, killed at teardown


@pytest.fixture
def zombie() -> Iterator[int]:
    """A child process that has exited and that its parent (this test) has not reaped yet."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_for(
        "the child to become a zombie", lambda: not alive(proc.pid) and os.path.exists(f"/proc/{proc.pid}")
    )
    with open(f"/proc/{proc.pid}/stat") as f:
        assert f.read().rsplit(")", 1)[1].split()[0] == "Z"
    yield proc.pid
    proc.wait()


@pytest.fixture
def live() -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_a_zombie_lock_owner_is_dead_a_live_one_is_not(zombie: int, live: int) -> None:
    host = socket.gethostname()
    assert owner_is_dead(f"{host}:{zombie}")
    assert not owner_is_dead(f"{host}:{live}")
    assert not owner_is_dead(f"{host}:{os.getpid()}")
    assert not owner_is_dead(f"another-host:{zombie}")  # a process elsewhere cannot be checked


def test_the_lock_of_a_zombie_driver_is_taken_over_at_once(iel_home: Path, zombie: int, live: int) -> None:
    settings = Settings.resolve(home=str(iel_home))
    settings.ensure_home()
    db = ResultsDB(settings.db_url)
    host = socket.gethostname()
    try:
        db.acquire_driver_lock("z", f"{host}:{live}")
        with pytest.raises(DriverLocked, match=f"{host}:{live}"):
            Stores.open(settings, "z", f"{host}:{os.getpid()}")
        db.release_driver_lock("z", f"{host}:{live}")
        db.acquire_driver_lock("z", f"{host}:{zombie}")  # fresh heartbeat, but its owner is a zombie
    finally:
        db.close()
    stores = Stores.open(settings, "z", f"{host}:{os.getpid()}")
    stores.close()


def _tag(settings: Settings, study: str) -> str | None:
    exp = MlflowClient(settings.mlflow_uri).get_experiment_by_name(f"iel/{study}")
    return None if exp is None else exp.tags.get(LOCK_TAG)


def test_mlflow_lock_tag_names_a_live_owner_on_another_database(
    tmp_path: Path, iel_home: Path, live: int
) -> None:
    """The experiment tag (what an MLflow server relies on): a fresh one of a live driver refuses, one whose
    driver is dead (or whose heartbeat is old) is taken over."""
    first = Settings.resolve(home=str(iel_home))
    other = Settings.resolve(home=str(iel_home), db=sqlite_url(tmp_path / "other.db"))
    first.ensure_home()
    tracker = Tracker(first.mlflow_uri, first.artifact_root)
    exp_id = tracker.experiment("m")
    host = socket.gethostname()
    tracker.client.set_experiment_tag(
        exp_id, LOCK_TAG, json.dumps({"owner": f"{host}:{live}", "heartbeat": time.time(), "db": "elsewhere"})
    )
    refused = Stores.open(other, "m", f"{host}:{os.getpid()}")
    with pytest.raises(DriverLocked, match=f"{host}:{live} \\(results database elsewhere\\)"):
        refused.lock_mlflow()
    refused.close()
    tracker.client.set_experiment_tag(
        exp_id, LOCK_TAG, json.dumps({"owner": f"{host}:{live}", "heartbeat": time.time() - 3600, "db": "x"})
    )
    stores = Stores.open(other, "m", f"{host}:{os.getpid()}")
    stores.lock_mlflow()
    assert json.loads(_tag(first, "m") or "{}")["owner"] == f"{host}:{os.getpid()}"
    stores.close()
    assert _tag(first, "m") is None


@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
def test_second_driver_on_another_db_same_mlflow_refuses(
    tmp_path: Path, iel_home: Path, drivers: list, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = noop_study(
        "shared",
        base={
            "kind": "noop",
            "epochs": 3,
            "noop": {"sleep_s": 0.7},
            "optimizer": {"type": "adam", "lr": 1e-3},
        },
        factors={"noise.rate": [0.0, 0.2]},
        baseline={"noise.rate": 0.0},
        seeds=1,
        max_concurrent=1,
    )
    path = write_study(tmp_path, doc)
    settings = Settings.resolve(home=str(iel_home))
    first = Driver(path, iel_home, "--address", str(ray.get_runtime_context().gcs_address))
    drivers.append(first)
    wait_for(
        "a trial to run", lambda: first.proc.poll() is not None or states(iel_home / "iel.db").get("RUNNING")
    )
    assert first.proc.poll() is None, first.output()

    other_db = sqlite_url(tmp_path / "other" / "iel.db")
    (tmp_path / "other").mkdir()
    code = cli.main(
        ["submit", str(path), "--home", str(iel_home), "--db", other_db, "--mlflow", settings.mlflow_uri]
    )
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err, out + err
    assert f"{socket.gethostname()}:{first.proc.pid}" in err and "MLflow store" in err, err
    assert not [
        r for r in trial_runs(settings, "shared") if r.info.status == "KILLED"
    ]  # none closed as stale

    assert first.proc.wait(timeout=300) == 0, first.output()
    assert_exactly_once(settings, "shared", 2)  # one run per trial: nothing ran twice
    assert_consistent(iel_home, "shared")
    assert _tag(settings, "shared") is None
