"""A PostgreSQL server for the tests.

``$IEL_TEST_POSTGRES_URL`` (``postgresql://USER:PASSWORD@HOST:PORT/DB``, a role allowed to create
databases) is used when set.  Otherwise a throwaway cluster is created with the ``initdb``/``pg_ctl``
found under ``/usr/lib/postgresql/*/bin`` (or on ``PATH``) in a temporary folder, listening on a free
loopback port with password authentication, and removed at the end of the session.  As root the
server runs as the ``postgres`` user (``runuser``).  Without PostgreSQL binaries the tests are skipped,
except when ``$CI`` is set: then they fail, so they never vanish silently (``.ci/install-postgres.sh``
installs the server).

Fixtures (session scoped): ``postgres_server`` (a :class:`PostgresServer`; ``create_database()`` gives a
fresh database's URL) and ``postgres_url`` (URL of a database created for the session), made available
by ``tests/conftest.py`` (``from tests.postgres import *``).  The cluster is a process-wide singleton, so
importing the fixtures in several places still starts one server.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import itertools
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

__all__ = ["PostgresServer", "postgres_server", "postgres_url"]

ENV_URL = "IEL_TEST_POSTGRES_URL"
_counter = itertools.count()


class PostgresUnavailable(RuntimeError):
    pass


@dataclass
class PostgresServer:
    """A PostgreSQL server: ``url(db)`` builds URLs; a throwaway cluster can also ``stop()``/``start()``."""

    host: str
    port: int
    user: str
    password: str
    admin_db: str = "postgres"
    bindir: Path | None = None
    root: Path | None = None  # temp folder of a throwaway cluster (None for $IEL_TEST_POSTGRES_URL)
    created: list[str] = field(default_factory=list)

    @property
    def can_restart(self) -> bool:
        return self.root is not None

    @property
    def datadir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    def url(self, database: str, *, password: str | None = None) -> str:
        pw = self.password if password is None else password
        return f"postgresql+psycopg://{self.user}:{pw}@{self.host}:{self.port}/{database}"

    def _admin(self):  # -> psycopg.Connection
        import psycopg

        return psycopg.connect(
            host=self.host, port=self.port, user=self.user, password=self.password,
            dbname=self.admin_db, autocommit=True, connect_timeout=10,
        )  # fmt: skip

    def create_database(self, name: str | None = None) -> str:
        """Create a fresh database and return its URL."""
        name = name or f"iel_test_{os.getpid()}_{next(_counter)}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _pg_ctl(self, *args: str) -> None:
        assert self.bindir is not None
        _run_as_owner([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *args])

    def start(self) -> None:
        self._pg_ctl("-l", str(self.root / "server.log"), "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "-w", "-t", "60", "stop")

    def is_running(self) -> bool:
        try:
            self._pg_ctl("status")
        except subprocess.CalledProcessError:
            return False
        return True

    def shutdown(self) -> None:
        """Stop and delete a throwaway cluster; drop the databases made on an external server."""
        if self.root is None:
            for name in self.created:
                with contextlib.suppress(Exception):
                    self.drop_database(name)
            return
        if self.is_running():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _run_as_owner(cmd: list[str], cwd: Path | None = None) -> None:
    if _is_root():
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120, cwd=cwd or "/")


def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/N/bin`` with initdb and pg_ctl, else the folder of ``pg_ctl`` on PATH."""

    def version(p: str) -> float:
        try:
            return float(Path(p).parent.name)
        except ValueError:
            return -1.0

    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    found = shutil.which("pg_ctl")
    if found and (Path(found).parent / "initdb").exists():
        return Path(found).parent
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_throwaway_cluster() -> PostgresServer:
    bindir = find_bindir()
    if bindir is None:
        raise PostgresUnavailable(
            "no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin or on PATH; "
            f"run .ci/install-postgres.sh or set ${ENV_URL}"
        )
    if _is_root():
        try:
            subprocess.run(["id", "postgres"], check=True, capture_output=True)
        except subprocess.CalledProcessError:
            raise PostgresUnavailable(
                "running as root but there is no 'postgres' user to run the server"
            ) from None
    root = Path(tempfile.mkdtemp(prefix="iel-pg-"))
    password = secrets.token_hex(12)
    (root / "pw").write_text(password)
    if _is_root():
        shutil.chown(root, "postgres")
        shutil.chown(root / "pw", "postgres")
    server = PostgresServer("127.0.0.1", free_port(), "postgres", password, bindir=bindir, root=root)
    try:
        _run_as_owner(
            [str(bindir / "initdb"), "-D", str(server.datadir), "-U", "postgres", "-E", "UTF8", "--no-sync",
             "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={root / 'pw'}"]
        )  # fmt: skip
        settings = {
            "port": str(server.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{root}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "50",
        }
        with open(server.datadir / "postgresql.conf", "a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in settings.items())
        server.start()
    except subprocess.CalledProcessError as e:
        log = root / "server.log"
        detail = (e.stderr or "") + (log.read_text()[-2000:] if log.exists() else "")
        shutil.rmtree(root, ignore_errors=True)
        raise PostgresUnavailable(f"could not start a throwaway PostgreSQL cluster: {detail}") from None
    return server


def external_server(url: str) -> PostgresServer:
    u = make_url(url)
    return PostgresServer(
        host=u.host or "localhost", port=u.port or 5432, user=u.username or "postgres",
        password=u.password or "", admin_db=u.database or "postgres",
    )  # fmt: skip


_SERVER: PostgresServer | None = None
_FAILURE: str | None = None


def get_server() -> PostgresServer:
    """The session's server (started on first use); raises :class:`PostgresUnavailable`."""
    global _SERVER, _FAILURE
    if _SERVER is not None:
        return _SERVER
    if _FAILURE is not None:
        raise PostgresUnavailable(_FAILURE)
    try:
        url = os.environ.get(ENV_URL)
        _SERVER = external_server(url) if url else start_throwaway_cluster()
    except PostgresUnavailable as e:
        _FAILURE = str(e)
        raise
    atexit.register(_SERVER.shutdown)
    return _SERVER


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        server = get_server()
    except PostgresUnavailable as e:
        _unavailable(str(e))
    yield server
    server.shutdown()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database()
