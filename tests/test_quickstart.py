"""The README's main job, end to end from the CLI: `iel submit studies/quickstart.yaml` on embedded defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ielcore.spec import TrialConfig
from ielcore.train import train_trial
from orchestrator.cli import main
from orchestrator.db import ResultsDB, TrialState
from orchestrator.plan import build_plan
from orchestrator.settings import Settings
from orchestrator.study import load_study

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_can_decide_within_its_cap() -> None:
    """The anytime-valid t decides nothing before 6 pairs: the cap must let a comparison reach them."""
    spec = load_study(str(ROOT / "studies" / "quickstart.yaml"))
    assert spec.adaptive is not None and spec.decide is not None
    assert spec.adaptive.max >= 6
    assert len(build_plan(spec).cells) * spec.adaptive.max <= 18  # about a minute on 2 cores


@pytest.mark.slow
def test_quickstart_schedule_converges_on_clean_labels() -> None:
    """Plain CE with the quickstart's base (its shorter schedule) on clean labels: final Dice >= 0.85 in
    each of 8 seeds (20 of 20 measured, docs/recipes.md "nuclei, 10 epochs")."""
    spec = load_study(str(ROOT / "studies" / "quickstart.yaml"))
    base = TrialConfig.from_dict(dict(spec.base)).replace(
        {"noise.rate": 0.0, "artifacts.prediction_grid": False, "artifacts.checkpoint": False}
    )
    cache: dict[str, Any] = {}
    finals = [
        train_trial(base.replace({"seed": s}), data_cache=cache).final_metrics["dice"] for s in range(8)
    ]
    assert min(finals) >= 0.85, finals


@pytest.mark.slow
def test_quickstart_end_to_end(iel_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = str(ROOT / "studies" / "quickstart.yaml")
    spec = load_study(study)
    plan = build_plan(spec)
    assert main(["submit", study]) == 0
    out = capsys.readouterr().out
    assert "results of study quickstart" in out
    for cell in plan.cells:
        assert cell.key in out
    # adaptive seeds: every arm starts with `start`, none goes past `max`; it ends with its decisions
    assert spec.adaptive is not None
    db = ResultsDB(Settings.resolve().db_url)
    trials = db.trials("quickstart")
    n = len(trials)
    assert plan.n_trials() <= n <= len(plan.cells) * spec.adaptive.max
    assert all(t.state == TrialState.COMPLETE for t in trials)
    decisions = [line for line in out.split("decisions (dice", 1)[1].splitlines() if line.startswith("  ")]
    assert len(decisions) == len(plan.cells) - 1
    assert all(" vs plain_ce: " in line for line in decisions)
    assert (iel_home / "iel.db").exists() and (iel_home / "mlflow.db").exists()
    # a second submit trains nothing
    assert main(["submit", study]) == 0
    assert f"trained 0, reused 0, kept {n}, failed 0" in capsys.readouterr().out
    # the read-only query interface sees the documented view
    assert (
        main(
            [
                "query",
                "SELECT count(*) AS n FROM iel_trial_summary WHERE study = 'quickstart'",
                "--format",
                "json",
            ]
        )
        == 0
    )
    assert f'"n": {n}' in capsys.readouterr().out
    assert main(["query", "DELETE FROM iel_trials"]) == 2
    assert len(db.trials("quickstart")) == n
