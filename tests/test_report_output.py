"""``iel report --out DIR`` never deletes or overwrites what it did not write: the user's files in ``DIR``,
``DIR/figures`` and ``DIR/predictions`` survive, a report that would overwrite one is refused with exit 2 and
changes nothing, the previous report's own files are replaced, and only the report's files go to MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator import cli
from orchestrator.report.build import log_report
from orchestrator.report.manifest import MANIFEST
from orchestrator.settings import Settings
from orchestrator.tracking import Tracker
from tests.test_stores import _populated


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture
def out(tmp_path: Path, iel_home: Path) -> Path:
    _populated(iel_home)
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    (out / "predictions").mkdir()
    (out / "figures" / "my_plot.png").write_bytes(b"the user's figure")
    (out / "predictions" / "notes.txt").write_bytes(b"the user's notes")
    (out / "paper.tex").write_bytes(b"the user's paper")
    return out


def test_the_users_files_survive_a_report(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = _tree(out)
    assert cli.main(["report", "ro", "--out", str(out), "--no-mlflow"]) == 0
    after = _tree(out)
    assert {k: after[k] for k in mine} == mine  # every file of the user, unchanged
    listed = json.loads((out / MANIFEST).read_text())["files"]
    assert sorted(listed) == sorted(set(after) - set(mine) - {MANIFEST})  # the manifest lists exactly ours
    assert {"report.md", "report.json", "figures/metrics_vs_noise_rate.png"} <= set(listed)
    assert not [p for p in out.iterdir() if p.is_dir() and p.name.startswith(".iel-report-")]  # no staging

    # again, as HTML: our report.md goes (it is ours), the user's files still stay
    assert cli.main(["report", "ro", "--out", str(out), "--no-mlflow", "--format", "html"]) == 0
    again = _tree(out)
    assert {k: again[k] for k in mine} == mine
    assert "report.html" in again and "report.md" not in again


@pytest.mark.parametrize("in_the_way", ["report.md", "figures/metrics_vs_noise_rate.png", "report.json"])
def test_a_report_that_would_overwrite_a_users_file_is_refused(
    out: Path, capsys: pytest.CaptureFixture[str], in_the_way: str
) -> None:
    (out / in_the_way).write_bytes(b"the user's own file of that name")
    before = _tree(out)
    capsys.readouterr()
    assert cli.main(["report", "ro", "--out", str(out), "--no-mlflow"]) == 2
    err = capsys.readouterr()[1]
    assert (
        str(out / in_the_way) in err and "did not write" in err and "--out" in err and "Traceback" not in err
    )
    assert _tree(out) == before  # nothing moved, nothing deleted, no manifest
    assert sorted(p.name for p in out.iterdir()) == sorted({Path(k).parts[0] for k in before})


def test_only_the_reports_files_are_logged_to_mlflow(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings.resolve()
    settings.ensure_home()
    tracker = Tracker(settings.mlflow_uri, settings.artifact_root)
    exp = tracker.experiment("ro")
    run_id = tracker.ensure_run(exp, "ro", {"iel.role": "study", "iel.study": "ro"})
    assert cli.main(["report", "ro", "--out", str(out), "--no-mlflow"]) == 0
    assert log_report(settings, "ro", out) == run_id

    def files(path: str) -> list[str]:
        found = []
        for item in tracker.client.list_artifacts(run_id, path):
            found += files(item.path) if item.is_dir else [item.path]
        return found

    listed = json.loads((out / MANIFEST).read_text())["files"]
    assert sorted(files("report")) == sorted(f"report/{f}" for f in listed)
