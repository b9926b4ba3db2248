"""``iel query``: one read-only SQL statement, bounded in time, rows and memory.

* Read-only: SQLite opens a separate ``mode=ro`` connection (``immutable=1`` on a read-only folder, where a
  WAL database cannot make its shared-memory file) with ``PRAGMA query_only`` and an authorizer that allows
  reads and the schema pragmas only; PostgreSQL runs one statement (extended protocol) in a ``READ ONLY``
  transaction that is always rolled back, on a connection that is discarded afterwards.  A write raises
  :class:`QueryRefused` and changes nothing.
* Bounded: a statement timeout (SQLite: a progress handler; PostgreSQL: ``statement_timeout`` local to the
  transaction) raises :class:`QueryTimeout`; at most ``max_rows`` rows and :data:`MAX_RESULT_BYTES` of
  values are read (the rest is cut, and :attr:`QueryResult.cut` says so); SQLite values are limited to
  :data:`MAX_VALUE_BYTES` and its heap to :data:`MAX_HEAP_BYTES` (process-wide; sorts kept in memory, so no
  temp file grows on disk), so ``zeroblob(1e9)`` or an endless ``ORDER BY`` is refused instead of exhausting memory.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine

from ielcore.errors import IELError

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_ROWS = 10_000
MAX_VALUE_BYTES = 16_000_000
MAX_HEAP_BYTES = 512_000_000
MAX_RESULT_BYTES = 256_000_000
_PROGRESS_STEPS = 10_000  # SQLite VM instructions between two looks at the clock


class QueryError(IELError):
    """A read-only query failed (syntax error, unknown table, ...)."""


class QueryRefused(QueryError):
    """A read-only query tried to write, held more than one statement, or asked for too much memory;
    nothing was changed."""


class QueryTimeout(QueryError):
    """A read-only query ran longer than its timeout and was stopped; nothing was changed."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            f"query stopped after {timeout_s:g} s, its time limit (a cross join or an endless recursive CTE?); "
            "narrow the query, or raise the limit with --timeout SECONDS"
        )


@dataclass(frozen=True)
class QueryResult:
    """Column names, rows, and ``cut``: None, or a sentence saying why rows were left out."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    cut: str | None = None


_SQLITE_READ_ACTIONS = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_FUNCTION,
    getattr(sqlite3, "SQLITE_RECURSIVE", 33),
}
_SQLITE_READ_PRAGMAS = {
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "database_list",
    "function_list",
}


def _sqlite_authorizer(action: int, arg1: str | None, arg2: str | None, *_: Any) -> int:
    if action in _SQLITE_READ_ACTIONS:
        return sqlite3.SQLITE_OK
    # arg1 is the pragma's name, arg2 its argument: ``PRAGMA table_info(x)`` passes ("table_info", "x").
    if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() in _SQLITE_READ_PRAGMAS:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def run_readonly_query(
    engine: Engine,
    sql: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> QueryResult:
    """Run one read-only statement on ``engine``'s database within ``timeout_s`` seconds, reading at most
    ``max_rows`` rows (see the module docstring)."""
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, but got {timeout_s=}")
    if max_rows < 0:
        raise ValueError(f"max_rows must be >= 0, but got {max_rows=}")
    backend = engine.url.get_backend_name()
    if backend == "sqlite":
        return _sqlite(engine.url, sql, timeout_s, max_rows)
    if backend == "postgresql":
        return _postgres(engine, sql, timeout_s, max_rows)
    raise QueryError(f"read-only queries are not supported on {backend!r}; use SQLite or PostgreSQL")


def readonly_query(engine: Engine, sql: str, limit: int | None = None) -> tuple[list[str], list[tuple]]:
    """``(column names, rows)`` of :func:`run_readonly_query` with the default timeout; ``limit`` rows at
    most (default :data:`DEFAULT_MAX_ROWS`)."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, but got {limit=}")
    result = run_readonly_query(engine, sql, max_rows=DEFAULT_MAX_ROWS if limit is None else limit)
    return list(result.columns), list(result.rows)


def _value_bytes(row: tuple[Any, ...]) -> int:
    return sum(len(v) if isinstance(v, str | bytes | bytearray | memoryview) else 16 for v in row)


def _collect(rows: Any, max_rows: int) -> tuple[list[tuple[Any, ...]], str | None]:
    """Up to ``max_rows`` rows of the iterator ``rows`` (and :data:`MAX_RESULT_BYTES` of values)."""
    out: list[tuple[Any, ...]] = []
    size = 0
    for row in rows:
        if len(out) == max_rows:
            return out, f"showing the first {max_rows} rows; --max-rows N shows more"
        size += _value_bytes(tuple(row))
        if size > MAX_RESULT_BYTES:
            return out, (
                f"showing the first {len(out)} rows: the next would pass {MAX_RESULT_BYTES // 1_000_000} MB "
                "of values; select fewer or smaller columns"
            )
        out.append(tuple(row))
    return out, None


# ------------------------------------------------------------------------------------------- SQLite
def open_sqlite_readonly(path: Path, timeout_s: float = 30.0) -> sqlite3.Connection:
    """A read-only connection to the SQLite file ``path``: ``mode=ro``, or ``immutable=1`` when the file's
    folder is read-only (a WAL database there cannot create its ``-shm`` file, so ``mode=ro`` fails)."""
    import os

    base = path.expanduser().resolve().as_uri()
    if not path.exists():
        raise sqlite3.OperationalError(f"unable to open database file: {path} does not exist")
    conn = sqlite3.connect(base + "?mode=ro", uri=True, timeout=timeout_s)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        conn.close()
        if os.access(path.parent, os.W_OK):
            raise
    conn = sqlite3.connect(base + "?immutable=1", uri=True, timeout=timeout_s)
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return conn


def _sqlite(url: URL, sql: str, timeout_s: float, max_rows: int) -> QueryResult:
    from orchestrator.db import engine as _eng

    path = _eng.sqlite_path(url)
    if path is None:
        raise QueryError("read-only queries need a SQLite file, not an in-memory database")
    try:
        conn = open_sqlite_readonly(path, _eng.SQLITE_BUSY_TIMEOUT_S)
    except sqlite3.Error as e:
        raise _eng.database_unavailable(url, e) from None
    previous_heap = int(conn.execute("PRAGMA hard_heap_limit").fetchone()[0])
    deadline = time.monotonic() + timeout_s
    timed_out = False

    def progress() -> int:
        nonlocal timed_out
        timed_out = time.monotonic() > deadline
        return int(timed_out)

    try:
        conn.execute("PRAGMA query_only=ON")
        conn.execute("PRAGMA temp_store=MEMORY")  # sorts and temp tables count against the heap limit
        limit = MAX_HEAP_BYTES if previous_heap <= 0 else min(previous_heap, MAX_HEAP_BYTES)
        conn.execute(f"PRAGMA hard_heap_limit={limit}")
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
        conn.set_authorizer(_sqlite_authorizer)
        conn.set_progress_handler(progress, _PROGRESS_STEPS)
        try:
            cur = conn.execute(sql)
            rows, cut = _collect(cur, max_rows)
        except (sqlite3.Warning, sqlite3.ProgrammingError) as e:
            raise QueryRefused(f"query refused: {e} (only one statement is allowed)") from None
        except (sqlite3.DataError, sqlite3.DatabaseError, MemoryError) as e:
            raise _sqlite_error(e, timed_out, timeout_s) from None
        columns = tuple(d[0] for d in cur.description or ())
        return QueryResult(columns, tuple(rows), cut)
    finally:
        # The heap limit is process-wide and a pragma can only lower it: it stays (the CLI exits anyway).
        conn.set_progress_handler(None, 0)
        conn.rollback()
        conn.close()


def _sqlite_error(e: BaseException, timed_out: bool, timeout_s: float) -> QueryError:
    low = str(e).lower()
    if timed_out and "interrupt" in low:
        return QueryTimeout(timeout_s)
    if isinstance(e, MemoryError) or "out of memory" in low:
        return QueryRefused(
            f"query refused: it needs more than {MAX_HEAP_BYTES // 1_000_000} MB of memory (an endless "
            "recursive CTE or a huge sort?); narrow the query"
        )
    if "too big" in low:
        return QueryRefused(
            f"query refused: {e} (a single value may hold at most {MAX_VALUE_BYTES // 1_000_000} MB)"
        )
    if "authoriz" in low or "readonly" in low or "read-only" in low:
        return QueryRefused(f"query refused: {e} (only reads are allowed)")
    return QueryError(f"query failed: {e}")


# --------------------------------------------------------------------------------------- PostgreSQL
def _postgres(engine: Engine, sql: str, timeout_s: float, max_rows: int) -> QueryResult:
    import psycopg

    from orchestrator.db import engine as _eng

    try:
        conn = engine.connect()
    except sa_exc.DBAPIError as e:
        raise _eng.database_unavailable(engine.url, e) from None
    raw: Any = conn.connection.dbapi_connection
    try:
        raw.rollback()
        with raw.cursor() as cur:
            cur.execute("SET TRANSACTION READ ONLY")
            cur.execute("SELECT set_config('statement_timeout', %s, true)", (f"{int(timeout_s * 1000)}ms",))
            try:
                # stream(): one statement (extended protocol), rows read one by one, the rest cancelled.
                rows, cut = _collect(cur.stream(sql), max_rows)
                columns = tuple(d.name for d in cur.description or ()) or _pg_columns(raw, sql)
            except psycopg.Error as e:
                raise _pg_error(e, timeout_s) from None
        return QueryResult(columns, tuple(rows), cut)
    finally:
        try:
            raw.rollback()
        finally:
            conn.invalidate()  # never give a connection a user touched back to the pool
            conn.close()


def _pg_columns(raw: Any, sql: str) -> tuple[str, ...]:
    """The column names of a statement that returned no row (a stream tells them only with a row)."""
    pgconn = raw.pgconn
    res = pgconn.prepare(b"iel_query_columns", sql.encode())
    if res.status != 1:  # COMMAND_OK
        return ()
    desc = pgconn.describe_prepared(b"iel_query_columns")
    names = tuple((desc.fname(i) or b"").decode() for i in range(desc.nfields))
    pgconn.exec_(b"DEALLOCATE iel_query_columns")
    return names


def _pg_error(e: Any, timeout_s: float) -> QueryError:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if e.sqlstate == "57014":  # query_canceled: the statement timeout
        return QueryTimeout(timeout_s)
    if "multiple commands" in text:
        return QueryRefused(f"query refused: {text} (only one statement is allowed)")
    if e.sqlstate == "25006":
        return QueryRefused(f"query refused: {text} (only reads are allowed)")
    if "didn't produce a result" in text:
        return QueryError("query failed: the statement returns no rows; only queries are supported")
    return QueryError(f"query failed: {text}")
