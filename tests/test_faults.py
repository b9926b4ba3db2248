"""Faults survived, on real components (local Ray, MLflow SQLite store, Optuna RDB storage, SQLite/PostgreSQL).

Each test ends with the same bookkeeping: every planned trial has exactly one record in our tables, one
Optuna trial in the final state and one MLflow run in the matching final state (``assert_consistent``);
nothing is left RUNNING.  The multi-node and driver-kill tests are in ``tests/test_faults_cluster.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import ray
from mlflow.tracking import MlflowClient

from ielcore.spec import TrialConfig
from orchestrator import cli
from orchestrator.db import DriverLocked, FailureKind, ResultsDB, TrialState
from orchestrator.driver import StudyRunner
from orchestrator.driver import loop as loop_mod
from orchestrator.driver.stores import Stores
from orchestrator.settings import Settings
from orchestrator.study import load_study
from tests.studyfiles import noop_study, write_study
from tests.test_orchestrator import assert_consistent
from workers.pool import WorkerPool, WorkerResources
from workers.protocol import TrialTask

ROOT = Path(__file__).resolve().parent.parent
DEADLINE_S = 240.0  # generous bound for every wait: the machine is shared


# ------------------------------------------------------------------------------------ process helpers
def _ppid_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(root: int) -> set[int]:
    """Every live process below ``root`` (children, grandchildren, ...)."""
    children, out, stack = _ppid_map(), set(), [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in out:
                out.add(child)
                stack.append(child)
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def trial_workers(root: int, running_only: bool = True) -> list[int]:
    """Ray actor processes of TrialWorker below ``root`` (``ray::TrialWorker.run`` while training)."""
    tag = "ray::TrialWorker.run" if running_only else "ray::TrialWorker"
    return sorted(p for p in descendants(root) if cmdline(p).startswith(tag))


def wait_for(
    what: str, predicate: Callable[[], Any], deadline_s: float = DEADLINE_S, every: float = 0.2
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``deadline_s``."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {deadline_s:.0f} s waiting for {what}")


def kill_all(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------------------------ store helpers
def run_study(path: Path, home: Path, **kwargs: Any) -> tuple[StudyRunner, Any]:
    runner = StudyRunner(load_study(path), Settings.resolve(home=str(home)), **kwargs)
    return runner, runner.run()


def trial_runs(settings: Settings, study: str) -> list[Any]:
    client = MlflowClient(settings.mlflow_uri)
    exp = client.get_experiment_by_name(f"iel/{study}")
    assert exp is not None, f"no MLflow experiment for study {study}"
    return client.search_runs([exp.experiment_id], "tags.`iel.role` = 'trial'", max_results=10000)


def optuna_trials(settings: Settings, study: str) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.RDBStorage(settings.db_url)
    out: list[optuna.trial.FrozenTrial] = []
    for summary in optuna.get_all_study_summaries(storage):
        if summary.study_name.startswith(f"{study}::"):
            out += optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(
                deepcopy=False
            )
    return out


def assert_exactly_once(settings: Settings, study: str, n_planned: int) -> list[Any]:
    """Each planned trial: one COMPLETE row, one COMPLETE Optuna trial, one FINISHED MLflow run."""
    db = ResultsDB(settings.db_url)
    try:
        trials = db.trials(study)
    finally:
        db.close()
    hashes = [t.trial_hash for t in trials]
    assert len(trials) == n_planned and len(set(hashes)) == n_planned, "duplicate or missing trial rows"
    assert all(t.state == TrialState.COMPLETE for t in trials), [(t.id, t.state, t.error) for t in trials]
    finished = Counter(
        r.data.tags["iel.trial_hash"] for r in trial_runs(settings, study) if r.info.status == "FINISHED"
    )
    assert finished == Counter(hashes), "each trial must have exactly one FINISHED MLflow run"
    complete = Counter(
        t.user_attrs["trial_hash"]
        for t in optuna_trials(settings, study)
        if t.state == optuna.trial.TrialState.COMPLETE
    )
    assert complete == Counter(hashes), "each trial must have exactly one COMPLETE Optuna trial"
    return trials


# ------------------------------------------------------------------------------------------ tests
@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
def test_worker_sigkill_mid_trial_is_retried_and_recorded_once(tmp_path: Path, iel_home: Path) -> None:
    """Fault 1: SIGKILL the worker process while it trains; the attempt is FAILED in MLflow with its
    reason, the trial runs again on a fresh worker, and ends with exactly one COMPLETE record everywhere."""
    doc = noop_study(
        "sigkill",
        base={
            "kind": "noop",
            "epochs": 4,
            "noop": {"sleep_s": 1.0},
            "optimizer": {"type": "adam", "lr": 1e-3},
        },
        factors={"noise.rate": [0.0, 0.2]},
        baseline={"noise.rate": 0.0},
        seeds=1,
        max_concurrent=1,
        retries=1,
    )
    killed: list[int] = []

    def killer() -> None:
        pids = wait_for("a worker in the middle of a trial", lambda: trial_workers(os.getpid()))
        os.kill(pids[0], signal.SIGKILL)
        killed.append(pids[0])

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    runner, outcome = run_study(write_study(tmp_path, doc), iel_home)
    thread.join(timeout=5)
    assert killed, "the worker was never seen training"
    assert not alive(killed[0])
    assert (outcome.trained, outcome.failed, runner.progress.retried) == (2, 0, 1)

    settings = Settings.resolve(home=str(iel_home))
    trials = assert_exactly_once(settings, "sigkill", 2)
    assert_consistent(iel_home, "sigkill")
    retried = [t for t in trials if t.attempts == 2]
    assert len(retried) == 1 and all(t.attempts == 1 for t in trials if t not in retried)
    runs = [r for r in trial_runs(settings, "sigkill") if r.data.tags["iel.trial_id"] == str(retried[0].id)]
    by_attempt = {r.data.tags["iel.attempt"]: r for r in runs}
    assert set(by_attempt) == {"1", "2"}
    dead = by_attempt["1"]
    assert dead.info.status == "FAILED"
    assert dead.data.tags["iel.error"].startswith("[worker_died] the worker was lost")
    assert by_attempt["2"].info.status == "FINISHED"
    assert retried[0].mlflow_run_id == by_attempt["2"].info.run_id


OOM_WIDTH = 200_000  # one 3x3 conv of width x width: 1.44e12 bytes, refused by the allocator at once
TINY_TRAIN = {"batch_size": 4, "data": {"type": "cells", "num_images": 8, "size": 16}}


@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
def test_diverged_timed_out_and_oom_trials_are_recorded_and_the_study_goes_on(
    tmp_path: Path, iel_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faults 4 and 5 in one study: a NaN loss is 'diverged' with its epoch (not retried); a trial past
    timeout_s is stopped at its next report ('timeout', its epochs kept), and one that ignores its
    deadline has its worker killed (also 'timeout'); a real allocation failure (a model far larger than
    the machine) is 'oom' with the allocator's message and the fix, retried on a fresh worker.  The
    normal trial completes.  max_concurrent 3 on a 2-CPU Ray: the worker that cannot be placed never gets
    a trial, so the study does not wait forever for it (it used to)."""
    monkeypatch.setattr(loop_mod, "HARD_TIMEOUT_GRACE_S", 6.0)  # hard stop at 1.5 * 2 s + 6 s
    # The plan refuses models over its memory limit; this one must reach a worker to fail there for real.
    monkeypatch.setattr("ielcore.limits.MAX_MODEL_BYTES", 2**62)
    doc = noop_study(
        "faults",
        base={"kind": "noop", "epochs": 20, "model": {"type": "unet", "width": 8, "depth": 1}, **TINY_TRAIN},
        zip=[
            {
                "kind": ["noop", "noop", "noop", "noop", "train"],
                "noop.diverge_at_epoch": [None, 2, None, None, None],
                "noop.sleep_s": [0.0, 0.0, 0.25, 30.0, 0.0],
                "model.width": [8, 8, 8, 8, OOM_WIDTH],
            }
        ],
        seeds=1,
        timeout_s=2,
        retries=1,
        max_concurrent=3,
    )
    del doc["factors"], doc["baseline"]
    _, outcome = run_study(write_study(tmp_path, doc), iel_home)
    trials = assert_consistent(iel_home, "faults")
    assert (outcome.trained, outcome.failed) == (1, 4), [(t.cell_key, t.state, t.error) for t in trials]
    by_cell = {
        (t.config["kind"], t.config["noop"]["diverge_at_epoch"], t.config["noop"]["sleep_s"]): t
        for t in trials
    }

    assert by_cell[("noop", None, 0.0)].state == TrialState.COMPLETE
    diverged = by_cell[("noop", 2, 0.0)]
    assert (diverged.state, diverged.failure_kind, diverged.failed_epoch, diverged.attempts) == (
        TrialState.FAILED,
        "diverged",
        2,
        1,
    )
    assert "non-finite" in (diverged.error or "")

    soft = by_cell[("noop", None, 0.25)]
    assert (soft.state, soft.failure_kind, soft.attempts) == (TrialState.FAILED, "timeout", 1)
    assert 1 <= (soft.failed_epoch or 0) < 20 and "timeout_s" in (soft.error or "")
    db = ResultsDB(Settings.resolve(home=str(iel_home)).db_url)
    epochs = sorted({e for e, _, _ in db.epoch_metrics(soft.id)})
    db.close()
    assert epochs == list(range(1, soft.failed_epoch + 1))  # what ran before the stop is kept

    hard = by_cell[("noop", None, 30.0)]
    assert (hard.state, hard.failure_kind, hard.attempts) == (TrialState.FAILED, "timeout", 1)
    assert "worker was killed" in (hard.error or "")
    assert hard.duration_s is not None and hard.duration_s < 30  # stopped long before its first epoch ended

    oom = by_cell[("train", None, 0.0)]
    assert (oom.state, oom.failure_kind, oom.attempts) == (TrialState.FAILED, "oom", 2)
    for part in ("out of memory on cpu", "can't allocate memory", "lower batch_size"):
        assert part in (oom.error or ""), oom.error

    runs = {r.info.run_id: r for r in trial_runs(Settings.resolve(home=str(iel_home)), "faults")}
    assert runs[hard.mlflow_run_id].data.tags["iel.error"].startswith("[timeout]")
    assert runs[diverged.mlflow_run_id].data.tags["iel.error"].startswith("[diverged]")
    assert runs[oom.mlflow_run_id].data.tags["iel.error"].startswith("[oom] out of memory")


@pytest.mark.usefixtures("ray_local")
def test_worker_is_replaced_after_out_of_memory() -> None:
    """Fault 5: the worker that hit the OOM asks to be replaced; the pool kills it and starts a new one."""
    pool = WorkerPool(1, WorkerResources(cpus=1))
    try:
        pool.grow(1)
        worker = wait_for("a worker to start", lambda: pool.acquire() or pool.wait_started(1.0))
        before = ray.get(worker.ping.remote())["pid"]
        cfg = TrialConfig.from_dict(
            {"epochs": 1, "model": {"type": "unet", "width": OOM_WIDTH, "depth": 1}, **TINY_TRAIN}
        )
        task = TrialTask(trial_id=1, attempt=1, config=cfg.to_dict())
        outcome = ray.get(worker.run.remote(task), timeout=DEADLINE_S)
        assert (outcome.state, outcome.failure_kind, outcome.replace_worker) == (
            TrialState.FAILED,
            FailureKind.OOM,
            True,
        )
        pool.discard(worker)
        wait_for("the OOM worker process to exit", lambda: not alive(before))
        pool.grow(1)
        fresh = wait_for("a replacement worker", lambda: pool.acquire() or pool.wait_started(1.0))
        after = ray.get(fresh.ping.remote())["pid"]
        assert after != before and alive(after)
        noop = TrialConfig.from_dict({"kind": "noop", "epochs": 1}).to_dict()
        ok = ray.get(fresh.run.remote(dataclasses.replace(task, config=noop)))
        assert ok.state == TrialState.COMPLETE
    finally:
        pool.shutdown()


# ------------------------------------------------------------------------------- database faults (6)
def _no_stores_written(home: Path) -> None:
    for name in ("iel.db", "mlflow.db", "mlartifacts"):
        assert not (home / name).exists(), f"{name} was created although the database is unreachable"


def _submit(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_bad_database_url_is_a_clear_error_before_anything_starts(
    tmp_path: Path, iel_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_study(tmp_path, noop_study("badurl"))
    code, out, err = _submit(["submit", str(path), "--db", "nosuchdb://user:SECRETPW@host/db"], capsys)
    assert code == 2 and "Traceback" not in err and "SECRETPW" not in out + err
    assert "not a usable database URL" in err and "--db" in err
    assert "trained" not in out  # no trial ran
    _no_stores_written(iel_home)


@pytest.mark.postgres
def test_database_server_down_at_start_is_a_clear_error(
    tmp_path: Path, iel_home: Path, postgres_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fault 6: nothing listens at the URL (a free port), then a real server that is stopped."""
    from tests.postgres import free_port

    path = write_study(tmp_path, noop_study("pgdown"))
    url = f"postgresql://iel:SECRETPW@127.0.0.1:{free_port()}/iel"
    code, out, err = _submit(["submit", str(path), "--db", url], capsys)
    assert code == 2 and "Traceback" not in err and "SECRETPW" not in out + err
    assert "connection refused" in err and "start the database server" in err
    _no_stores_written(iel_home)
    if not postgres_server.can_restart:
        pytest.skip("an external PostgreSQL server cannot be stopped by the tests")
    db_url = postgres_server.create_database()
    postgres_server.stop()
    try:
        code, out, err = _submit(["submit", str(path), "--db", db_url], capsys)
    finally:
        postgres_server.start()
    assert code == 2 and "Traceback" not in err and postgres_server.password not in out + err
    assert "Cannot use the results database" in err and "connection refused" in err
    _no_stores_written(iel_home)


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
def test_postgres_restart_mid_study_loses_nothing(
    tmp_path: Path,
    iel_home: Path,
    postgres_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Fault 6: the server goes down while trials run and comes back; the driver's writes are retried
    with backoff (seen in its log before the server is started again) and every trial is recorded."""
    if not postgres_server.can_restart:
        pytest.skip("an external PostgreSQL server cannot be restarted by the tests")
    import logging

    import psycopg

    caplog.set_level(logging.WARNING, logger="orchestrator.db")
    db_url = postgres_server.create_database()
    monkeypatch.setenv("IEL_DB_URL", db_url)
    settings = Settings.resolve(home=str(iel_home))
    doc = noop_study(
        "pgrestart",
        base={
            "kind": "noop",
            "epochs": 3,
            "noop": {"sleep_s": 1.0},
            "optimizer": {"type": "adam", "lr": 1e-3},
        },
        seeds=1,
    )
    restarted: list[bool] = []
    errors: list[BaseException] = []

    def completed() -> int:
        try:
            with psycopg.connect(db_url.replace("+psycopg", ""), connect_timeout=5) as conn:
                row = conn.execute("SELECT count(*) FROM iel_trials WHERE state = 'COMPLETE'").fetchone()
                return int(row[0]) if row else 0
        except psycopg.Error:
            return 0

    def restarter() -> None:
        try:
            wait_for("a first COMPLETE trial", completed, every=0.3)
            postgres_server.stop()
            try:
                wait_for(
                    "the driver to retry a write",
                    lambda: any("retry" in r.getMessage() for r in caplog.records),
                    deadline_s=12,
                    every=0.1,
                )
            finally:
                postgres_server.start()
            restarted.append(True)
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    thread = threading.Thread(target=restarter, daemon=True)
    thread.start()
    try:
        _, outcome = run_study(write_study(tmp_path, doc), iel_home)
    finally:
        thread.join(timeout=60)
        if not postgres_server.is_running():
            postgres_server.start()
    assert not errors, errors
    assert restarted == [True]
    assert (outcome.trained, outcome.failed) == (4, 0)
    assert_exactly_once(settings, "pgrestart", 4)
    assert_consistent(iel_home, "pgrestart")


# ----------------------------------------------------------------------------------- driver lock (7)
def test_second_submit_refuses_while_a_live_driver_holds_the_study(
    tmp_path: Path, iel_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fault 7 (quick form; the two-real-drivers form is in test_faults_cluster): the lock names the
    running driver, the second submit exits 2 and starts nothing."""
    import socket

    path = write_study(tmp_path, noop_study("locked"))
    settings = Settings.resolve(home=str(iel_home))
    settings.ensure_home()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        owner = f"{socket.gethostname()}:{holder.pid}"
        db = ResultsDB(settings.db_url)
        db.acquire_driver_lock("locked", owner)
        db.close()
        code, out, err = _submit(["submit", str(path)], capsys)
        assert code == 2 and "Traceback" not in err
        assert f"being driven by {owner}" in err
        db = ResultsDB(settings.db_url)
        assert db.study("locked") is None  # nothing recorded
        db.close()
    finally:
        holder.kill()
        holder.wait(timeout=30)
    # The holder is dead now: a new driver on this host takes its lock over at once (no waiting for the
    # heartbeat to go stale), so `iel submit` right after a crash resumes the study.
    runner = StudyRunner(load_study(path), settings)
    stores = Stores.open(settings, "locked", runner.owner)
    try:
        with pytest.raises(DriverLocked) as info:
            stores.db.acquire_driver_lock("locked", "elsewhere:1")
        assert info.value.owner == runner.owner
    finally:
        stores.close()
        stores.db.close()
    # A driver on another host cannot be seen from here: its lock holds until its heartbeat is stale.
    db = ResultsDB(settings.db_url)
    db.acquire_driver_lock("locked", "another-host:1")
    db.close()
    code, _, err = _submit(["submit", str(path)], capsys)
    assert code == 2 and "being driven by another-host:1" in err and "goes stale in" in err
