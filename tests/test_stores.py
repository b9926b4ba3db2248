"""The embedded stores on disk: created once and atomically (no migration race between drivers started at once),
inside the home whatever characters its path holds, readable on a read-only home, and damaged stores named
as such: a corrupt ``iel.db`` and MLflow runs lost with a deleted ``mlflow.db``."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from orchestrator import cli
from orchestrator.db import ResultsDB, TrialState
from orchestrator.settings import Settings, sqlite_file
from orchestrator.stores import ensure_mlflow_store, missing_runs, repair_missing_runs
from orchestrator.tracking import Tracker
from tests.studyfiles import noop_study, write_study

ROOT = Path(__file__).resolve().parent.parent

_RACER = textwrap.dedent(
    """
    import os, sys, time
    import optuna
    from mlflow.tracking import MlflowClient
    from orchestrator.db import ResultsDB
    from orchestrator.settings import Settings
    home, go, name = sys.argv[1:4]
    settings = Settings.resolve(home=home)
    while not os.path.exists(go):
        time.sleep(0.002)
    settings.ensure_home()  # what the driver does first
    ResultsDB(settings.db_url).ensure_study(name, "", {})
    storage = optuna.storages.RDBStorage(settings.db_url, engine_kwargs={"connect_args": {"timeout": 60}})
    optuna.create_study(storage=storage, study_name=name)
    MlflowClient(settings.mlflow_uri).create_experiment(name)
    """
)


def test_drivers_started_at_once_on_a_fresh_home_create_one_store(tmp_path: Path) -> None:
    """Four processes open a fresh home at the same instant (as four `iel submit` would): without the locks
    MLflow's migrations collide ("duplicate column name") and so does Optuna's table creation ("table
    study_directions already exists"); with them every process gets working stores."""
    home, go = tmp_path / "home", tmp_path / "go"
    env = {"MLFLOW_ENABLE_ASYNC_LOGGING": "false", "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(home), str(go), f"exp{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**__import__("os").environ, **env},
        )
        for i in range(4)
    ]
    time.sleep(3)  # let every process import MLflow and wait at the line (not a timing assertion)
    go.touch()
    outputs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    settings = Settings.resolve(home=str(home))
    names = {e.name for e in MlflowClient(settings.mlflow_uri).search_experiments()}
    assert names == {"Default", "exp0", "exp1", "exp2", "exp3"}
    with ResultsDB(settings.db_url) as db:
        assert sorted(s.name for s in db.studies()) == ["exp0", "exp1", "exp2", "exp3"]
    assert sorted(s.study_name for s in optuna.get_all_study_summaries(settings.db_url)) == [
        "exp0", "exp1", "exp2", "exp3"
    ]  # fmt: skip
    files = {p.name for p in home.iterdir()} - {"iel.db-wal", "iel.db-shm"}  # WAL files of open connections
    assert files == {".iel.db.lock", ".mlflow.db.lock", "iel.db", "mlflow.db"}


def test_an_unfinished_store_is_set_aside_and_made_again(tmp_path: Path) -> None:
    settings = Settings.resolve(home=str(tmp_path / "home"))
    settings.home.mkdir()
    path = settings.home / "mlflow.db"
    conn = sqlite3.connect(path)  # what an interrupted creation leaves: some tables, no migration stamp
    conn.execute("CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()
    (settings.home / ".mlflow.db.creating-999999").write_bytes(b"half")  # an interrupted creation's file
    assert ensure_mlflow_store(settings.mlflow_uri, settings.artifact_root) is True
    assert MlflowClient(settings.mlflow_uri).create_experiment("after") is not None
    assert (settings.home / "mlflow.db.unfinished").exists()  # kept, not deleted
    assert not (settings.home / ".mlflow.db.creating-999999").exists()
    assert ensure_mlflow_store(settings.mlflow_uri, settings.artifact_root) is False  # once only


def test_urls_keep_every_character_of_the_home(tmp_path: Path) -> None:
    home = tmp_path / "a b?c#d%e'f" / "home"
    settings = Settings.resolve(home=str(home))
    assert sqlite_file(settings.db_url) == home / "iel.db"
    assert sqlite_file(settings.mlflow_uri) == home / "mlflow.db"
    plain = Settings.resolve(home=str(tmp_path / "plain"))
    assert plain.db_url == f"sqlite:///{tmp_path / 'plain' / 'iel.db'}"
    assert plain.mlflow_uri == f"sqlite:///{tmp_path / 'plain' / 'mlflow.db'}"


# ------------------------------------------------------------------------------ real study runs (Ray)
def _tables(path: Path) -> set[str]:
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
def test_a_home_with_special_characters_keeps_both_stores_inside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    top = tmp_path / "top"
    top.mkdir()
    home = top / "we ird ?x#y%20z'q"
    monkeypatch.setenv("IEL_HOME", str(home))
    monkeypatch.delenv("IEL_DB_URL", raising=False)
    monkeypatch.delenv("IEL_MLFLOW_URI", raising=False)
    search = {
        "n_trials": 2,
        "sampler": "random",
        "params": {"optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-2}},
    }
    doc = noop_study(
        "odd", factors={"noise.rate": [0.0]}, baseline={"noise.rate": 0.0}, seeds=1, search=search
    )
    path = write_study(tmp_path, doc)
    assert cli.main(["submit", str(path)]) == 0, capsys.readouterr()
    assert [p.name for p in top.iterdir()] == [home.name]  # nothing beside the home
    assert {"iel.db", "mlflow.db", "mlartifacts"} <= {p.name for p in home.iterdir()}
    ours, mlflows = _tables(home / "iel.db"), _tables(home / "mlflow.db")
    assert {"iel_trials", "studies", "trials"} <= ours and "experiments" not in ours  # ours + Optuna's
    assert {"experiments", "runs"} <= mlflows and "iel_trials" not in mlflows and "trials" not in mlflows
    client = MlflowClient(Settings.resolve().mlflow_uri)
    exp = client.get_experiment_by_name("iel/odd")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`iel.role` = 'trial'")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert cli.main(["query", "SELECT count(*) AS n FROM iel_trials", "--format", "csv"]) == 0
    assert capsys.readouterr()[0].splitlines()[-1] == "2"


@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
def test_runs_lost_with_a_deleted_mlflow_store_are_named_and_made_again(
    tmp_path: Path, iel_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    doc = noop_study("lost", factors={"noise.rate": [0.0, 0.2]}, baseline={"noise.rate": 0.0}, seeds=1)
    assert cli.main(["submit", str(write_study(tmp_path, doc))]) == 0
    settings = Settings.resolve()
    (iel_home / "mlflow.db").unlink()
    with caplog.at_level(logging.WARNING, logger="orchestrator.stores"):
        settings.ensure_home()  # a fresh, empty store, as the next submit makes
    assert "links 2 finished trial(s) to MLflow runs" in caplog.text and "from a backup" in caplog.text
    db = ResultsDB(settings.db_url)
    # MLflow caches its store per URI in this process (with a connection to the deleted file): name the new
    # file with the driver spelled out, as a new `iel submit` process would open it afresh.
    tracker = Tracker(f"sqlite+pysqlite:///{iel_home / 'mlflow.db'}", settings.artifact_root)
    exp_id = tracker.experiment("lost")
    before = {t.id: t for t in db.trials("lost")}
    lost = missing_runs(db, tracker, exp_id, "lost")
    assert sorted(lost.trial_ids) == sorted(before) and set(lost.run_ids) == {
        t.mlflow_run_id for t in before.values()
    }
    assert "does not have" in lost.message(tracker.tracking_uri) and "iel submit" in lost.message(
        settings.mlflow_uri
    )
    cells = {
        t.cell_key: tracker.ensure_run(exp_id, t.cell_key, {"iel.role": "cell", "iel.cell": t.cell_key})
        for t in before.values()
    }
    warned: list[str] = []
    assert repair_missing_runs(db, tracker, exp_id, "lost", cells, warn=warned.append) == len(before)
    assert len(warned) == 1
    for t in db.trials("lost"):
        run = tracker.client.get_run(t.mlflow_run_id)
        assert run.info.status == "FINISHED"
        assert run.data.tags["iel.recreated_from_run"] == before[t.id].mlflow_run_id
        assert run.data.tags["mlflow.parentRunId"] == cells[t.cell_key]
        for name, value in t.final_metrics.items():
            assert run.data.metrics[name] == pytest.approx(value, abs=0, rel=1e-12)
    assert repair_missing_runs(db, tracker, exp_id, "lost", cells) == 0  # repaired once
    db.close()


# ------------------------------------------------------------------------------------ damaged homes
def _populated(home: Path) -> None:
    db = ResultsDB(Settings.resolve(home=str(home)).db_url)
    sid = db.ensure_study("ro", "read-only home", {"name": "ro", "baseline": {"noise.rate": 0.0}})
    for rate, dice in ((0.0, 0.81), (0.2, 0.74)):
        cid = db.ensure_cell(sid, f"noise.rate={rate}", {"noise.rate": rate}, rate == 0.0, None)
        tr = db.ensure_trial(sid, cid, 0, f"{int(rate * 10):0>64}", {"seed": 0}, None, "v")
        db.mark_running(tr.id, attempt=1, mlflow_run_id=None, host="h", device="cpu")
        db.finish_trial(tr.id, TrialState.COMPLETE, final_metrics={"dice": dice})
    db.close()


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """``folder`` bind-mounted read-only over itself (root cannot be kept out by file modes)."""
    done = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here ({done.stderr.strip()}): a read-only home needs mount rights")
    try:
        done = subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot remount read-only here ({done.stderr.strip()})")
        yield
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=True)  # a handle still open: detach anyway
            pytest.fail(f"a file under {folder} was still open after the commands ended")


def test_read_commands_work_on_a_read_only_home(iel_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _populated(iel_home)
    assert not (iel_home / "iel.db-wal").exists() and not (iel_home / "iel.db-shm").exists()
    files = sorted(p.name for p in iel_home.iterdir())
    with _read_only(iel_home):
        capsys.readouterr()
        assert cli.main(["studies"]) == 0
        assert cli.main(["status", "ro"]) == 0
        assert cli.main(["results", "ro", "--format", "csv"]) == 0
        assert (
            cli.main(
                ["query", "SELECT cell_key, dice FROM iel_trial_summary ORDER BY cell_key", "--format", "csv"]
            )
            == 0
        )
        out, err = capsys.readouterr()
        assert err == ""
        assert "noise.rate=0.0,0.81\nnoise.rate=0.2,0.74" in out
        assert "complete 2" in out
    assert sorted(p.name for p in iel_home.iterdir()) == files


@pytest.mark.parametrize("command", [["studies"], ["results", "x"], ["query", "SELECT 1"], ["status", "x"]])
def test_a_corrupt_results_database_is_named_as_such(
    iel_home: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    iel_home.mkdir()
    (iel_home / "iel.db").write_bytes(b"this is not a database, it was overwritten " * 200)
    before = (iel_home / "iel.db").read_bytes()
    assert cli.main(command) == 2
    err = capsys.readouterr()[1]
    assert str(iel_home / "iel.db") in err and "damaged or is not a database" in err
    assert "restore it from a backup" in err and "running" not in err and "Traceback" not in err
    assert (iel_home / "iel.db").read_bytes() == before
