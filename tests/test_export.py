"""``iel export``: one row per trial as CSV or Parquet through the real command line and a real SQLite
results database; bad input exits 2 and writes nothing."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import pytest

from orchestrator import cli
from orchestrator.db import ResultsDB, TrialState
from orchestrator.export import export_table, flatten

SPEC = {"name": "s", "search": {"params": {"optimizer.lr": {"type": "float"}, "iel.dt": {"type": "float"}}}}


def _fill(db_url: str) -> None:
    with ResultsDB(db_url) as db:
        sid = db.ensure_study("s", "", SPEC)
        heat = db.ensure_cell(sid, "heat", {"iel.type": "heat"}, False, None)
        plain = db.ensure_cell(sid, "plain", {"iel.type": "none"}, True, None)
        cfg = {"optimizer": {"lr": 0.00125}, "iel": {"type": "heat", "dt": 1e-5}, "data": {"sizes": [8, 8]}}
        ok = db.ensure_trial(sid, heat, 0, "1" * 64, cfg, 0, "v")
        db.mark_running(ok.id, attempt=1, mlflow_run_id="r1", host="h", device="cpu", optuna_trial_number=5)
        db.finish_trial(ok.id, TrialState.COMPLETE, final_metrics={"dice": 0.123456789012345, "miou": 0.5})
        bad = db.ensure_trial(
            sid, plain, 1, "2" * 64, {"optimizer": {"lr": 0.5}, "iel": {"type": "none"}}, 1, "v"
        )
        db.mark_running(bad.id, attempt=1, mlflow_run_id="r2", host="h", device="cpu", optuna_trial_number=6)
        db.finish_trial(
            bad.id, TrialState.FAILED, error="loss is nan", failure_kind="diverged", failed_epoch=3
        )


@pytest.fixture
def db_args(tmp_path: Path) -> list[str]:
    url = f"sqlite:///{tmp_path}/results.db"
    _fill(url)
    return ["--db", url, "--mlflow", f"sqlite:///{tmp_path}/mlflow.db"]


def test_flatten_nested_config_and_lists() -> None:
    assert flatten({"iel": {"dt": 0.1, "k": {"a": 1}}, "sizes": [1, 2], "x": None}) == {
        "iel.dt": 0.1,
        "iel.k.a": 1,
        "sizes": "[1, 2]",
        "x": None,
    }


def test_csv_to_stdout_has_one_row_per_trial_with_params_and_config(
    db_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["export", "s", *db_args]) == 0
    out, err = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["cell_key"] for r in rows] == ["heat", "plain"]
    heat, plain = rows
    assert (heat["param.optimizer.lr"], heat["param.iel.dt"], heat["config.iel.dt"]) == (
        "0.00125",
        "1e-05",
        "1e-05",
    )
    assert float(heat["metric.dice"]) == 0.123456789012345  # full precision
    assert (heat["config.data.sizes"], heat["optuna_trial_number"], heat["state"]) == (
        "[8, 8]",
        "5",
        "COMPLETE",
    )
    assert (plain["param.iel.dt"], plain["error"], plain["failed_epoch"], plain["failure_kind"]) == (
        "",
        "loss is nan",
        "3",
        "diverged",
    )
    header = out.splitlines()[0].split(",")
    assert header.index("param.iel.dt") < header.index("param.optimizer.lr") < header.index("metric.dice")
    assert header[:3] == ["trial_id", "study", "cell_key"]


def test_csv_and_parquet_files_hold_the_same_table(db_args: list[str], tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    assert cli.main(["export", "s", *db_args, "--out", str(tmp_path / "t.csv")]) == 0
    assert (
        cli.main(["export", "s", *db_args, "--format", "parquet", "--out", str(tmp_path / "t.parquet")]) == 0
    )
    rows = list(csv.DictReader((tmp_path / "t.csv").open(encoding="utf-8")))
    table = pq.read_table(tmp_path / "t.parquet")
    assert table.column_names == list(rows[0])
    data = table.to_pylist()
    assert [r["trial_id"] for r in data] == [int(r["trial_id"]) for r in rows]
    assert str(table.schema.field("metric.dice").type) == "double"
    assert str(table.schema.field("failed_epoch").type) == "int64"
    assert str(table.schema.field("is_baseline").type) == "bool"
    assert data[0]["param.iel.dt"] == 1e-5 and data[1]["param.iel.dt"] is None
    assert data[0]["metric.dice"] == 0.123456789012345 and data[1]["error"] == "loss is nan"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["nope"], "no study named 'nope'"),
        (["s", "--format", "parquet"], "give --out FILE"),
        (["s", "--out", "/no/such/folder/t.csv"], "does not exist"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    db_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    before = sorted(p.name for p in tmp_path.iterdir())
    assert cli.main(["export", *extra, *db_args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and message in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_missing_pyarrow_names_the_install_command(
    db_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` raise ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    out_file = tmp_path / "t.parquet"
    assert cli.main(["export", "s", *db_args, "--format", "parquet", "--out", str(out_file)]) == 2
    err = capsys.readouterr().err
    assert "pip install pyarrow" in err and not out_file.exists()


def test_unknown_format_is_refused_by_the_parser(
    db_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["export", "s", *db_args, "--format", "xlsx"])
    assert e.value.code == 2 and "invalid choice: 'xlsx'" in capsys.readouterr().err


def test_export_table_of_no_trials_has_only_record_columns() -> None:
    table = export_table([], SPEC)
    assert table.rows == () and table.columns[0] == "trial_id" and not any("." in c for c in table.columns)
