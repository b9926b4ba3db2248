"""Resuming a study on real stores: a seeded search continues without repeats, and a finished study's
resubmit does not start Ray."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest

from orchestrator import cli
from orchestrator.db import ResultsDB, TrialState
from orchestrator.settings import Settings
from tests.studyfiles import noop_study, write_study
from tests.test_faults import optuna_trials
from tests.test_faults_cluster import driver_env
from tests.test_orchestrator import assert_consistent

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def _search_doc(n_trials: int, choices: list[float]) -> dict[str, Any]:
    return noop_study(
        "resumed",
        base={"kind": "noop", "epochs": 1, "optimizer": {"type": "adam", "lr": 1e-3}},
        factors={"noise.rate": [0.0]},
        baseline={"noise.rate": 0.0},
        seeds=1,
        max_concurrent=1,
        search={
            "n_trials": n_trials,
            "sampler": "random",
            "pruner": "none",
            "seed": 3,
            "params": {"optimizer.lr": {"type": "categorical", "choices": choices}},
        },
    )


@pytest.mark.usefixtures("ray_local")
def test_resumed_seeded_search_proposes_new_points(tmp_path: Path, iel_home: Path) -> None:
    """n_trials 3, then the same study with n_trials 6: the cell ends with 6 distinct configurations, 6
    COMPLETE Optuna trials (one per configuration) and the first 3 kept, not trained again."""
    choices = [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2]
    path = write_study(tmp_path, _search_doc(3, choices))
    assert cli.main(["submit", str(path), "--home", str(iel_home)]) == 0
    path = write_study(tmp_path, _search_doc(6, choices))
    assert cli.main(["submit", str(path), "--home", str(iel_home)]) == 0

    settings = Settings.resolve(home=str(iel_home))
    db = ResultsDB(settings.db_url)
    try:
        trials = db.trials("resumed")
    finally:
        db.close()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    assert len({t.trial_hash for t in trials}) == 6
    assert len({t.config["optimizer"]["lr"] for t in trials}) == 6
    complete = [t for t in optuna_trials(settings, "resumed") if t.state == optuna.trial.TrialState.COMPLETE]
    assert Counter(t.user_attrs["trial_hash"] for t in complete) == Counter(t.trial_hash for t in trials)
    # Proposals that repeated a finished configuration are FAIL with duplicate_of, never COMPLETE.
    dup = [t for t in optuna_trials(settings, "resumed") if "duplicate_of" in t.user_attrs]
    assert all(t.state == optuna.trial.TrialState.FAIL for t in dup)
    assert_consistent(iel_home, "resumed")


@pytest.mark.usefixtures("ray_local")
def test_search_over_a_small_space_stops_when_nothing_new_is_left(tmp_path: Path, iel_home: Path) -> None:
    """3 possible configurations and n_trials 5: the cell ends with the 3, each once, and the driver ends."""
    path = write_study(tmp_path, _search_doc(5, [1e-3, 2e-3, 5e-3]))
    assert cli.main(["submit", str(path), "--home", str(iel_home)]) == 0
    settings = Settings.resolve(home=str(iel_home))
    db = ResultsDB(settings.db_url)
    try:
        trials = db.trials("resumed")
    finally:
        db.close()
    assert sorted(t.config["optimizer"]["lr"] for t in trials) == [1e-3, 2e-3, 5e-3]
    complete = [t for t in optuna_trials(settings, "resumed") if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3


_SUBMIT = (
    "import sys, ray\n"
    "from orchestrator import cli\n"
    "code = cli.main(sys.argv[1:])\n"
    "print('RAY_STARTED', ray.is_initialized())\n"
    "sys.exit(code)\n"
)


def test_resubmit_of_a_finished_study_does_not_start_ray(tmp_path: Path, iel_home: Path) -> None:
    doc = noop_study(
        "finished",
        base={"kind": "noop", "epochs": 1, "optimizer": {"type": "adam", "lr": 1e-3}},
        factors={"noise.rate": [0.0, 0.2]},
        baseline={"noise.rate": 0.0},
        seeds=1,
        max_concurrent=1,
    )
    path = write_study(tmp_path, doc)
    cmd = [sys.executable, "-c", _SUBMIT, "submit", str(path), "--home", str(iel_home)]
    outs = []
    for _ in range(2):
        proc = subprocess.run(cmd, cwd=ROOT, env=driver_env(), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        outs.append(proc.stdout)
    assert "RAY_STARTED True" in outs[0]
    assert "RAY_STARTED False" in outs[1] and "trained 0, reused 0, kept 2, failed 0" in outs[1], outs[1]
    assert_consistent(iel_home, "finished")
    assert os.path.exists(iel_home / "iel.db")
