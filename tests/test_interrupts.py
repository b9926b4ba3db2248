"""Interrupts of a real ``iel submit`` process (real signals through ``os.kill``), on real stores.

* SIGTERM (Slurm, Kubernetes, ``docker stop``) behaves like Ctrl-C: a message, exit status 143, the running
  trials' MLflow runs KILLED with the reason, their Optuna trials FAIL, their rows FAILED (resumable).
* Ctrl-C pressed again and again while the driver closes its records cannot abort the bookkeeping: it prints
  "cleaning up, please wait", exits 130 without a traceback, and leaves nothing RUNNING.
* Ctrl-C at any early moment of a first submit (store creation, Ray start, the first trial) stops it; the
  next submit completes the study with consistent bookkeeping.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import ray
from mlflow.tracking import MlflowClient

from orchestrator import cli
from orchestrator.db import FailureKind, ResultsDB, TrialState
from orchestrator.driver.cluster import CLEANING_UP
from orchestrator.settings import Settings
from tests.studyfiles import noop_study, write_study
from tests.test_faults import assert_exactly_once, optuna_trials, trial_runs, wait_for
from tests.test_faults_cluster import Driver, states
from tests.test_faults_cluster import drivers as drivers_fixture
from tests.test_orchestrator import assert_consistent

drivers = drivers_fixture  # the fixture: `iel submit` processes, killed at teardown

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_local")]


def _study(tmp: Path, name: str, sleep_s: float = 1.0) -> Path:
    doc = noop_study(
        name,
        base={
            "kind": "noop",
            "epochs": 3,
            "noop": {"sleep_s": sleep_s},
            "optimizer": {"type": "adam", "lr": 1e-3},
        },
        factors={"noise.rate": [0.0, 0.2]},
        baseline={"noise.rate": 0.0},
        seeds=1,
        max_concurrent=1,
        retries=1,
    )
    return write_study(tmp, doc)


def _address() -> str:
    return str(ray.get_runtime_context().gcs_address)


def _check_interrupted(home: Path, study: str, signame: str) -> None:
    """After an interrupt: the trial that was running is FAILED (driver_died, resumable) in our table,
    FAIL in Optuna, KILLED in MLflow with the reason; nothing is RUNNING anywhere."""
    settings = Settings.resolve(home=str(home))
    db = ResultsDB(settings.db_url)
    try:
        trials = db.trials(study)
    finally:
        db.close()
    stopped = [t for t in trials if t.state == TrialState.FAILED]
    assert len(stopped) == 1, [(t.id, t.state, t.error) for t in trials]
    assert stopped[0].failure_kind == FailureKind.DRIVER_DIED
    assert "interrupted" in (stopped[0].error or "")
    runs = {r.info.run_id: r for r in trial_runs(settings, study)}
    run = runs[stopped[0].mlflow_run_id]
    assert run.info.status == "KILLED" and "interrupted" in run.data.tags["iel.error"]
    failed = [
        t for t in optuna_trials(settings, study) if t.user_attrs["trial_hash"] == stopped[0].trial_hash
    ]
    assert [t.state.name for t in failed] == ["FAIL"]
    assert_nothing_running(home, study)


def assert_nothing_running(home: Path, study: str) -> None:
    """No row, Optuna trial or MLflow run (trial, cell or study run) of ``study`` is left RUNNING (rows of
    trials that never started stay PENDING: they run at the next submit)."""
    settings = Settings.resolve(home=str(home))
    db = ResultsDB(settings.db_url)
    try:
        assert not db.trials(study, states=[TrialState.RUNNING])
    finally:
        db.close()
    client = MlflowClient(settings.mlflow_uri)
    exp = client.get_experiment_by_name(f"iel/{study}")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=10000)
    assert not [r.data.tags.get("iel.role") for r in runs if r.info.status == "RUNNING"]
    assert not [t.number for t in optuna_trials(settings, study) if t.state.name in ("RUNNING", "WAITING")]


def test_sigterm_is_a_clean_interrupt_with_status_143(tmp_path: Path, iel_home: Path, drivers: list) -> None:
    path = _study(tmp_path, "sigterm")
    driver = Driver(path, iel_home, "--address", _address())
    drivers.append(driver)
    wait_for(
        "a trial to run", lambda: driver.proc.poll() is not None or states(iel_home / "iel.db").get("RUNNING")
    )
    assert driver.proc.poll() is None, driver.output()
    os.kill(driver.proc.pid, signal.SIGTERM)
    code = driver.proc.wait(timeout=120)
    out = driver.output()
    assert code == 143, out
    assert "terminated: running trials were recorded as stopped" in out
    assert "Traceback" not in out and "core dumped" not in out
    _check_interrupted(iel_home, "sigterm", "SIGTERM")

    assert cli.main(["submit", str(path), "--home", str(iel_home)]) == 0  # the resume completes it
    assert_exactly_once(Settings.resolve(home=str(iel_home)), "sigterm", 2)


def test_ctrl_c_during_cleanup_cannot_abort_the_bookkeeping(
    tmp_path: Path, iel_home: Path, drivers: list
) -> None:
    path = _study(tmp_path, "twice")
    driver = Driver(path, iel_home, "--address", _address())
    drivers.append(driver)
    wait_for(
        "a trial to run", lambda: driver.proc.poll() is not None or states(iel_home / "iel.db").get("RUNNING")
    )
    assert driver.proc.poll() is None, driver.output()
    os.kill(driver.proc.pid, signal.SIGINT)
    # Ctrl-C again and again (every 20 ms) until the driver has exited.
    while driver.proc.poll() is None:
        try:
            os.kill(driver.proc.pid, signal.SIGINT)
        except ProcessLookupError:
            break
        time.sleep(0.02)
    code = driver.proc.wait(timeout=120)
    out = driver.output()
    assert code == 130, out
    assert "interrupted: running trials were recorded as stopped" in out
    assert CLEANING_UP in out
    assert "Traceback" not in out and "Exception ignored" not in out, out
    _check_interrupted(iel_home, "twice", "SIGINT")


def _mlflow_ready(home: Path) -> bool:
    path = home / "mlflow.db"
    if not path.exists():
        return False
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return bool(conn.execute("SELECT count(*) FROM experiments").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return False


# Moments of a first submit at which Ctrl-C arrives, seen from outside through the files it writes.
EARLY: dict[str, Callable[[Path], bool]] = {
    "at once": lambda home: True,
    "home created": lambda home: home.exists(),
    "creating a store": lambda home: any(home.glob(".*lock")) if home.exists() else False,
    "results database made": lambda home: (home / "iel.db").exists(),
    "mlflow.db in place": lambda home: (home / "mlflow.db").exists(),
    "experiment created": _mlflow_ready,
    "first trial running": lambda home: bool(states(home / "iel.db").get("RUNNING")),
}


@pytest.mark.parametrize("moment", list(EARLY))
def test_ctrl_c_early_in_a_first_submit_then_submit_completes(
    tmp_path: Path, iel_home: Path, drivers: list, moment: str
) -> None:
    path = _study(tmp_path, "early", sleep_s=0.3)
    driver = Driver(path, iel_home, "--address", _address())
    drivers.append(driver)
    reached = EARLY[moment]
    wait_for(moment, lambda: driver.proc.poll() is not None or reached(iel_home), every=0.005)
    assert driver.proc.poll() is None, f"the driver ended before {moment!r}: {driver.output()}"
    os.kill(driver.proc.pid, signal.SIGINT)
    code = driver.proc.wait(timeout=120)
    out = driver.output()
    # Never swallowed (the study ran on to exit 0); an interrupt during Python's start-up ends the process by
    # SIGINT itself (-2), every later one is the driver's clean exit 130.
    assert code in (130, -signal.SIGINT), out
    if code == 130:
        assert "Traceback" not in out, out
    assert not list(iel_home.glob(".mlflow.db.creating-*")) or code != 130

    assert cli.main(["submit", str(path), "--home", str(iel_home)]) == 0
    settings = Settings.resolve(home=str(iel_home))
    assert_exactly_once(settings, "early", 2)
    assert_consistent(iel_home, "early")
    client = MlflowClient(settings.mlflow_uri)
    exp = client.get_experiment_by_name("iel/early")
    assert exp is not None
    assert "iel.driver" not in exp.tags  # the MLflow side of the lock was released
