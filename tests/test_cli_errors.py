"""Bad input through the real command line: ``iel submit`` exits 2 with a short message on stderr naming
the file, the field path and the fix, shows no traceback unless ``--debug``, and writes nothing (no
results database, no MLflow store under IEL_HOME).  A study that asks for GPUs on a CPU-only cluster is
refused the same way before any trial starts, unless ``--allow-cpu``."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ielcore.errors import SpecError
from orchestrator import cli
from orchestrator.db import ResultsDB, TrialState
from orchestrator.settings import Settings
from tests.studyfiles import noop_study, write_study
from tests.test_bad_input import CASES

SAMPLE = (
    "yaml_syntax",
    "python_tag",
    "non_utf8",
    "duplicate_key",
    "unknown_top_key",
    "unknown_base_iel_key",
    "unknown_noise",
    "iel_gain_over_limit",
    "zip_unequal_lengths",
    "low_above_high",
    "unknown_sampler",
    "negative_gpus",
)
BY_NAME = {name: (content, expected) for name, content, expected in CASES}


def _write(tmp_path: Path, name: str) -> Path:
    content, _ = BY_NAME[name]
    path = tmp_path / f"{name}.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _assert_nothing_written(home: Path) -> None:
    assert not home.exists() or not any(home.iterdir()), sorted(p.name for p in home.iterdir())


@pytest.mark.parametrize("name", SAMPLE)
def test_bad_study_exits_2_with_a_short_message_and_writes_nothing(
    tmp_path: Path, iel_home: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    path = _write(tmp_path, name)
    code = cli.main(["submit", str(path), "--home", str(iel_home)])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.startswith("error: ") and "Traceback" not in err
    assert f"{name}.yaml" in err  # the file
    for part in BY_NAME[name][1]:  # the field path and the fix
        assert part in err, f"{part!r} not in: {err}"
    assert len(err) < 2000, "the message should be short"
    _assert_nothing_written(iel_home)


def test_dry_run_and_missing_file_exit_2(
    tmp_path: Path, iel_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["submit", str(_write(tmp_path, "unknown_top_key")), "--dry-run"])
    _, err = capsys.readouterr()
    assert code == 2 and "field 'colour'" in err and "Traceback" not in err
    missing = tmp_path / "no-such-study.yaml"
    code = cli.main(["submit", str(missing), "--home", str(iel_home)])
    _, err = capsys.readouterr()
    assert code == 2 and "no-such-study.yaml" in err and "Traceback" not in err
    _assert_nothing_written(iel_home)


def test_debug_shows_the_traceback(tmp_path: Path, iel_home: Path) -> None:
    path = _write(tmp_path, "unknown_noise")
    with pytest.raises(SpecError) as info:
        cli.main(["--debug", "submit", str(path), "--home", str(iel_home)])
    assert "field 'base.noise.type'" in str(info.value)
    _assert_nothing_written(iel_home)


@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
def test_gpus_on_a_cpu_only_cluster_exit_2_unless_allow_cpu(
    tmp_path: Path, iel_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = noop_study(
        "needs_gpu",
        factors={"noise.rate": [0.0]},
        baseline={"noise.rate": 0.0},
        seeds=1,
        resources={"gpus": 1},
    )
    path = write_study(tmp_path, doc)
    code = cli.main(["submit", str(path), "--home", str(iel_home)])
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err
    for part in ("resources.gpus", "has no GPU", "--allow-cpu"):
        assert part in err, err
    settings = Settings.resolve(home=str(iel_home))
    db = ResultsDB(settings.db_url)
    assert db.study("needs_gpu") is None  # checked before anything about the study is recorded
    db.close()
    assert MlflowClient(settings.mlflow_uri).get_experiment_by_name("iel/needs_gpu") is None

    code = cli.main(["submit", str(path), "--home", str(iel_home), "--allow-cpu"])
    out, err = capsys.readouterr()
    assert code == 0, err
    db = ResultsDB(settings.db_url)
    assert [t.state for t in db.trials("needs_gpu")] == [TrialState.COMPLETE]
    db.close()
