"""Engines for the results database: URL handling, connection set-up, error translation and retries.

* SQLite (the default): the parent folder is created, WAL journal mode (readers never block the
  writer), a 30 s busy timeout, foreign keys on, and real transactions (SQLAlchemy emits ``BEGIN``).
  A file on a read-only home is opened read-only (``mode=ro``, or ``immutable=1`` where WAL cannot work).
* PostgreSQL (shared use): driver ``psycopg`` (v3); ``postgresql://`` URLs are rewritten to
  ``postgresql+psycopg://``; connections are pinged before use, so a restarted server is survived.

Passwords never appear in messages or logs: every URL shown goes through :func:`redact_url`.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine, make_url

from ielcore.errors import IELError

logger = logging.getLogger("orchestrator.db")

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_S = 30.0
PG_CONNECT_TIMEOUT_S = 10
DEFAULT_RETRY_ATTEMPTS = 6
DEFAULT_RETRY_BACKOFF_S = 0.5
MAX_RETRY_DELAY_S = 10.0

_FIX_URL = "check --db / $IEL_DB_URL"


class DatabaseUnavailable(IELError):
    """The results database cannot be reached or opened; the message names the (redacted) URL,
    the cause and the fix."""

    def __init__(self, url: str, cause: str, fix: str) -> None:
        self.url = url
        self.cause = cause
        self.fix = fix
        super().__init__(f"Cannot use the results database {url}: {cause}. Fix: {fix}.")


def normalize_url(url: str) -> str:
    """Canonical SQLAlchemy URL: ``postgres(ql)://`` gets the ``+psycopg`` driver; a bare file path
    (no ``://``) becomes ``sqlite:///PATH``."""
    if "://" not in url:
        return f"sqlite:///{url}"
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def redact_url(url: str | URL) -> str:
    """The URL with its password replaced by ``***`` (also for strings SQLAlchemy cannot parse)."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(normalize_url(url)).render_as_string(hide_password=True)
    except sa_exc.ArgumentError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL, or None for an in-memory database."""
    db = url.database
    if not db or db == ":memory:" or db.startswith("file::memory:"):
        return None
    return Path(db)


def sqlite_is_readonly(path: Path) -> bool:
    """True when the SQLite file exists but it or its folder cannot be written (a read-only home or mount):
    such a file is opened read-only, without WAL set-up or migrations, so reading commands still work."""
    p = path.expanduser()
    return p.exists() and not (os.access(p, os.W_OK) and os.access(p.parent, os.W_OK))


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine for ``url`` (see the module docstring for the per-backend settings)."""
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() == "sqlite":
        return _make_sqlite_engine(parsed, echo=echo)
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "echo": echo}
    if parsed.get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": PG_CONNECT_TIMEOUT_S}
    return create_engine(parsed, **kwargs)


def _make_sqlite_engine(url: URL, *, echo: bool) -> Engine:
    path = sqlite_path(url)
    if path is not None:
        try:
            path.expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DatabaseUnavailable(
                redact_url(url),
                f"cannot create the folder {str(path.parent)!r} for the SQLite file ({e.strerror or e})",
                f"choose a writable path; {_FIX_URL}",
            ) from None
    readonly = path is not None and sqlite_is_readonly(path)
    if readonly:
        from orchestrator.db.readonly import open_sqlite_readonly

        assert path is not None
        engine = create_engine(
            url, echo=echo, creator=lambda: open_sqlite_readonly(path, SQLITE_BUSY_TIMEOUT_S)
        )
    else:
        engine = create_engine(url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy's "begin" hook below emits BEGIN itself
        cur = dbapi_conn.cursor()
        if readonly:
            cur.execute("PRAGMA query_only=ON")
        elif path is not None:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


def _driver_message(error: BaseException) -> str:
    orig = getattr(error, "orig", None) or error
    return str(orig).strip()


def _scrub(text: str, url: URL) -> str:
    if url.password:
        text = text.replace(str(url.password), "***")
    return text


def describe_failure(url: URL, error: BaseException) -> tuple[str, str]:
    """Translate a connection error into ``(cause, fix)`` sentences (no password in either)."""
    msg = _driver_message(error)
    low = msg.lower()
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    if "connection refused" in low:
        return (
            f"connection refused (no database server is listening at {where})",
            f"start the database server or correct the host/port; {_FIX_URL}",
        )
    if "password authentication failed" in low or "authentication failed" in low:
        return (
            f"authentication failed for user {url.username!r}",
            f"correct the user name and password; {_FIX_URL}",
        )
    if re.search(r'role ".*" does not exist', low):
        return (f"no such user {url.username!r} on the server", f"create the role or {_FIX_URL}")
    if re.search(r'database ".*" does not exist', low):
        return (
            f"no such database {url.database!r} on the server at {where}",
            f"create it (createdb {url.database}) or correct the database name; {_FIX_URL}",
        )
    if "could not translate host name" in low or "name or service not known" in low:
        return (f"unknown host {url.host!r}", f"correct the host name; {_FIX_URL}")
    if "timeout" in low or "timed out" in low:
        return (f"connection to {where} timed out", f"check that the server is up and reachable; {_FIX_URL}")
    if "file is not a database" in low or "malformed" in low or "not a database" in low:
        return (
            f"the SQLite file {url.database!r} is damaged or is not a database ({msg.splitlines()[0]})",
            "restore it from a backup, or move it aside (a new, empty results database is then created); "
            f"{_FIX_URL}",
        )
    if "unable to open database file" in low or "readonly database" in low:
        return (
            f"cannot open or write the SQLite file {url.database!r}",
            f"make sure its folder exists and is writable, or choose another path; {_FIX_URL}",
        )
    first = _scrub(msg.splitlines()[0] if msg else type(error).__name__, url)
    return (first, f"check that the database is running and reachable; {_FIX_URL}")


def database_unavailable(url: URL, error: BaseException) -> DatabaseUnavailable:
    """Build the :class:`DatabaseUnavailable` for a failed connection or write to ``url``."""
    cause, fix = describe_failure(url, error)
    return DatabaseUnavailable(redact_url(url), cause, fix)


def check_reachable(engine: Engine) -> None:
    """Open a connection and run ``SELECT 1``; raise :class:`DatabaseUnavailable` if that fails."""
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa_exc.DBAPIError as e:
        raise database_unavailable(engine.url, e) from None


def is_transient(error: BaseException) -> bool:
    """True for errors worth retrying: a lost or refused connection, a locked SQLite file, a
    serialization failure."""
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    if not isinstance(error, sa_exc.OperationalError):
        return False
    orig = error.orig
    if type(orig).__module__.startswith("sqlite3"):
        low = str(orig).lower()
        return any(s in low for s in ("locked", "busy", "disk i/o", "unable to open"))
    return True


def with_retry(
    fn: Callable[[], T],
    *,
    attempts: int = DEFAULT_RETRY_ATTEMPTS,
    backoff: float = DEFAULT_RETRY_BACKOFF_S,
    on_retry: Callable[[int, BaseException], None] | None = None,
) -> T:
    """Call ``fn()``; on a transient database error (see :func:`is_transient`) call it again after
    ``backoff * 2**k`` seconds (at most :data:`MAX_RETRY_DELAY_S`), up to ``attempts`` calls in all.

    ``fn`` must be one whole transaction (``with engine.begin(): ...``) so a failed attempt leaves
    nothing behind.  ``on_retry(k, error)`` is called before the k-th retry.  The last error is re-raised.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, but got {attempts=}")
    for k in range(1, attempts + 1):
        try:
            return fn()
        except sa_exc.DBAPIError as e:
            if k == attempts or not is_transient(e):
                raise
            delay = min(backoff * 2 ** (k - 1), MAX_RETRY_DELAY_S)
            logger.warning(
                "database operation failed (%s); retry %d/%d in %.2f s",
                _driver_message(e).splitlines()[0] if _driver_message(e) else type(e).__name__,
                k,
                attempts - 1,
                delay,
            )
            if on_retry is not None:
                on_retry(k, e)
            time.sleep(delay)
    raise AssertionError("unreachable")


# ``iel query`` lives in its own module; these names stay importable from here.
from orchestrator.db.readonly import (  # noqa: E402
    QueryError,
    QueryRefused,
    QueryResult,
    QueryTimeout,
    readonly_query,
    run_readonly_query,
)

__all__ = [
    "DatabaseUnavailable",
    "QueryError",
    "QueryRefused",
    "QueryResult",
    "QueryTimeout",
    "check_reachable",
    "database_unavailable",
    "describe_failure",
    "is_transient",
    "make_engine",
    "normalize_url",
    "readonly_query",
    "redact_url",
    "run_readonly_query",
    "sqlite_path",
    "with_retry",
]
