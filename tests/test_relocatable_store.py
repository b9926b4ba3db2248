"""A home is relocatable: copied (``cp -r``) and the original deleted, its MLflow artifacts stay readable and
new runs write into the copy (MLflow records absolute artifact locations; the store is re-pointed on open)."""

from __future__ import annotations

import shutil
from pathlib import Path

from mlflow.tracking import MlflowClient

from orchestrator.settings import Settings
from orchestrator.tracking import Tracker, relocate_artifacts


def _tracker(home: Path) -> tuple[Settings, Tracker]:
    settings = Settings.resolve(home=str(home))
    settings.ensure_home()
    return settings, Tracker(settings.mlflow_uri, settings.artifact_root)


def test_a_copied_home_reads_its_artifacts_and_writes_into_the_copy(tmp_path: Path) -> None:
    original = tmp_path / "home with space"
    _, tracker = _tracker(original)
    exp = tracker.experiment("study's")
    run = tracker.create_run(exp, "s", {"iel.role": "study"})
    tracker.log_text(run, "kept", "notes/a.txt")
    tracker.finish(run, "FINISHED")
    assert (original / "mlartifacts").is_dir()

    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    settings, moved = _tracker(copy)
    client = MlflowClient(settings.mlflow_uri)
    assert client.get_run(run).info.artifact_uri.startswith((copy / "mlartifacts").resolve().as_uri())
    local = client.download_artifacts(run, "notes/a.txt", str(tmp_path / "dl"))
    assert Path(local).read_text() == "kept"
    new = moved.create_run(moved.experiment("study's"), "s2", {"iel.role": "study"})
    moved.log_text(new, "new", "b.txt")
    assert not original.exists()  # nothing wrote into the original's place
    assert list((copy / "mlartifacts").rglob("b.txt"))
    assert relocate_artifacts(settings) == 0  # in place already: nothing to move
