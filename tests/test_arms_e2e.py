"""Named arms and ``--set`` overrides through a real submit: local Ray, MLflow, Optuna, SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.db import ResultsDB, TrialState
from orchestrator.driver import StudyRunner
from orchestrator.report.tables import load_study_data
from orchestrator.results import results_rows
from orchestrator.settings import Settings
from orchestrator.study import load_study
from tests.studyfiles import noop_study, write_study

pytestmark = pytest.mark.usefixtures("ray_local")


def test_arm_names_reach_the_database_tables_and_mlflow(tmp_path: Path, iel_home: Path) -> None:
    doc = noop_study(
        "armed",
        arms={"plain": {}, "sgd_fast": {"optimizer": {"type": "sgd", "lr": 0.01}}},
        factors={"noise.rate": [0.0, 0.2]},
        baseline="plain",
        seeds=3,
    )
    spec = load_study(write_study(tmp_path, doc), ["seeds=2"])
    settings = Settings.resolve(home=str(iel_home))
    outcome = StudyRunner(spec, settings, max_concurrent=2).run()
    assert outcome.failed == 0 and outcome.trained == 8
    db = ResultsDB(settings.db_url)
    record = db.study("armed")
    assert record is not None and record.spec["baseline"] == {"arm": "plain"}
    assert {c.cell_key: c.factors["arm"] for c in db.cells("armed")} == {
        "arm=plain,noise.rate=0.0": "plain",
        "arm=plain,noise.rate=0.2": "plain",
        "arm=sgd_fast,noise.rate=0.0": "sgd_fast",
        "arm=sgd_fast,noise.rate=0.2": "sgd_fast",
    }
    trials = db.trials("armed", states=[TrialState.COMPLETE])
    assert sorted({t.seed for t in trials}) == [0, 1]  # the override, not the file's 3 seeds
    fast = [t for t in trials if t.cell_key.startswith("arm=sgd_fast")]
    assert {(t.config["optimizer"]["type"], t.config["optimizer"]["lr"]) for t in fast} == {("sgd", 0.01)}
    data = load_study_data(db, "armed")
    pairs = {c.key: (c.row, c.arm, c.baseline_key) for c in data.cells}
    assert pairs["arm=sgd_fast,noise.rate=0.2"] == (
        "noise.rate=0.2",
        "arm=sgd_fast",
        "arm=plain,noise.rate=0.2",
    )
    rows = results_rows(db, "armed", metric="dice", baseline=spec.baseline)
    assert len(rows) == 4
    client = MlflowClient(settings.mlflow_uri)
    exp = client.get_experiment_by_name("iel/armed")
    assert exp is not None
    cells = client.search_runs([exp.experiment_id], "tags.`iel.role` = 'cell'")
    assert {r.data.tags["iel.cell"] for r in cells} == set(pairs)  # full keys in tags, short run names
    assert "sgd_fast · noise 0.2" in {r.info.run_name for r in cells}
