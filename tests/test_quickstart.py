"""The README's main job, end to end from the CLI: `iel submit studies/quickstart.yaml` on embedded defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.db import ResultsDB, TrialState
from orchestrator.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_end_to_end(iel_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = str(ROOT / "studies" / "quickstart.yaml")
    assert main(["submit", study]) == 0
    out = capsys.readouterr().out
    assert "results of study quickstart" in out
    for cell in ("noise.rate=0.0,iel.type=none", "noise.rate=0.4,iel.type=heat"):
        assert cell in out
    db = ResultsDB(Settings.resolve().db_url)
    trials = db.trials("quickstart")
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials)
    assert (iel_home / "iel.db").exists() and (iel_home / "mlflow.db").exists()
    # a second submit trains nothing
    assert main(["submit", study]) == 0
    assert "trained 0, reused 0, kept 8, failed 0" in capsys.readouterr().out
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
    assert '"n": 8' in capsys.readouterr().out
    assert main(["query", "DELETE FROM iel_trials"]) == 2
    assert len(db.trials("quickstart")) == 8
