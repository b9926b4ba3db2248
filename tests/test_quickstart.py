"""The README's main job, end to end from the CLI: `iel submit studies/quickstart.yaml` on embedded defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.db import ResultsDB, TrialState
from orchestrator.plan import build_plan
from orchestrator.settings import Settings
from orchestrator.study import load_study

ROOT = Path(__file__).resolve().parents[1]


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
