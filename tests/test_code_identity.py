"""A trial's identity includes the code that trains it and its data: a study resubmitted after its code or
its folder data changed is refused (nothing recorded, nothing mixed), through the real command line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ielcore
from ielcore.codeprint import code_fingerprint, fingerprint_tree, trial_identity
from ielcore.spec import TrialConfig
from orchestrator.cli import main
from orchestrator.db import ResultsDB
from orchestrator.settings import Settings
from tests.studyfiles import noop_study, write_study


def test_the_tree_fingerprint_is_its_files_names_and_bytes(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "a.py").write_text("x = 1\n")
    (root / "sub" / "b.tif").write_bytes(b"\x00\x01")
    first = fingerprint_tree(root)
    assert first == fingerprint_tree(root) and len(first) == 64
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"compiled")
    (root / "sub" / "b.pyc").write_bytes(b"compiled")
    assert fingerprint_tree(root) == first  # caches are not code
    copy = shutil.copytree(root, tmp_path / "elsewhere")
    assert fingerprint_tree(Path(copy)) == first  # where it is installed does not matter
    (root / "a.py").write_text("x = 1  # a comment\n")
    assert fingerprint_tree(root) != first  # any edit is a new code version
    (root / "a.py").write_text("x = 1\n")
    assert fingerprint_tree(root) == first
    (root / "sub" / "b.tif").rename(root / "sub" / "c.tif")
    assert fingerprint_tree(root) != first  # names count
    assert fingerprint_tree(Path(copy), "torch=2.0") != fingerprint_tree(Path(copy), "torch=2.1")


def test_the_identity_is_the_configuration_and_the_code() -> None:
    cfg = TrialConfig.from_dict({"kind": "noop", "epochs": 3})
    assert cfg.identity == trial_identity(cfg.to_dict()) == trial_identity(cfg.to_dict(), code_fingerprint())
    assert cfg.identity != trial_identity(cfg.to_dict(), "another code version")
    assert cfg.identity != TrialConfig.from_dict({"kind": "noop", "epochs": 4}).identity
    assert cfg.hash != cfg.identity  # the configuration's own hash is not the trial's identity


def _recorded(study: str) -> list[tuple[str, int, str, str]]:
    db = ResultsDB(Settings.resolve().db_url)
    return sorted((t.cell_key, t.seed, t.trial_hash, t.state) for t in db.trials(study))


@pytest.mark.usefixtures("ray_local")
def test_a_study_resubmitted_with_other_code_is_refused(
    tmp_path: Path, iel_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_study(
        tmp_path,
        noop_study("codechange", factors={"noise.rate": [0.0, 0.2]}, baseline={"noise.rate": 0.0}, seeds=2),
    )
    assert main(["submit", str(path)]) == 0
    capsys.readouterr()
    before = _recorded("codechange")
    assert len(before) == 4

    # The same platform with one comment added to one file of ielcore, imported first from PYTHONPATH.
    alt = tmp_path / "alt"
    shutil.copytree(
        Path(ielcore.__file__).parent, alt / "ielcore", ignore=shutil.ignore_patterns("__pycache__")
    )
    with open(alt / "ielcore" / "metrics.py", "a") as f:
        f.write("\n# an edit\n")
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(alt), str(repo)])}
    run = [
        sys.executable,
        "-c",
        "import sys; from orchestrator.cli import main; sys.exit(main(sys.argv[1:]))",
    ]
    probe = subprocess.run(
        [*run[:2], "import ielcore; print(ielcore.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == str(alt / "ielcore" / "__init__.py")
    out = subprocess.run(
        [*run, "submit", str(path)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 2, out.stderr
    assert "the code that trains the trials changed" in out.stderr and "code: " in out.stderr
    assert "--as NEW_NAME" in out.stderr and "Traceback" not in out.stderr
    assert _recorded("codechange") == before  # nothing recorded, nothing mixed

    # The same code again: identical, nothing to train.
    assert main(["submit", str(path)]) == 0
    assert "trained 0" in capsys.readouterr().out
    assert _recorded("codechange") == before


def _folder(root: Path, shade: int) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    for i in range(4):
        img = np.full((16, 16, 3), shade + 30 * i, dtype=np.uint8)
        mask = np.zeros((16, 16), dtype=np.uint8)
        mask[4:12, 4 + i : 12] = 1
        Image.fromarray(img).save(root / "images" / f"c{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"c{i}.png")
    return root


@pytest.mark.usefixtures("ray_local")
def test_a_study_resubmitted_after_its_folder_data_changed_is_refused(
    tmp_path: Path, iel_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _folder(tmp_path / "data", shade=20)
    doc = {
        "version": 1,
        "name": "datachange",
        "base": {
            "device": "cpu",
            "epochs": 1,
            "batch_size": 2,
            "data": {"type": "folder", "root": str(root), "num_classes": 2, "val_fraction": 0.5},
            "model": {"type": "unet", "width": 4, "depth": 1},
            "artifacts": {"checkpoint": False, "prediction_grid": False},
        },
        "seeds": 1,
        "max_concurrent": 1,
    }
    path = write_study(tmp_path, doc)
    assert main(["submit", str(path)]) == 0
    capsys.readouterr()
    before = _recorded("datachange")
    assert len(before) == 1 and before[0][3] == "COMPLETE"

    _folder(root, shade=90)  # same names, other pixels: the spec is unchanged, the data is not
    assert main(["submit", str(path)]) == 2
    err = capsys.readouterr().err
    assert "1 recorded trials have another identity" in err and "data.fingerprint" in err
    assert f'seed 0: "{before[0][2][:12]}"' in err and "--as NEW_NAME" in err
    assert _recorded("datachange") == before

    # Under a new name the new data trains its own trial; the old study still holds the old one.
    assert main(["submit", str(path), "--as", "datachange_v2"]) == 0
    assert "trained 1, reused 0" in capsys.readouterr().out
    assert _recorded("datachange_v2")[0][2] != before[0][2]


def test_a_worker_with_other_code_refuses_the_task_before_training() -> None:
    from workers.actor import TrialWorker
    from workers.protocol import TrialTask

    cfg = TrialConfig.from_dict({"kind": "noop", "epochs": 2})
    worker = TrialWorker()
    ok = worker.run(TrialTask(trial_id=1, attempt=1, config=cfg.to_dict(), trial_hash=cfg.identity))
    assert ok.state == "COMPLETE" and ok.result is not None and ok.result.trial_hash == cfg.identity
    planned_elsewhere = trial_identity(cfg.to_dict(), "the driver's code")
    bad = worker.run(TrialTask(trial_id=2, attempt=1, config=cfg.to_dict(), trial_hash=planned_elsewhere))
    assert bad.state == "FAILED" and bad.result is None and bad.failure_kind == "error"
    assert bad.error is not None and "runs other code than the driver planned" in bad.error
    assert f"planned {planned_elsewhere[:12]}" in bad.error and "same version" in bad.error
    group = worker.run_group(
        [
            TrialTask(trial_id=3, attempt=1, config=cfg.to_dict(), trial_hash=cfg.identity),
            TrialTask(trial_id=4, attempt=1, config=cfg.to_dict(), trial_hash=planned_elsewhere),
        ]
    )
    assert [o.state for o in group] == ["COMPLETE", "FAILED"]
