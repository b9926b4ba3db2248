"""Edited studies through the real command line: a change that could mix results is refused with the
differences and the way out, nothing recorded; a compatible change goes on; `--as` gives an edited copy its
own name and reuses every identical finished trial."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.db import ResultsDB
from orchestrator.settings import Settings
from tests.studyfiles import noop_study, write_study

pytestmark = pytest.mark.usefixtures("ray_local")


def test_edited_study_is_refused_compatible_edit_goes_on_and_as_reuses(
    tmp_path: Path, iel_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(
        write_study(
            tmp_path,
            noop_study("edits", factors={"noise.rate": [0.0, 0.2]}, baseline={"noise.rate": 0.0}, seeds=3),
        )
    )
    assert main(["submit", path]) == 0
    capsys.readouterr()
    db = ResultsDB(Settings.resolve().db_url)
    before = sorted((t.cell_key, t.seed, t.trial_hash) for t in db.trials("edits"))
    assert len(before) == 6

    for edit, shown in (
        (["--set", "seeds=2"], "seeds"),
        (["--set", "base.epochs=5"], "base.epochs: 3 -> 5"),
        (["--set", "factors.noise.rate=[0.0]"], "factors.noise.rate"),
    ):
        assert main(["submit", path, *edit]) == 2, edit
        err = capsys.readouterr().err
        assert shown in err and "--as" in err and "Traceback" not in err
        assert sorted((t.cell_key, t.seed, t.trial_hash) for t in db.trials("edits")) == before

    # more seeds cannot mix results: accepted, and only the new seeds train
    assert main(["submit", path, "--set", "seeds=5"]) == 0
    assert "trained 4, reused 0, kept 6, failed 0" in capsys.readouterr().out
    assert len(db.trials("edits")) == 10

    # an edited copy under its own name reuses every identical finished trial
    assert main(["submit", path, "--set", "seeds=2", "--as", "edits_two_seeds"]) == 0
    assert "trained 0, reused 4, kept 0, failed 0" in capsys.readouterr().out
    assert {t.seed for t in db.trials("edits_two_seeds")} == {0, 1}
