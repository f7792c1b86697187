"""Engine and transactions. SQLite runs in WAL mode with durable commits
(``synchronous=FULL``), a busy timeout and write transactions that take the
write lock up front (``BEGIN IMMEDIATE``) so two writers never deadlock on a
lock upgrade. PostgreSQL needs none of that. Database trouble that may pass
is turned into ``TemporaryFailure`` here, once, for every caller."""

from __future__ import annotations

import contextlib
import errno
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session

from gateway.domain import TemporaryFailure

READ_ONLY = "gateway_read_only"  # execution option: a transaction that only reads


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def sqlite_file(url: str) -> Path | None:
    """The file of a file-based SQLite URL, absolute (relative paths are
    relative to the current directory); None for anything else."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).expanduser().absolute()


def make_engine(url: str, busy_timeout_ms: int = 5000) -> Engine:
    """Create the engine; for a file-based SQLite, create its directory."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:":
            Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False},
            # Keep connections open: closing the last one checkpoints and
            # removes the WAL, which costs milliseconds every time.
            pool_size=8,
            max_overflow=8,
        )
        _install_sqlite_pragmas(engine, busy_timeout_ms)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def _install_sqlite_pragmas(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, emit BEGIN (pysqlite's implicit
        # transactions would defeat BEGIN IMMEDIATE).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        _set_wal(cur, busy_timeout_ms)
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    # SQLite has one writer at a time, and a writer that finds the lock taken
    # polls for it with growing sleeps (up to 100 ms each): under load an
    # unlucky thread lost that race for 0.6 s while others kept committing.
    # Threads of one process queue on a lock instead and are woken the moment
    # it is free; other processes still meet the busy handler.
    writer = threading.Lock()
    wait = busy_timeout_ms / 1000

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            # A WAL reader sees a snapshot and never waits for a writer, nor
            # makes one wait: metrics scrapes, CLI listings and the workers'
            # loading of claimed mail stay out of the listener's way.
            conn.exec_driver_sql("BEGIN")
            return
        # A lock not had within the busy timeout is left to SQLite's busy
        # handler (which then reports "locked"): never a hang.
        held = writer.acquire(timeout=wait)
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            if held:
                writer.release()
            raise
        conn.info["_gateway_writer"] = held

    def _on_end(conn: Any) -> None:
        if conn.info.pop("_gateway_writer", False):
            writer.release()

    event.listen(engine, "commit", _on_end)
    event.listen(engine, "rollback", _on_end)


def _set_wal(cur: Any, busy_timeout_ms: int) -> None:
    """Switch a database to WAL. On a fresh file several processes starting
    at once race for the switch, and SQLite reports "locked" for it without
    consulting the busy handler: retry within the busy timeout."""
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def is_transient(exc: BaseException) -> bool:
    """Database locked/busy, connection refused or lost, disk full."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
        return True
    if isinstance(exc, OperationalError):
        return True  # locked, busy, connection refused/lost, disk I/O, full
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


_CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock, serialization failure


def is_conflict(exc: BaseException | None) -> bool:
    """A transaction the database aborted because of a concurrent one (a
    PostgreSQL deadlock or serialization failure, SQLite busy): doing it
    again is the cure."""
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlstate", None) in _CONFLICT_SQLSTATES:
        return True
    return isinstance(exc, OperationalError) and "locked" in str(orig).lower()


@contextlib.contextmanager
def temporary_failures() -> Iterator[None]:
    """Turn database and disk trouble that may pass into TemporaryFailure
    (exit 75 / SMTP 451); everything else propagates unchanged."""
    try:
        yield
    except TemporaryFailure:
        raise
    except Exception as exc:
        if is_transient(exc):
            raise TemporaryFailure(_short_reason(exc)) from exc
        raise


@contextlib.contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One write transaction on an ORM session: commit on success, roll back
    on error."""
    with temporary_failures(), Session(engine, expire_on_commit=False) as session, session.begin():
        yield session


@contextlib.contextmanager
def connection(engine: Engine) -> Iterator[Connection]:
    """One write transaction on a Core connection (the pipeline's hot path)."""
    with temporary_failures(), engine.begin() as conn:
        yield conn


@contextlib.contextmanager
def reading(engine: Engine) -> Iterator[Session]:
    """A session for queries only (CLI listings, status, metrics). On
    SQLite it begins a plain (deferred) transaction: it reads a snapshot
    without taking the write lock. Not for writes: a deferred transaction
    that starts writing can fail with "database is locked" at once."""
    bind = engine.execution_options(**{READ_ONLY: True})
    with temporary_failures(), Session(bind, expire_on_commit=False) as session:
        yield session


@contextlib.contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """``reading`` for Core: a connection for queries only."""
    with temporary_failures(), engine.connect() as conn:
        yield conn.execution_options(**{READ_ONLY: True})


def _short_reason(exc: BaseException) -> str:
    """A one-line reason without SQL or internal paths."""
    text = str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else type(exc).__name__
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        return "database is busy"
    if "full" in lowered or isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "disk full"
    if "connect" in lowered or "server closed" in lowered or "terminat" in lowered:
        return "database unavailable"
    return "database error"


def connect_failure(exc: BaseException) -> str | None:
    """Why the database could not be reached, in the driver's words but
    one line and without its advice (``connection refused``, ``failed to
    resolve host 'db.example'``); None when ``exc`` is something else. For
    the operator's command line only: SMTP clients get ``_short_reason``."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, OperationalError):
        cause = cause.__cause__
    if cause is None:
        return None
    text = str(getattr(cause, "orig", None) or cause).strip()
    first = text.splitlines()[0] if text else ""
    if not any(word in first.lower() for word in ("connect", "resolve", "timeout", "authentication")):
        return None
    reason = first.rsplit("failed: ", 1)[-1].strip()
    return reason[:1].lower() + reason[1:]


def dialect_insert(dialect_name: str, table: Any) -> Any:
    """The dialect's own ``INSERT`` (the one with ``on_conflict_do_nothing``).
    Its module is imported on first use: SQLite commands never load the
    PostgreSQL dialect (~50 ms at start)."""
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)
