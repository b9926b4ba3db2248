"""The trained model of each cell's best trial is in MLflow: ``mlflow.pytorch.load_model`` returns a module that
gives the trained model's output (a tiny real training on real Ray, MLflow and SQLite); the dataset is the
run's input."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import mlflow.pytorch
import pytest
import torch
from mlflow.tracking import MlflowClient

from ielcore.artifacts import load_checkpoint
from orchestrator.db import ResultsDB, TrialState
from orchestrator.driver import StudyRunner
from orchestrator.settings import Settings
from orchestrator.study import load_study
from tests.studyfiles import write_study

pytestmark = pytest.mark.usefixtures("ray_local")


def test_the_best_trial_of_each_cell_has_a_loadable_model(tmp_path: Path, iel_home: Path) -> None:
    doc = {
        "version": 1,
        "name": "models",
        "base": {
            "epochs": 1,
            "batch_size": 4,
            "device": "cpu",
            "data": {"type": "cells", "num_images": 8, "size": 32},
            "model": {"type": "unet", "width": 4, "depth": 2},
            "artifacts": {"checkpoint": True, "prediction_grid": False},
        },
        "factors": {"iel.type": ["none", "heat"]},
        "baseline": {"iel.type": "none"},
        "seeds": 2,
        "max_concurrent": 2,
        "retries": 0,
    }
    settings = Settings.resolve(home=str(iel_home))
    assert StudyRunner(load_study(write_study(tmp_path, doc)), settings).run().failed == 0
    client = MlflowClient(settings.mlflow_uri)
    exp = client.get_experiment_by_name("iel/models")
    cells = client.search_runs([exp.experiment_id], "tags.`iel.role` = 'cell'")
    db = ResultsDB(settings.db_url)
    trials = {t.mlflow_run_id: t for t in db.trials("models", states=[TrialState.COMPLETE])}
    assert len(cells) == 2 and len(trials) == 4
    mlflow.set_tracking_uri(settings.mlflow_uri)
    for cell in cells:
        best_run = cell.data.tags["iel.best_trial_run"]
        best = trials[best_run]
        mine = [t for t in trials.values() if t.cell_key == best.cell_key]
        assert best.final_metrics["dice"] == max(t.final_metrics["dice"] for t in mine)
        uri = cell.data.tags["iel.model_uri"]
        assert client.get_run(best_run).data.tags["iel.model_uri"] == uri
        assert client.get_run(best_run).info.status == "FINISHED"
        loaded = mlflow.pytorch.load_model(uri).eval()
        with tempfile.TemporaryDirectory() as tmp:
            trained, ckpt = load_checkpoint(client.download_artifacts(best_run, "checkpoint.pt", tmp))
        x = torch.randn(2, ckpt["in_channels"], 32, 32, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            assert torch.equal(loaded(x), trained.eval()(x))
        run = client.get_run(best_run)
        dataset = run.inputs.dataset_inputs[0].dataset
        assert dataset.name == "cells" and len(dataset.digest) == 36
        assert not [p for p in run.data.params if p.startswith("noop.")]
    db.close()
