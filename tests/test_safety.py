"""Safe defaults: safe YAML only, checkpoints loaded with ``weights_only=True``, ``iel query`` read-only,
UIs bound to 127.0.0.1, database passwords in no log, run or table, Ray's token authentication left on.

Each property is checked on behaviour (a crafted input is refused and changes nothing) and, where a
future edit could silently break it, also by scanning our source.
"""

from __future__ import annotations

import ast
import logging
import os
import re
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from orchestrator import cli
from orchestrator.db import ResultsDB
from orchestrator.settings import Settings
from tests.studyfiles import noop_study, write_study

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ielcore", "orchestrator", "workers")


def _sources(*tops: str) -> Iterator[tuple[Path, ast.Module]]:
    for top in tops:
        for path in sorted((ROOT / top).rglob("*.py")):
            yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _calls(tree: ast.Module, module: str, func: str) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == func
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == module
        ):
            yield node


# ------------------------------------------------------------------------------------------------ YAML
def test_yaml_object_tags_never_execute(
    tmp_path: Path, iel_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "pwned"
    payload = f'!!python/object/apply:os.system ["touch {marker}"]'
    study = tmp_path / "evil.yaml"
    study.write_text(f"version: 1\nname: evil\ndescription: {payload}\nbase: {{kind: noop}}\n")
    assert cli.main(["submit", str(study), "--home", str(iel_home)]) == 2
    _, err = capsys.readouterr()
    assert "not allowed" in err and "Traceback" not in err
    config = tmp_path / "evil-config.yaml"
    config.write_text(f"kind: noop\nepochs: {payload}\n")
    assert cli.main(["train", str(config), "--out", str(tmp_path / "out")]) == 2
    _, err = capsys.readouterr()
    assert "evil-config.yaml" in err and "Traceback" not in err
    assert not marker.exists()


def test_source_uses_safe_yaml_loading_only() -> None:
    unsafe = []
    for path, tree in _sources(*PACKAGES):
        for func in ("unsafe_load", "full_load", "unsafe_load_all", "full_load_all"):
            unsafe += [f"{path}:{c.lineno} yaml.{func}" for c in _calls(tree, "yaml", func)]
        for func in ("load", "load_all"):
            for call in _calls(tree, "yaml", func):
                loader = next((k.value for k in call.keywords if k.arg == "Loader"), None)
                name = ast.unparse(loader) if loader is not None else ""
                if "Safe" not in name:
                    unsafe.append(f"{path}:{call.lineno} yaml.{func}(Loader={name or 'missing'})")
    assert not unsafe, unsafe


# --------------------------------------------------------------------------------------- checkpoints
class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_checkpoints_load_with_weights_only(tmp_path: Path) -> None:
    calls = []
    for path, tree in _sources(*PACKAGES):
        for call in _calls(tree, "torch", "load"):
            wo = next((k.value for k in call.keywords if k.arg == "weights_only"), None)
            calls.append(
                (f"{path.relative_to(ROOT)}:{call.lineno}", ast.unparse(wo) if wo is not None else None)
            )
    assert calls, "no torch.load call found: the scan is broken"
    assert all(wo == "True" for _, wo in calls), calls

    import importlib

    load_checkpoint = None
    for module in ("ielcore.artifacts", "ielcore.train"):
        try:
            load_checkpoint = getattr(importlib.import_module(module), "load_checkpoint", None)
        except ImportError:
            continue
        if load_checkpoint is not None:
            break
    assert load_checkpoint is not None, "no load_checkpoint in ielcore.artifacts or ielcore.train"
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model": _Evil(str(marker))}, evil)
    with pytest.raises(Exception) as info:  # noqa: PT011 - torch raises UnpicklingError, maybe wrapped
        load_checkpoint(str(evil))
    assert (
        "weights_only" in str(info.value)
        or "Unsupported global" in str(info.value)
        or "WeightsUnpickler" in str(info.value)
    ), info.value
    assert not marker.exists()


# ------------------------------------------------------------------------------------------ iel query
WRITES = (
    "DELETE FROM iel_studies",
    "UPDATE iel_studies SET description = 'x'",
    "INSERT INTO iel_studies (name, description, spec_json, created_at, updated_at) VALUES ('x','','{}','t','t')",
    "DROP TABLE iel_trials",
    "CREATE TABLE evil (x INTEGER)",
    "SELECT 1; DELETE FROM iel_studies",
    "ATTACH DATABASE '{tmp}/other.db' AS other",
    "PRAGMA journal_mode = DELETE",
    "PRAGMA user_version = 7",
    "VACUUM",
    "REPLACE INTO iel_driver_locks (study_name, owner, acquired_at, heartbeat_at) VALUES ('s','o','t','t')",
)


def _dump(path: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(conn.iterdump()) + [str(conn.execute("PRAGMA user_version").fetchone())]
    finally:
        conn.close()


def test_query_is_read_only(tmp_path: Path, iel_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["db", "upgrade", "--home", str(iel_home)]) == 0
    settings = Settings.resolve(home=str(iel_home))
    db = ResultsDB(settings.db_url)
    db.ensure_study("kept", "a study that must survive", {"name": "kept"})
    db.close()
    before = _dump(iel_home / "iel.db")
    capsys.readouterr()
    for sql in WRITES:
        sql = sql.replace("{tmp}", str(tmp_path))
        code = cli.main(["query", sql, "--home", str(iel_home)])
        _, err = capsys.readouterr()
        assert code == 2, sql
        assert "error: query" in err and "Traceback" not in err, (sql, err)
    assert _dump(iel_home / "iel.db") == before
    assert not (tmp_path / "other.db").exists()
    assert (
        cli.main(
            ["query", "SELECT name, description FROM iel_studies", "--home", str(iel_home), "--format", "csv"]
        )
        == 0
    )
    out, _ = capsys.readouterr()
    assert "kept,a study that must survive" in out


@pytest.mark.postgres
def test_query_is_read_only_on_postgres(postgres_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    url = postgres_server.create_database()
    db = ResultsDB(url)
    db.ensure_study("kept", "survives", {"name": "kept"})
    db.close()
    for sql in (
        "DELETE FROM iel_studies",
        "UPDATE iel_studies SET description = 'x'",
        "DROP TABLE iel_trials",
        "WITH d AS (DELETE FROM iel_studies RETURNING id) SELECT * FROM d",
        "SELECT 1; DELETE FROM iel_studies",
        "SELECT set_config('default_transaction_read_only', 'off', false); DELETE FROM iel_studies",
        "CREATE TABLE evil (x int)",
    ):
        code = cli.main(["query", sql, "--db", url])
        _, err = capsys.readouterr()
        assert code == 2 and "error: query" in err and "Traceback" not in err, (sql, err)
        assert postgres_server.password not in err
    assert (
        cli.main(["query", "SELECT name, description FROM iel_studies", "--db", url, "--format", "csv"]) == 0
    )
    out, _ = capsys.readouterr()
    assert out.splitlines()[1:] == ["kept,survives"]
    assert (
        cli.main(
            [
                "query",
                "SELECT count(*) AS n FROM information_schema.tables WHERE table_name = 'evil'",
                "--db",
                url,
                "--format",
                "csv",
            ]
        )
        == 0
    )
    assert capsys.readouterr()[0].splitlines()[1:] == ["0"]


# ------------------------------------------------------------------------------------- bound to 127.0.0.1
def _listen_addresses(port: int) -> set[str]:
    """Local addresses listening on TCP ``port`` (IPv4 and IPv6), from /proc/net."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.read().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, port_hex = local.split(":")
                if state == "0A" and int(port_hex, 16) == port:
                    found.add(addr)
    return found


LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1 as /proc/net writes them


def test_user_interfaces_default_to_loopback() -> None:
    import inspect

    from orchestrator.ui import mlflow_server_command

    parser = cli.build_parser()
    assert parser.parse_args(["ui"]).host == "127.0.0.1"
    cmd = mlflow_server_command(Settings.resolve(home="/nonexistent"))
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    sub = next(a for a in parser._actions if a.dest == "command")
    if "optuna-dashboard" in sub.choices:  # type: ignore[attr-defined]
        assert parser.parse_args(["optuna-dashboard", "s"]).host == "127.0.0.1"
        from orchestrator.dashboards import make_dashboard_server, serve_optuna_dashboard

        for fn in (make_dashboard_server, serve_optuna_dashboard):
            assert inspect.signature(fn).parameters["host"].default == "127.0.0.1"


def test_optuna_dashboard_listens_on_loopback_only(tmp_path: Path) -> None:
    """The dashboard server built with its defaults accepts connections on 127.0.0.1 only."""
    import optuna

    dashboards = pytest.importorskip("orchestrator.dashboards")
    settings = Settings.resolve(home=str(tmp_path / "home"))
    settings.ensure_home()
    optuna.create_study(storage=settings.db_url, study_name="s::noise.rate=0.0")
    server = dashboards.make_dashboard_server(settings, "s", port=0)
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        addresses = _listen_addresses(port)
        assert addresses and addresses <= LOOPBACK, addresses
    finally:
        server.server_close()


@pytest.mark.usefixtures("ray_local")
def test_local_ray_has_no_public_dashboard_and_keeps_token_auth() -> None:
    import ray
    from ray._private.authentication.authentication_utils import is_token_auth_enabled

    node = ray._private.worker._global_node
    url = node.webui_url if node is not None else None
    assert not url or url.split(":")[0] in ("127.0.0.1", "localhost"), url
    assert os.environ.get("RAY_AUTH_MODE", "").lower() != "disabled"
    assert is_token_auth_enabled(), "Ray token authentication is off in the platform's local Ray"


def test_source_never_disables_ray_token_auth() -> None:
    """No code, script, Dockerfile or config of ours sets RAY_AUTH_MODE=disabled (prose may name it)."""
    pattern = re.compile(r"RAY_AUTH_MODE\W{0,6}disabled", re.IGNORECASE)
    skip_dirs = {".venv", ".git", "iel-runs", "node_modules", "__pycache__", ".ruff_cache", ".pytest_cache"}
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip_dirs and not d.endswith(".egg-info")]
        for name in files:
            path = Path(folder) / name
            if path.suffix in (".md", ".rst", ".txt", ".html") or path == Path(__file__).resolve():
                continue
            try:
                if path.stat().st_size > 2_000_000:
                    continue
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            rel = path.relative_to(ROOT)
            found += [f"{rel}:{text[: m.start()].count(chr(10)) + 1}" for m in pattern.finditer(text)]
    assert not found, f"RAY_AUTH_MODE=disabled set in: {found}"


# ------------------------------------------------------------------------------------------- passwords
@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
def test_database_password_appears_nowhere(
    tmp_path: Path,
    iel_home: Path,
    postgres_server: Any,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A study run with --db postgresql://user:PASSWORD@...: the password is in no captured output or
    log record, no file under IEL_HOME (MLflow store, artifacts), no row of any table (ours, Optuna's),
    no MLflow param or tag, and no Ray log of this session."""
    import psycopg
    from mlflow.tracking import MlflowClient

    caplog.set_level(logging.DEBUG)
    password = "SECRETPW" + secrets.token_hex(6)
    user, dbname = f"ieluser_{secrets.token_hex(3)}", f"ieldb_{secrets.token_hex(3)}"
    admin = postgres_server._admin()
    try:
        admin.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
        admin.execute(f"CREATE DATABASE {dbname} OWNER {user}")
    finally:
        admin.close()
    url = f"postgresql://{user}:{password}@{postgres_server.host}:{postgres_server.port}/{dbname}"
    doc = noop_study("secret", factors={"noise.rate": [0.0, 0.2]}, baseline={"noise.rate": 0.0}, seeds=1)
    path = write_study(tmp_path, doc)
    try:
        assert cli.main(["submit", str(path), "--home", str(iel_home), "--db", url]) == 0
        assert cli.main(["status", "secret", "--home", str(iel_home), "--db", url]) == 0
        assert cli.main(["results", "secret", "--home", str(iel_home), "--db", url]) == 0
        wrong = url.replace(password, password + "x")
        assert cli.main(["submit", str(path), "--home", str(iel_home), "--db", wrong]) == 2
        out, err = capfd.readouterr()
        assert "authentication failed" in err
        assert "***" in out  # the URL is shown, redacted
        places = {"stdout": out, "stderr": err, "log records": caplog.text}

        for file in sorted(iel_home.rglob("*")):  # MLflow store (+ WAL), artifacts folder
            if file.is_file():
                places[str(file)] = file.read_bytes().decode("latin-1")
        assert any("mlartifacts" in k for k in places), "no artifact was written: the check is empty"

        with psycopg.connect(url, connect_timeout=10) as conn:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                ).fetchall()
            ]
            assert "iel_trials" in tables and "trials" in tables  # ours and Optuna's
            for table in tables:
                rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()  # noqa: S608
                places[f"table {table}"] = repr(rows)

        client = MlflowClient(Settings.resolve(home=str(iel_home)).mlflow_uri)
        exp = client.get_experiment_by_name("iel/secret")
        for run in client.search_runs([exp.experiment_id], max_results=1000):
            places[f"run {run.info.run_id}"] = repr((run.data.params, run.data.tags, run.info))

        import ray

        logs = Path(ray._private.worker._global_node.get_logs_dir_path())
        for file in logs.rglob("*"):
            if file.is_file() and file.stat().st_size < 50_000_000:
                places[str(file)] = file.read_bytes().decode("latin-1")

        leaked = [where for where, text in places.items() if password in text]
        assert not leaked, f"the database password appears in: {leaked}"
        assert any(user in text for text in places.values())  # the search does see the URL's other parts
    finally:
        admin = postgres_server._admin()
        try:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            admin.execute(f"DROP ROLE IF EXISTS {user}")
        finally:
            admin.close()
