"""`iel report` on finished studies: the numbers against SciPy, the marks, the figures, the prediction grids
and the copy logged to the study's MLflow parent run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from scipy import stats as sps

from orchestrator.cli import main
from orchestrator.db import ResultsDB, TrialState
from orchestrator.driver import StudyRunner
from orchestrator.report import build_report
from orchestrator.settings import Settings
from orchestrator.stats import bootstrap_interval, holm
from orchestrator.study import load_study
from tests.studyfiles import noop_study, write_study

pytestmark = pytest.mark.usefixtures("ray_local")

PNG = b"\x89PNG\r\n\x1a\n"


def run_study(tmp: Path, home: Path, doc: dict[str, Any]) -> Settings:
    settings = Settings.resolve(home=str(home))
    outcome = StudyRunner(load_study(write_study(tmp, doc)), settings).run()
    assert outcome.failed == 0
    return settings


def finals(settings: Settings, study: str) -> dict[str, dict[int, dict[str, float]]]:
    """cell key -> seed -> final metrics, read straight from the results database."""
    db = ResultsDB(settings.db_url)
    out: dict[str, dict[int, dict[str, float]]] = {}
    for t in db.trials(study, states=[TrialState.COMPLETE]):
        out.setdefault(t.cell_key, {})[t.seed] = t.final_metrics  # type: ignore[assignment]
    db.close()
    return out


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG, path
    img = mpimg.imread(path)
    assert img.shape[0] > 50 and img.shape[1] > 50
    assert float(np.std(img)) > 0.01  # not a blank canvas


@pytest.fixture(scope="module")
def grid_study(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> Iterator[Settings]:
    """A tiny real study (18 two-epoch trials of a 4-channel U-Net on 16 synthetic 32x32 images): two noise
    rates x {no IEL, heat IEL with 2 or 4 steps} x 3 seeds, with prediction grids."""
    tmp = tmp_path_factory.mktemp("grid")
    doc = {
        "version": 1,
        "name": "rep",
        "description": "report test study",
        "base": {
            "device": "cpu",
            "epochs": 2,
            "batch_size": 8,
            "data": {"type": "cells", "num_images": 16, "size": 32},
            "noise": {"type": "block", "rate": 0.0, "block": 2},
            "model": {"type": "unet", "width": 4, "depth": 2},
            "iel": {"type": "none"},
            "artifacts": {"checkpoint": False, "prediction_grid": True},
        },
        "factors": {"noise.rate": [0.0, 0.4], "iel.type": ["none", "heat"], "iel.steps": [2, 4]},
        "baseline": {"iel.type": "none"},
        "seeds": 3,
        "max_concurrent": 2,
    }
    with pytest.MonkeyPatch.context() as mp:  # the embedded stores under tmp, whatever the environment says
        mp.delenv("IEL_DB_URL", raising=False)
        mp.delenv("IEL_MLFLOW_URI", raising=False)
        yield run_study(tmp, tmp / "home", doc)


METRICS = [
    "dice",
    "miou",
    "pixel_acc",
    "solidity",
    "nonconvex_share",
    "object_solidity",
    "nonconvex_area_share",
]
HIGHER_IS_BETTER = {"dice", "miou", "pixel_acc", "solidity", "object_solidity"}


def test_report_numbers_match_scipy_and_are_logged(grid_study: Settings, tmp_path: Path) -> None:
    settings = grid_study
    report = build_report(settings, "rep", tmp_path / "out")
    data = finals(settings, "rep")
    assert len(data) == 6  # 2 noise rates x (none, heat 2, heat 4)
    doc = json.loads(report.json_path.read_text())
    assert doc["metrics"] == METRICS and doc["arm_factors"] == ["iel.type"]

    # Per cell and metric: n, mean, std and the t interval, as SciPy computes them.
    assert len(report.stats) == 6 * len(METRICS)
    for s in report.stats:
        x = np.array([m[s.metric] for m in data[s.cell].values()])
        assert s.n == 3
        assert s.mean == pytest.approx(x.mean(), rel=1e-12)
        assert s.std == pytest.approx(x.std(ddof=1), rel=1e-12, abs=1e-15)
        if x.std() > 0:
            lo, hi = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
            lo, hi = max(lo, 0.0), min(hi, 1.0)  # clipped to the metric's range (all of these are in [0, 1])
            assert (s.ci_low, s.ci_high) == (pytest.approx(lo, rel=1e-9), pytest.approx(hi, rel=1e-9))
        else:
            assert s.ci_low == s.ci_high == pytest.approx(x.mean())

    # The best arm of each row (noise rate) and metric: highest mean, lowest for the non-convex share.
    for metric in METRICS:
        for row in ("noise.rate=0.0", "noise.rate=0.4"):
            in_row = [s for s in report.stats if s.metric == metric and s.row == row]
            assert len(in_row) == 3
            pick = max if metric in HIGHER_IS_BETTER else min
            best = pick(s.mean for s in in_row)
            assert [s.best for s in in_row] == [s.mean == best for s in in_row]

    # Comparisons: each heat cell against the none cell of the same noise rate, paired on seed.
    assert len(report.comparisons) == len(METRICS) * 4
    for c in report.comparisons:
        assert c.baseline_cell == f"{c.row},iel.type=none"
        seeds = sorted(data[c.cell])
        a = [data[c.cell][k][c.metric] for k in seeds]
        b = [data[c.baseline_cell][k][c.metric] for k in seeds]
        d = np.subtract(a, b)
        assert c.n == 3 and c.mean_diff == pytest.approx(d.mean(), rel=1e-9, abs=1e-15)
        if np.all(d == 0):
            assert (c.p_t, c.p_wilcoxon, c.effect_size) == (1.0, 1.0, None)
            continue
        if d.std() > 0:
            assert c.p_t == pytest.approx(sps.ttest_rel(a, b).pvalue, rel=1e-9)
            assert c.effect_size == pytest.approx(d.mean() / d.std(ddof=1), rel=1e-9)
        assert c.p_wilcoxon == pytest.approx(sps.wilcoxon(a, b).pvalue, rel=1e-9)
    # Holm within each metric's comparisons (never across metrics), separately for both tests.
    for metric in METRICS:
        family = [c for c in report.comparisons if c.metric == metric]
        assert len(family) == 4
        assert [c.p_t_holm for c in family] == pytest.approx(holm([c.p_t for c in family]))
        assert [c.p_wilcoxon_holm for c in family] == pytest.approx(holm([c.p_wilcoxon for c in family]))

    # The Markdown report: one table per metric, a star for every best mark.
    md = report.path.read_text()
    assert report.path.name == "report.md"
    for metric in METRICS:
        assert f"### Final {metric}" in md
    assert md.count("★** |") == sum(s.best for s in report.stats)
    names = sorted(p.name for p in report.figures)
    assert names == sorted(
        [
            "cell_results.png",
            "metrics_vs_noise_rate.png",
            "metrics_vs_iel_steps.png",
            "heatmap.png",
            "training_curves.png",
        ]
    )
    for p in report.figures:
        assert_png(p)
        assert f"figures/{p.name}" in md

    # One prediction grid per arm, copied from the trials' own MLflow artifacts (noise rate 0.4, seed 0).
    assert sorted(p.name for p in report.prediction_grids) == [
        "iel.type_heat_iel.steps_2.png",
        "iel.type_heat_iel.steps_4.png",
        "iel.type_none.png",
    ]
    db = ResultsDB(settings.db_url)
    trials = {(t.cell_key, t.seed): t for t in db.trials("rep")}
    db.close()
    client = MlflowClient(settings.mlflow_uri)
    for grid in report.prediction_grids:
        assert_png(grid)
        arm = {"iel.type_none.png": "iel.type=none"}.get(grid.name) or (
            f"iel.type=heat,iel.steps={grid.name.split('_')[-1][0]}"
        )
        trial = trials[(f"noise.rate=0.4,{arm}", 0)]
        original = client.download_artifacts(trial.mlflow_run_id, "predictions.png", str(tmp_path))
        assert grid.read_bytes() == Path(original).read_bytes()
        assert f"predictions/{grid.name}" in md

    # Logged under report/ to the study's parent run.
    run = client.get_run(report.mlflow_run_id)
    assert run.data.tags["iel.role"] == "study"
    logged = {f.path for f in client.list_artifacts(report.mlflow_run_id, "report")}
    assert {"report/report.md", "report/report.json", "report/figures", "report/predictions"} <= logged
    assert len(client.list_artifacts(report.mlflow_run_id, "report/figures")) == 5
    assert len(client.list_artifacts(report.mlflow_run_id, "report/predictions")) == 3


def test_report_cli_html_bootstrap(
    grid_study: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(grid_study.home)
    out = tmp_path / "html"
    rc = main(
        ["report", "rep", "--home", home, "--out", str(out), "--format", "html", "--bootstrap", "--no-mlflow"]
    )
    assert rc == 0
    assert "report.html" in capsys.readouterr().out
    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<table>") == len(METRICS)
    assert '<img src="figures/heatmap.png"' in page
    doc = json.loads((out / "report.json").read_text())
    data = finals(grid_study, "rep")
    for s in doc["summaries"]:  # percentile-bootstrap intervals on request
        x = [m[s["metric"]] for m in data[s["cell"]].values()]
        assert (s["ci_low"], s["ci_high"]) == pytest.approx(bootstrap_interval(x))
    for c in doc["comparisons"]:
        a = [data[c["cell"]][k][c["metric"]] for k in sorted(data[c["cell"]])]
        b = [data[c["baseline_cell"]][k][c["metric"]] for k in sorted(data[c["cell"]])]
        assert (c["ci_low"], c["ci_high"]) == pytest.approx(bootstrap_interval(np.subtract(a, b)))

    # An explicit arm set and heatmap; unknown names are errors that list the valid ones.
    rc = main(
        ["report", "rep", "--home", home, "--out", str(out), "--arm", "iel.type,iel.steps", "--no-mlflow"]
    )
    assert rc == 0
    assert main(["report", "rep", "--home", home, "--out", str(out), "--arm", "iel.dt", "--no-mlflow"]) == 2
    assert "its factors: ['noise.rate', 'iel.type', 'iel.steps']" in capsys.readouterr().err
    assert main(["report", "nope", "--home", home, "--no-mlflow"]) == 2
    assert "studies: ['rep']" in capsys.readouterr().err


def test_report_of_a_searched_multi_objective_study(tmp_path: Path, iel_home: Path) -> None:
    doc = noop_study(
        "srch",
        base={
            "kind": "noop",
            "epochs": 2,
            "iel": {"type": "heat", "dt": 0.1, "steps": 5},
            "optimizer": {"type": "adam", "lr": 1.0e-3},
        },
        factors={"noise.rate": [0.2]},
        baseline={"noise.rate": 0.2},
        seeds=2,
        search={
            "n_trials": 3,
            "sampler": "random",
            "pruner": "none",
            "seed": 3,
            "objectives": [
                {"metric": "dice", "direction": "maximize"},
                {"metric": "val_loss", "direction": "minimize"},
            ],
            "params": {
                "optimizer.lr": {"type": "float", "low": 1.0e-5, "high": 1.0e-1, "log": True},
                "iel.steps": {"type": "int", "low": 1, "high": 20},
            },
        },
    )
    settings = run_study(tmp_path, iel_home, doc)
    report = build_report(settings, "srch", tmp_path / "out", log_to_mlflow=False)
    assert report.comparisons == () and report.mlflow_run_id is None
    names = {p.name for p in report.figures}
    assert {"param_importances.png", "pareto_front.png", "training_curves.png"} <= names
    for p in report.figures:
        assert_png(p)
    md = report.path.read_text()
    assert "## Search" in md and "Objectives: dice, val_loss" in md
    (s,) = [s for s in report.stats if s.metric == "dice"]
    assert s.n == 3
