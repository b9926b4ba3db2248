"""The view ``iel_trial_summary`` at revision 0002: searched parameters, error, failed epoch, Optuna number;
the upgrade from a 0001 database keeps its rows; the README lists exactly the view's columns."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from alembic import command

from orchestrator.db import TRIAL_SUMMARY_COLUMNS, ResultsDB, TrialState
from orchestrator.db.repository import alembic_config
from tests.postgres import PostgresServer

README = Path(__file__).resolve().parents[1] / "README.md"
README_HEADING = "### The view iel_trial_summary"

SPEC = {"name": "s", "search": {"params": {"optimizer.lr": {"type": "float"}, "iel.dt": {"type": "float"}}}}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/results.db"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


def _fill(db: ResultsDB) -> dict[str, int]:
    sid = db.ensure_study("s", "", SPEC)
    plain = db.ensure_study("plain", "", {"name": "plain"})
    cid = db.ensure_cell(sid, "a", {"iel.type": "heat"}, True, None)
    cplain = db.ensure_cell(plain, "b", {}, True, None)
    cfg = {"optimizer": {"lr": 0.00125, "name": "adam"}, "iel": {"type": "heat", "dt": 1e-5}}
    ok = db.ensure_trial(sid, cid, 0, "1" * 64, cfg, 3, "v")
    db.mark_running(ok.id, attempt=1, mlflow_run_id="r1", host="h", device="cpu", optuna_trial_number=7)
    db.finish_trial(ok.id, TrialState.COMPLETE, final_metrics={"dice": 0.5}, duration_s=1.0)
    bad = db.ensure_trial(sid, cid, 1, "2" * 64, {"optimizer": {"lr": 0.5}, "iel": {"type": "none"}}, 4, "v")
    db.mark_running(bad.id, attempt=1, mlflow_run_id="r2", host="h", device="cpu", optuna_trial_number=8)
    db.finish_trial(
        bad.id, TrialState.FAILED, error="loss is nan\nat epoch 3", failure_kind="diverged", failed_epoch=3
    )
    other = db.ensure_trial(plain, cplain, 0, "3" * 64, {"optimizer": {"lr": 0.1}}, None, "v")
    return {"ok": ok.id, "bad": bad.id, "other": other.id}


def test_view_has_params_error_failed_epoch_and_optuna_number(db_url: str) -> None:
    with ResultsDB(db_url) as db:
        ids = _fill(db)
        cols, rows = db.readonly_query("SELECT * FROM iel_trial_summary ORDER BY trial_id")
    assert cols == list(TRIAL_SUMMARY_COLUMNS)
    by_id = {r[0]: dict(zip(cols, r)) for r in rows}
    ok, bad, other = by_id[ids["ok"]], by_id[ids["bad"]], by_id[ids["other"]]
    assert json.loads(ok["params"]) == {"optimizer.lr": 0.00125, "iel.dt": 1e-5}
    assert (ok["optuna_trial_number"], ok["error"], ok["failed_epoch"]) == (7, None, None)
    assert json.loads(bad["params"]) == {"optimizer.lr": 0.5}  # iel.dt does not apply to iel.type none
    assert (bad["optuna_trial_number"], bad["error"], bad["failed_epoch"]) == (
        8,
        "loss is nan\nat epoch 3",
        3,
    )
    assert json.loads(other["params"]) == {} and other["optuna_trial_number"] is None


def test_upgrade_from_0001_keeps_rows_and_downgrade_restores_the_old_view(db_url: str) -> None:
    cfg = alembic_config(db_url)
    command.upgrade(cfg, "0001")
    with ResultsDB(db_url, upgrade=False) as db:
        old_cols, _ = db.readonly_query("SELECT * FROM iel_trial_summary")
    assert old_cols == list(TRIAL_SUMMARY_COLUMNS)[: old_cols.index("metrics_json") + 1]
    with ResultsDB(db_url) as db:  # upgrades to the head
        ids = _fill(db)
        cols, rows = db.readonly_query("SELECT trial_id, params FROM iel_trial_summary ORDER BY trial_id")
    assert len(rows) == 3 and json.loads(dict(rows)[ids["ok"]])["iel.dt"] == 1e-5
    command.downgrade(cfg, "0001")
    with ResultsDB(db_url, upgrade=False) as db:
        cols, rows = db.readonly_query("SELECT * FROM iel_trial_summary ORDER BY trial_id")
    assert cols == old_cols and len(rows) == 3


def readme_view_columns(text: str) -> list[str]:
    """The first column of the table under the README heading ``README_HEADING`` (names in backticks)."""
    _, found, rest = text.partition(README_HEADING + "\n")
    assert found, f"README.md has no heading {README_HEADING!r}"
    names: list[str] = []
    for line in rest.splitlines():
        if line.startswith("#"):
            break
        m = re.match(r"\|\s*`?([A-Za-z_][A-Za-z0-9_]*)`?\s*\|", line)
        if m and m.group(1) not in ("column", "Column"):
            names.append(m.group(1))
    return names


def test_readme_lists_exactly_the_view_columns() -> None:
    assert readme_view_columns(README.read_text(encoding="utf-8")) == list(TRIAL_SUMMARY_COLUMNS)


def test_readme_parser_reads_a_table() -> None:
    text = f"intro\n{README_HEADING}\n\n| column | meaning |\n|---|---|\n| `a` | x |\n| `b_1` | y |\n\n## next\n| `c` | z |\n"
    assert readme_view_columns(text) == ["a", "b_1"]
