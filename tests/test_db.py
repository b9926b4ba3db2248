"""Results database: one suite over SQLite and PostgreSQL (``db_url`` is parametrized over both)."""

from __future__ import annotations

import dataclasses
import json
import pickle
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from ielcore.errors import UnknownNameError
from orchestrator.db import (
    TRIAL_SUMMARY_COLUMNS,
    DatabaseUnavailable,
    DriverLocked,
    QueryError,
    QueryRefused,
    RecordNotFound,
    ResultsDB,
    TrialRecord,
    TrialState,
    make_engine,
    normalize_url,
    redact_url,
    with_retry,
)
from orchestrator.db.models import Base
from orchestrator.db.repository import alembic_config
from tests.postgres import PostgresServer, free_port

HEAD_REVISION = ScriptDirectory.from_config(alembic_config()).get_current_head()

OUR_TABLES = {
    "iel_studies",
    "iel_cells",
    "iel_trials",
    "iel_epoch_metrics",
    "iel_final_metrics",
    "iel_artifacts",
    "iel_driver_locks",
    "iel_alembic_version",
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/results.db"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


@pytest.fixture
def db(db_url: str):
    with ResultsDB(db_url) as rdb:
        yield rdb


def _h(i: int | str) -> str:
    return f"{i:0>64}"[-64:]


def _schema(url: str) -> tuple[set[str], set[str], list[str]]:
    engine = make_engine(url)
    try:
        insp = sa.inspect(engine)
        tables = set(insp.get_table_names())
        with engine.connect() as conn:
            versions = [r[0] for r in conn.exec_driver_sql("SELECT version_num FROM iel_alembic_version")]
        return tables, set(insp.get_view_names()), versions
    finally:
        engine.dispose()


def _run_trial(
    db: ResultsDB, sid: int, cid: int, key: str, state: TrialState, metrics: dict | None
) -> TrialRecord:
    tr = db.ensure_trial(
        sid, cid, seed=len(key), trial_hash=_h(key), config={"k": key}, search_index=None, code_version="v"
    )
    db.mark_running(tr.id, attempt=1, mlflow_run_id=f"run-{key}", host="h", device="cpu")
    kind = "error" if state is TrialState.FAILED else None
    db.finish_trial(tr.id, state, final_metrics=metrics, failure_kind=kind, duration_s=1.5)
    return db.get_trial(tr.id)


# -- schema and migrations --------------------------------------------------------------------------


def test_migration_creates_tables_view_and_version(db: ResultsDB, db_url: str) -> None:
    tables, views, versions = _schema(db_url)
    assert tables >= OUR_TABLES
    assert "iel_trial_summary" in views
    assert versions == [HEAD_REVISION]
    cols, rows = db.readonly_query("SELECT * FROM iel_trial_summary")
    assert cols == list(TRIAL_SUMMARY_COLUMNS) and rows == []


def test_upgrade_twice_is_a_noop(db: ResultsDB, db_url: str) -> None:
    sid = db.ensure_study("s", "", {"a": 1})
    before = _schema(db_url)
    db.upgrade()
    db.upgrade()
    with ResultsDB(db_url) as again:
        assert again.study("s").id == sid
    assert _schema(db_url) == before


def test_unknown_schema_revision_is_reported(db: ResultsDB, db_url: str) -> None:
    with db.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE iel_alembic_version SET version_num = '9999'")
    with pytest.raises(DatabaseUnavailable, match="schema cannot be upgraded .*9999"):
        ResultsDB(db_url)
    with ResultsDB(db_url, upgrade=False) as old:  # reading without upgrading still works
        assert old.studies() == []


def test_models_match_the_migration(db: ResultsDB) -> None:
    def ours(obj, name, type_, reflected, compare_to) -> bool:
        return type_ != "table" or bool(name and name.startswith("iel_") and name != "iel_alembic_version")

    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"include_object": ours, "compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []


@pytest.mark.parametrize("optuna_first", [True, False], ids=["optuna-first", "ours-first"])
def test_coexists_with_optuna_storage(db_url: str, optuna_first: bool) -> None:
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def use_optuna() -> None:
        storage = optuna.storages.RDBStorage(db_url)
        study = optuna.create_study(storage=storage, study_name="opt", load_if_exists=True)
        trial = study.ask()
        study.tell(trial, trial.suggest_float("x", 0, 1))
        storage.engine.dispose()

    if optuna_first:
        use_optuna()
    with ResultsDB(db_url) as db:
        db.ensure_study("s", "", {})
    if not optuna_first:
        use_optuna()
    with ResultsDB(db_url) as db:  # upgrade again with both present
        assert [s.name for s in db.studies()] == ["s"]
    tables, views, versions = _schema(db_url)
    assert OUR_TABLES | {"studies", "trials", "alembic_version"} <= tables
    assert versions == [HEAD_REVISION] and "iel_trial_summary" in views
    storage = optuna.storages.RDBStorage(db_url)
    assert len(optuna.load_study(study_name="opt", storage=storage).trials) == 1
    storage.engine.dispose()


def test_sqlite_engine_settings(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/deep/er/x.db")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    engine.dispose()
    assert (tmp_path / "deep" / "er" / "x.db").exists()


# -- round trips ------------------------------------------------------------------------------------


def test_study_and_cell_round_trip(db: ResultsDB) -> None:
    sid = db.ensure_study("s", "first", {"a": 1})
    assert db.ensure_study("s", "second", {"a": 2}) == sid
    study = db.study("s")
    assert (study.description, study.spec, study.n_trials) == ("second", {"a": 2}, 0)
    assert study.updated_at >= study.created_at and study.created_at.tzinfo is not None
    assert db.study("missing") is None
    c1 = db.ensure_cell(sid, "a", {"iel.type": "heat", "noise.rate": 0.2}, True, "s/a")
    c2 = db.ensure_cell(sid, "b", {"iel.type": "none", "noise.rate": 0.2}, False, None)
    assert db.ensure_cell(sid, "a", {"iel.type": "heat", "noise.rate": 0.3}, False, None) == c1
    cells = db.cells("s")
    assert [(c.id, c.cell_key, c.is_baseline, c.optuna_study_name) for c in cells] == [
        (c1, "a", False, None),
        (c2, "b", False, None),
    ]
    assert cells[0].factors == {"iel.type": "heat", "noise.rate": 0.3}
    with pytest.raises(RecordNotFound, match="known studies: s"):
        db.cells("nope")


def test_a_new_trials_record_is_what_a_read_gives(db: ResultsDB) -> None:
    """ensure_trial builds a new row's record without reading it back (the cell's part is cached): equal to
    a read, also for a baseline cell and after the cell was updated; a cell of another study is refused."""
    sid = db.ensure_study("s", "", {})
    base = db.ensure_cell(sid, "base", {"x": 0}, True, None)
    first = db.ensure_trial(sid, base, 1, _h(90), {"a": (1, 2)}, None, "v")
    assert first == db.get_trial(first.id) and first.is_baseline and first.config == {"a": [1, 2]}
    db.ensure_cell(sid, "base", {"x": 0, "y": 2}, False, None)
    second = db.ensure_trial(sid, base, 2, _h(91), {}, None, "v")
    assert second == db.get_trial(second.id) and not second.is_baseline and second.factors["y"] == 2
    with pytest.raises(ValueError, match="does not belong to study"):
        db.ensure_trial(db.ensure_study("other", "", {}), base, 1, _h(92), {}, None, "v")


def test_trial_life_cycle_round_trip(db: ResultsDB) -> None:
    sid = db.ensure_study("s", "", {})
    cid = db.ensure_cell(sid, "c", {"x": 1}, False, None)
    config = {"model": {"name": "unet", "width": 8}, "seed": 3}
    tr = db.ensure_trial(sid, cid, 3, _h(1), config, 7, "abc123")
    assert tr == db.get_trial(tr.id)  # the new row's record, built without a read, is what a read gives
    assert (tr.state, tr.attempts, tr.search_index, tr.config, tr.factors) == (
        TrialState.PENDING,
        0,
        7,
        config,
        {"x": 1},
    )
    assert (tr.study_name, tr.cell_key, tr.code_version, tr.final_metrics, tr.reused) == (
        "s",
        "c",
        "abc123",
        {},
        False,
    )
    assert db.ensure_trial(sid, cid, 3, _h(1), config, 7, "other") == tr
    assert pickle.loads(pickle.dumps(tr)) == tr
    with pytest.raises(dataclasses.FrozenInstanceError):
        tr.state = TrialState.RUNNING  # type: ignore[misc]

    returned = db.mark_running(
        tr.id,
        record=tr,  # the record as the driver last read it: returned updated, without a re-read
        attempt=1,
        mlflow_run_id="r1",
        host="n1",
        device="cuda:0",
        optuna_study_name="o",
        optuna_trial_number=4,
    )
    running = db.get_trial(tr.id)
    assert returned == running
    assert (running.state, running.attempts, running.mlflow_run_id, running.host, running.device) == (
        TrialState.RUNNING, 1, "r1", "n1", "cuda:0",
    )  # fmt: skip
    assert (running.optuna_study_name, running.optuna_trial_number) == ("o", 4)
    assert running.started_at is not None and [t.id for t in db.stale_running("s")] == [tr.id]

    db.add_epoch_metrics(tr.id, [(0, "loss", 1.0), (0, "dice", 0.1), (1, "loss", 0.7)])
    db.add_epoch_metrics(tr.id, [(1, "loss", 0.5), (1, "dice", 0.4), (2, "loss", float("nan"))])
    assert db.epoch_metrics(tr.id) == [
        (0, "dice", 0.1),
        (0, "loss", 1.0),
        (1, "dice", 0.4),
        (1, "loss", 0.5),
        (2, "loss", None),
    ]

    db.finish_trial(
        tr.id,
        TrialState.FAILED,
        error="boom",
        failure_kind="diverged",
        failed_epoch=2,
        artifacts={"log": "file:///l"},
    )
    failed = db.get_trial(tr.id)
    assert (failed.state, failed.error, failed.failure_kind, failed.failed_epoch) == (
        TrialState.FAILED,
        "boom",
        "diverged",
        2,
    )
    assert (
        failed.duration_s is not None and failed.duration_s >= 0 and failed.finished_at >= failed.started_at
    )
    assert db.stale_running("s") == []

    db.mark_running(tr.id, attempt=2, mlflow_run_id="r2", host="n1", device="cpu")
    db.finish_trial(tr.id, TrialState.COMPLETE, final_metrics={"dice": 0.9, "miou": 0.8}, duration_s=12.5)
    done = db.get_trial(tr.id)
    assert (done.state, done.attempts, done.duration_s, done.final_metrics) == (
        TrialState.COMPLETE,
        2,
        12.5,
        {"dice": 0.9, "miou": 0.8},
    )
    db.finish_trial(tr.id, TrialState.COMPLETE, final_metrics={"dice": 0.95})
    assert db.get_trial(tr.id).final_metrics == {"dice": 0.95}
    assert db.trials("s", [TrialState.COMPLETE]) == [db.get_trial(tr.id)]
    assert db.trials("s", [TrialState.FAILED, TrialState.PENDING]) == []


def test_invalid_arguments_are_rejected(db: ResultsDB) -> None:
    sid = db.ensure_study("s", "", {})
    other = db.ensure_study("t", "", {})
    cid = db.ensure_cell(sid, "c", {}, False, None)
    tr = db.ensure_trial(sid, cid, 0, _h(1), {}, None, "v")
    with pytest.raises(ValueError, match="COMPLETE, PRUNED or FAILED"):
        db.finish_trial(tr.id, TrialState.RUNNING)
    with pytest.raises(ValueError, match="valid kinds are: error, diverged"):
        db.finish_trial(tr.id, TrialState.FAILED, failure_kind="meltdown")
    with pytest.raises(ValueError, match="does not belong to study"):
        db.ensure_trial(other, cid, 0, _h(2), {}, None, "v")
    with pytest.raises(ValueError, match="1..64"):
        db.ensure_trial(sid, cid, 0, "x" * 65, {}, None, "v")
    with pytest.raises(RecordNotFound, match="no trial with id 999"):
        db.get_trial(999)
    with pytest.raises(RecordNotFound):
        db.mark_running(999, attempt=1, mlflow_run_id=None, host="h", device="cpu")


def test_reuse_across_studies(db: ResultsDB) -> None:
    s1 = db.ensure_study("old", "", {})
    c1 = db.ensure_cell(s1, "c", {"x": 1}, False, None)
    orig = _run_trial(db, s1, c1, "k", TrialState.COMPLETE, {"dice": 0.7, "val_loss": 0.2})
    db.add_epoch_metrics(orig.id, [(0, "loss", 1.0), (1, "loss", 0.5)])
    db.finish_trial(
        orig.id,
        TrialState.COMPLETE,
        final_metrics={"dice": 0.7, "val_loss": 0.2},
        artifacts={"mask": "s3://m"},
    )
    assert db.find_complete_by_hash(_h("k")).id == orig.id
    assert db.find_complete_by_hash(_h("k"), exclude_study_id=s1) is None
    assert db.find_complete_by_hash(_h("zz")) is None

    s2 = db.ensure_study("new", "", {})
    c2 = db.ensure_cell(s2, "c", {"x": 1}, False, None)
    copy = db.ensure_trial(s2, c2, 0, _h("k"), {"k": "k"}, None, "v")
    db.mark_reused(copy.id, db.find_complete_by_hash(_h("k"), exclude_study_id=s2))
    got = db.get_trial(copy.id)
    assert (got.state, got.reused_from_id, got.reused, got.final_metrics) == (
        TrialState.COMPLETE,
        orig.id,
        True,
        orig.final_metrics,
    )
    assert db.epoch_metrics(copy.id) == db.epoch_metrics(orig.id) == [(0, "loss", 1.0), (1, "loss", 0.5)]
    assert db.status_counts("new") == {
        "PENDING": 0,
        "RUNNING": 0,
        "COMPLETE": 1,
        "PRUNED": 0,
        "FAILED": 0,
        "reused": 1,
    }
    # a copy of a copy points at the original, and copies are never offered for reuse
    s3 = db.ensure_study("newer", "", {})
    c3 = db.ensure_cell(s3, "c", {"x": 1}, False, None)
    copy2 = db.ensure_trial(s3, c3, 0, _h("k"), {}, None, "v")
    db.mark_reused(copy2.id, got)
    assert db.get_trial(copy2.id).reused_from_id == orig.id
    assert db.find_complete_by_hash(_h("k"), exclude_study_id=s1) is None
    counts = {s.name: s.counts for s in db.studies()}
    assert [s.name for s in db.studies()] == ["new", "newer", "old"]
    assert counts["old"]["COMPLETE"] == 1 and counts["old"]["reused"] == 0 and counts["newer"]["reused"] == 1


# -- aggregation and the view -----------------------------------------------------------------------


def _random_study(db: ResultsDB, seed: int = 0) -> dict[str, list[float]]:
    """Cells over iel.type x noise.rate with 0..6 COMPLETE trials each, plus FAILED/PRUNED noise."""
    rng = np.random.default_rng(seed)
    sid = db.ensure_study("agg", "", {})
    expected: dict[str, list[float]] = {}
    n = 0
    for itype in ("none", "heat"):
        for rate in (0.0, 0.2, 0.4):
            key = f"{itype}-{rate}"
            cid = db.ensure_cell(
                sid, key, {"iel.type": itype, "noise.rate": rate}, itype == "none" and rate == 0.0, None
            )
            expected[key] = []
            for _ in range(int(rng.integers(0, 7)) if key != "heat-0.2" else 1):
                v = float(rng.random())
                _run_trial(db, sid, cid, f"t{n}", TrialState.COMPLETE, {"dice": v, "miou": v / 2})
                expected[key].append(v)
                n += 1
            _run_trial(db, sid, cid, f"t{n}", TrialState.FAILED, {"dice": 123.0})
            _run_trial(db, sid, cid, f"t{n + 1}", TrialState.PRUNED, {"dice": -5.0})
            n += 2
    return expected


def _check_stats(row: dict, values: list[float]) -> None:
    assert row["n"] == len(values)
    if not values:
        assert row["mean"] is row["std"] is row["min"] is row["max"] is None
        return
    assert row["mean"] == pytest.approx(np.mean(values), rel=1e-12, abs=1e-15)
    assert (row["min"], row["max"]) == (min(values), max(values))
    if len(values) < 2:
        assert row["std"] is None
    else:
        assert row["std"] == pytest.approx(np.std(values, ddof=1), rel=1e-10)


def test_aggregate_matches_numpy(db: ResultsDB) -> None:
    expected = _random_study(db)
    rows = db.aggregate("agg", "dice")
    assert [r["cell_key"] for r in rows] == list(expected)
    for row in rows:
        _check_stats(row, expected[row["cell_key"]])
        itype, rate = row["cell_key"].split("-")
        assert (row["iel.type"], row["noise.rate"], row["is_baseline"]) == (
            itype,
            float(rate),
            row["cell_key"] == "none-0.0",
        )

    by_rate = db.aggregate("agg", "dice", group_by=["noise.rate"])
    assert [r["noise.rate"] for r in by_rate] == [0.0, 0.2, 0.4]
    for row in by_rate:
        _check_stats(
            row, [v for k, vs in expected.items() if k.endswith(f"-{row['noise.rate']}") for v in vs]
        )
    miou = db.aggregate("agg", "miou", group_by=["iel.type", "noise.rate"])
    assert len(miou) == 6
    for row in miou:
        _check_stats(row, [v / 2 for v in expected[f"{row['iel.type']}-{row['noise.rate']}"]])
    assert all(r["n"] == 0 for r in db.aggregate("agg", "no_such_metric"))
    with pytest.raises(UnknownNameError, match="valid factors are: iel.type, noise.rate"):
        db.aggregate("agg", group_by=["iel.typo"])


def test_view_rows_match_trials(db: ResultsDB) -> None:
    _random_study(db, seed=1)
    trials = {t.id: t for t in db.trials("agg")}
    cols, rows = db.readonly_query("SELECT * FROM iel_trial_summary WHERE study = 'agg' ORDER BY trial_id")
    assert [r[0] for r in rows] == sorted(trials)
    for row in rows:
        r = dict(zip(cols, row))
        t = trials[r["trial_id"]]
        assert (r["cell_key"], json.loads(r["factors"]), bool(r["is_baseline"]), r["seed"]) == (
            t.cell_key,
            t.factors,
            t.is_baseline,
            t.seed,
        )
        assert (r["state"], r["failure_kind"], r["attempts"], r["reused"], r["trial_hash"]) == (
            t.state.value,
            t.failure_kind,
            t.attempts,
            0,
            t.trial_hash,
        )
        assert (r["mlflow_run_id"], r["duration_s"], r["dice"], r["miou"]) == (
            t.mlflow_run_id,
            t.duration_s,
            t.final_metrics.get("dice"),
            t.final_metrics.get("miou"),
        )
        assert r["pixel_acc"] is None and json.loads(r["metrics_json"]) == t.final_metrics
    assert db.readonly_query("SELECT * FROM iel_trial_summary ORDER BY trial_id", limit=3)[1] == rows[:3]


# -- read-only queries ------------------------------------------------------------------------------

WRITES = [
    "DELETE FROM iel_trials",
    "UPDATE iel_trials SET seed = 99",
    "INSERT INTO iel_driver_locks (study_name, owner, acquired_at, heartbeat_at) VALUES ('x', 'y', '2020-01-01', '2020-01-01')",
    "DROP TABLE iel_final_metrics",
    "DROP VIEW iel_trial_summary",
    "CREATE TABLE evil (a INTEGER)",
    "ALTER TABLE iel_trials ADD COLUMN evil INTEGER",
    "SELECT 1; DELETE FROM iel_trials",
    "COMMIT; DELETE FROM iel_trials",
    "SELECT 1; COMMIT; DROP TABLE iel_trials",
    "WITH x AS (SELECT 1) DELETE FROM iel_trials",
]
WRITES_BY_BACKEND = {
    "sqlite": ["PRAGMA journal_mode=DELETE", "ATTACH DATABASE 'other.db' AS other", "VACUUM", "REINDEX"],
    "postgresql": [
        "WITH d AS (DELETE FROM iel_trials RETURNING id) SELECT * FROM d",
        "SELECT * FROM iel_trials FOR UPDATE",
        "SELECT nextval('iel_trials_id_seq')",
        "DO $$ BEGIN DELETE FROM iel_trials; END $$",
    ],
}


def test_readonly_query_refuses_writes(db: ResultsDB) -> None:
    _random_study(db, seed=2)
    snapshot = db.readonly_query("SELECT * FROM iel_trial_summary ORDER BY trial_id")
    counts = db.status_counts("agg")
    for sql in WRITES + WRITES_BY_BACKEND[db.engine.dialect.name]:
        with pytest.raises(QueryRefused):
            db.readonly_query(sql)
    assert db.readonly_query("SELECT * FROM iel_trial_summary ORDER BY trial_id") == snapshot
    assert db.status_counts("agg") == counts
    tables = set(sa.inspect(db.engine).get_table_names())
    assert "evil" not in tables and tables >= OUR_TABLES
    # reads still work, including a literal % (no parameter parsing)
    cols, rows = db.readonly_query("SELECT COUNT(*) AS n FROM iel_trials WHERE trial_hash LIKE '%'")
    assert cols == ["n"] and rows == [(sum(counts[s.value] for s in TrialState),)]
    with pytest.raises(QueryError, match="no_such_table"):
        db.readonly_query("SELECT * FROM no_such_table")
    db.ensure_study("still-writable", "", {})


# -- driver lock ------------------------------------------------------------------------------------


def test_driver_lock(db: ResultsDB) -> None:
    db.acquire_driver_lock("s", "hostA:1")
    db.acquire_driver_lock("s", "hostA:1")  # re-entrant
    with pytest.raises(DriverLocked, match="hostA:1"):
        db.acquire_driver_lock("s", "hostB:2")
    db.acquire_driver_lock("other-study", "hostB:2")
    db.release_driver_lock("s", "hostB:2")  # not the owner: no effect
    with pytest.raises(DriverLocked):
        db.acquire_driver_lock("s", "hostB:2")
    db.release_driver_lock("s", "hostA:1")
    db.acquire_driver_lock("s", "hostB:2")
    db.heartbeat_driver_lock("s", "hostB:2")
    # B's driver dies: its last heartbeat is 2 minutes old, so A may take over
    past = datetime.now(UTC) - timedelta(seconds=120)
    db.heartbeat_driver_lock("s", "hostB:2", now=past)
    with pytest.raises(DriverLocked, match="hostB:2"):
        db.acquire_driver_lock("s", "hostA:1", stale_after_s=600)
    db.acquire_driver_lock("s", "hostA:1", stale_after_s=60)
    with pytest.raises(DriverLocked, match="lost the lock .* held by hostA:1"):
        db.heartbeat_driver_lock("s", "hostB:2")


# -- URLs, errors and retries -----------------------------------------------------------------------


def test_urls() -> None:
    assert normalize_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalize_url("postgres://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
    assert normalize_url("results/x.db") == "sqlite:///results/x.db"
    assert redact_url("postgresql://u:s%40cret@h:5432/db") == "postgresql+psycopg://u:***@h:5432/db"
    assert redact_url("mysql://u:secret@h/db") == "mysql://u:***@h/db"
    assert redact_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"


def test_unreachable_port_raises_database_unavailable() -> None:
    url = f"postgresql://iel:s3cret-pw@127.0.0.1:{free_port()}/results"
    with pytest.raises(DatabaseUnavailable) as info:
        ResultsDB(url)
    msg = str(info.value)
    assert "s3cret-pw" not in msg and "***" in msg
    assert "connection refused" in msg and "start the database server" in msg and "$IEL_DB_URL" in msg


def test_sqlite_uncreatable_folder(tmp_path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatabaseUnavailable, match="cannot create the folder"):
        ResultsDB(f"sqlite:///{tmp_path}/file/sub/results.db")


@pytest.mark.postgres
def test_wrong_password_and_missing_database(postgres_server: PostgresServer) -> None:
    db_url = postgres_server.create_database()
    name = db_url.rsplit("/", 1)[1]
    with pytest.raises(DatabaseUnavailable) as info:
        ResultsDB(postgres_server.url(name, password="wrong-pw-4711"))
    msg = str(info.value)
    assert (
        "authentication failed" in msg and "wrong-pw-4711" not in msg and postgres_server.password not in msg
    )
    with pytest.raises(DatabaseUnavailable) as info:
        ResultsDB(postgres_server.url("no_such_db_here"))
    assert "no such database 'no_such_db_here'" in str(info.value) and postgres_server.password not in str(
        info.value
    )


def test_with_retry_retries_only_transient_errors() -> None:
    calls: list[int] = []
    lost = sa.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise lost
        return "ok"

    seen: list[int] = []
    assert with_retry(flaky, attempts=3, backoff=0.0, on_retry=lambda k, e: seen.append(k)) == "ok"
    assert len(calls) == 3 and seen == [1, 2]
    calls.clear()
    with pytest.raises(sa.exc.OperationalError):
        with_retry(flaky, attempts=2, backoff=0.0)
    assert len(calls) == 2
    integrity = sa.exc.IntegrityError("INSERT", {}, Exception("duplicate key"))

    def bad() -> None:
        calls.append(1)
        raise integrity

    calls.clear()
    with pytest.raises(sa.exc.IntegrityError):
        with_retry(bad, attempts=5, backoff=0.0)
    assert len(calls) == 1


@pytest.mark.postgres
def test_write_survives_postgres_restart(postgres_server: PostgresServer) -> None:
    if not postgres_server.can_restart:
        pytest.skip("$IEL_TEST_POSTGRES_URL server cannot be restarted by the tests")
    retries: list[int] = []

    def restart_on_first_retry(k: int, error: BaseException) -> None:
        retries.append(k)
        if k == 1:
            postgres_server.start()

    db = ResultsDB(postgres_server.create_database(), retry_backoff_s=0.01, on_retry=restart_on_first_retry)
    try:
        sid = db.ensure_study("s", "", {})
        postgres_server.stop()  # restarted while idle: stale pooled connections are replaced
        postgres_server.start()
        db.ensure_cell(sid, "a", {}, False, None)
        assert retries == []
        postgres_server.stop()  # down during the write: the first retry brings it back
        db.ensure_cell(sid, "b", {}, False, None)
        assert retries == [1]
        assert [c.cell_key for c in db.cells("s")] == ["a", "b"]
        db.retry_attempts, db.on_retry = 2, None
        postgres_server.stop()  # stays down: retries run out
        with pytest.raises(DatabaseUnavailable, match="connection refused") as info:
            db.ensure_cell(sid, "c", {}, False, None)
        assert postgres_server.password not in str(info.value)
    finally:
        if not postgres_server.is_running():
            postgres_server.start()
        db.close()
