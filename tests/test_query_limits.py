"""``iel query`` is bounded: a statement timeout, a row cap, a value-size and a memory limit, on SQLite and
PostgreSQL; each stop exits 2 (a cut exits 0 with a note) with a message naming the flag that raises it, and
leaves the database unchanged.  Numbers are shown at full precision; ``PRAGMA table_info(x)`` is allowed."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from orchestrator import cli
from orchestrator.db import ResultsDB
from orchestrator.settings import Settings

CROSS_JOIN = (
    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 1000000) "
    "SELECT count(*) FROM n a, n b"
)
ENDLESS_MAX = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"
ENDLESS_ROWS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c"


def _dump(path: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


@pytest.fixture
def home(iel_home: Path) -> Path:
    assert cli.main(["db", "upgrade", "--home", str(iel_home)]) == 0
    db = ResultsDB(Settings.resolve(home=str(iel_home)).db_url)
    db.ensure_study("kept", "a study that must survive", {"name": "kept"})
    db.close()
    return iel_home


def _query(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(["query", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("sql", [CROSS_JOIN, ENDLESS_MAX], ids=["cross_join", "endless_recursive_cte"])
def test_sqlite_timeout_stops_the_query(home: Path, capsys: pytest.CaptureFixture[str], sql: str) -> None:
    before = _dump(home / "iel.db")
    code, out, err = _query(capsys, sql, "--home", str(home), "--timeout", "0.5")
    assert code == 2 and out == ""
    assert "query stopped after 0.5 s" in err and "--timeout" in err and "Traceback" not in err
    assert _dump(home / "iel.db") == before


def test_sqlite_row_cap_cuts_an_endless_result(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _query(capsys, ENDLESS_ROWS, "--home", str(home), "--max-rows", "5", "--format", "csv")
    assert code == 0
    assert out.splitlines() == ["x", "1", "2", "3", "4", "5"]
    assert "showing the first 5 rows" in err and "--max-rows" in err
    # the default cap is 10,000 rows
    code, out, err = _query(capsys, ENDLESS_ROWS, "--home", str(home), "--format", "csv")
    assert code == 0 and out.splitlines()[1:] == [str(i) for i in range(1, 10_001)]
    assert "showing the first 10000 rows" in err
    # no note when nothing was cut
    code, out, err = _query(capsys, "SELECT 1 AS one", "--home", str(home), "--max-rows", "1")
    assert code == 0 and err == ""


@pytest.mark.parametrize("sql", ["SELECT zeroblob(1e9)", "SELECT length(randomblob(1e9))"])
def test_sqlite_huge_values_are_refused(home: Path, capsys: pytest.CaptureFixture[str], sql: str) -> None:
    code, out, err = _query(capsys, sql, "--home", str(home))
    assert code == 2 and out == ""
    assert "too big" in err and "16 MB" in err and "Traceback" not in err


def test_sqlite_memory_limit_stops_a_huge_sort(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sql = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
        "SELECT x, length(b) FROM (SELECT x, randomblob(100000) AS b FROM c ORDER BY x DESC)"
    )
    before = _dump(home / "iel.db")
    code, _, err = _query(capsys, sql, "--home", str(home), "--max-rows", "1", "--timeout", "600")
    assert code == 2
    assert "needs more than 512 MB of memory" in err and "Traceback" not in err
    assert _dump(home / "iel.db") == before


def test_pragma_table_info_is_allowed_and_writes_are_not(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _query(capsys, "PRAGMA table_info(iel_studies)", "--home", str(home), "--format", "csv")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "cid,name,type,notnull,dflt_value,pk"
    assert {line.split(",")[1] for line in lines[1:]} >= {"id", "name", "description", "spec_json"}
    for sql in ("PRAGMA journal_mode = DELETE", "PRAGMA user_version = 3", "PRAGMA writable_schema = ON"):
        code, _, err = _query(capsys, sql, "--home", str(home))
        assert code == 2 and "query refused" in err, sql


def test_numbers_keep_full_precision(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sql = "SELECT 1e-5 AS small, 0.123456789012 AS long, 3 AS whole, NULL AS missing"
    code, out, _ = _query(capsys, sql, "--home", str(home))
    assert code == 0
    assert out.splitlines()[2].split() == ["1e-05", "0.123456789012", "3", "NULL"]
    code, out, _ = _query(capsys, sql, "--home", str(home), "--format", "markdown")
    assert out.splitlines()[2] == "| 1e-05 | 0.123456789012 | 3 | NULL |"
    code, out, _ = _query(capsys, sql, "--home", str(home), "--format", "md")  # the alias
    assert out.splitlines()[2] == "| 1e-05 | 0.123456789012 | 3 | NULL |"


@pytest.mark.parametrize(
    "flag", [["--timeout", "0"], ["--timeout", "-1"], ["--timeout", "nan"], ["--max-rows", "-1"]]
)
def test_bad_limits_exit_2(home: Path, capsys: pytest.CaptureFixture[str], flag: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["query", "SELECT 1", "--home", str(home), *flag])
    assert info.value.code == 2
    assert flag[0] in capsys.readouterr()[1]


# ------------------------------------------------------------------------------------------ PostgreSQL
@pytest.fixture
def pg_url(postgres_server: Any) -> str:
    url = str(postgres_server.create_database())
    db = ResultsDB(url)
    db.ensure_study("kept", "survives", {"name": "kept"})
    db.close()
    return url


def _pg_studies(url: str) -> list[tuple[Any, ...]]:
    db = ResultsDB(url, upgrade=False)
    try:
        with db.engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql("SELECT id, name, description FROM iel_studies")]
    finally:
        db.close()


@pytest.mark.postgres
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM generate_series(1, 100000000) a, generate_series(1, 100000000) b",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c",
    ],
    ids=["cross_join", "endless_recursive_cte"],
)
def test_postgres_timeout_stops_the_query(pg_url: str, capsys: pytest.CaptureFixture[str], sql: str) -> None:
    before = _pg_studies(pg_url)
    code, out, err = _query(capsys, sql, "--db", pg_url, "--timeout", "0.5")
    assert code == 2 and out == ""
    assert "query stopped after 0.5 s" in err and "--timeout" in err and "Traceback" not in err
    assert _pg_studies(pg_url) == before
    # the limit is local to each query's transaction: the next query runs under the default (30 s)
    code, out, _ = _query(capsys, "SHOW statement_timeout", "--db", pg_url, "--format", "csv")
    assert code == 0 and out.splitlines()[1] == "30s"


@pytest.mark.postgres
def test_postgres_row_cap_and_columns(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _query(capsys, ENDLESS_ROWS, "--db", pg_url, "--max-rows", "5", "--format", "csv")
    assert code == 0
    assert out.splitlines() == ["x", "1", "2", "3", "4", "5"]
    assert "showing the first 5 rows" in err
    code, out, _ = _query(capsys, "SELECT name, description FROM iel_studies WHERE false", "--db", pg_url)
    assert code == 0 and out.split() == ["name", "description", "----", "-----------"]
    code, out, _ = _query(capsys, "SELECT 1e-5::float8 AS small", "--db", pg_url, "--format", "csv")
    assert out.splitlines() == ["small", "1e-05"]
    code, _, err = _query(capsys, "SELECT 1; DELETE FROM iel_studies", "--db", pg_url)
    assert code == 2 and "only one statement" in err
    assert [r[1:] for r in _pg_studies(pg_url)] == [("kept", "survives")]
