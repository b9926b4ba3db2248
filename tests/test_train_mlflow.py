"""``iel train CONFIG --mlflow URI``: a single run tracked in a real MLflow store like a study trial
(params = flattened resolved config, per-epoch metrics, status, artifacts); bad input exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from orchestrator import cli

TINY = {
    "device": "cpu",
    "seed": 3,
    "epochs": 2,
    "batch_size": 8,
    "data": {"type": "cells", "num_images": 16, "size": 32},
    "noise": {"type": "none", "rate": 0.0},
    "model": {"type": "unet", "width": 4, "depth": 2},
    "iel": {"type": "heat", "dt": 0.05, "steps": 2},
    "artifacts": {"checkpoint": True, "prediction_grid": False},
}


def _write(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _runs(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    return client.search_runs([exp.experiment_id])


def test_train_run_is_tracked_like_a_trial(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = tmp_path / "out"
    code = cli.main(
        ["train", str(_write(tmp_path, TINY)), "--out", str(out), "--mlflow", uri, "--experiment", "mine"]
    )
    printed = capsys.readouterr().out
    assert code == 0
    (run,) = _runs(uri, "mine")
    assert run.info.status == "FINISHED" and f"tracked as MLflow run {run.info.run_id}" in printed
    params = run.data.params
    assert (params["iel.dt"], params["iel.steps"], params["seed"], params["model.width"]) == (
        "0.05",
        "2",
        "3",
        "4",
    )
    assert run.data.tags["iel.role"] == "train" and run.data.tags["mlflow.user"]
    client = MlflowClient(uri)
    history = client.get_metric_history(run.info.run_id, "dice")
    assert sorted(m.step for m in history) == [1, 2]  # one value per epoch
    result = yaml.safe_load((out / "result.json").read_text())
    last = max(history, key=lambda m: m.step)
    assert last.value == pytest.approx(result["final_metrics"]["dice"], rel=1e-12)
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"result.json", "checkpoint.pt", "config.json"} <= names


def test_diverged_run_ends_failed_with_the_reason(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    doc = {"kind": "noop", "epochs": 3, "seed": 0, "noop": {"diverge_at_epoch": 2}}
    code = cli.main(["train", str(_write(tmp_path, doc)), "--out", str(tmp_path / "o"), "--mlflow", uri])
    assert code == 1
    (run,) = _runs(uri, "iel/train")
    assert run.info.status == "FAILED" and run.data.tags["iel.error"].startswith("[diverged]")
    steps = sorted(m.step for m in MlflowClient(uri).get_metric_history(run.info.run_id, "train_loss"))
    assert steps == [1]  # epoch 2 diverged: its loss is not a number to log


def test_experiment_without_mlflow_exits_2_and_trains_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    code = cli.main(["train", str(_write(tmp_path, TINY)), "--out", str(out), "--experiment", "x"])
    err = capsys.readouterr().err
    assert code == 2 and "give --mlflow URI" in err and not out.exists()


def test_unreachable_mlflow_server_exits_2_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.postgres import free_port

    out = tmp_path / "o"
    uri = f"http://127.0.0.1:{free_port()}"
    code = cli.main(["train", str(_write(tmp_path, TINY)), "--out", str(out), "--mlflow", uri])
    err = capsys.readouterr().err
    assert code == 2 and "no MLflow server answers" in err and not out.exists()
