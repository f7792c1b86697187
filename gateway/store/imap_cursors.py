"""The IMAP pollers' cursors, one ``imap_cursor`` row per mailbox: the
folder's UIDVALIDITY, the highest UID committed to the spool, and when the
mailbox last succeeded or failed. SQLAlchemy Core, called from the pollers'
threads (``gateway.ingress.imap``); ``write_cursor`` runs inside the spool's
transaction, so the cursor and the spooled mail commit together."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, select, update

from gateway.store.db import connection, dialect_insert, read_connection
from gateway.store.models import ImapCursor

CURSOR = ImapCursor.__table__  # type: ignore[attr-defined]


def load_cursor(engine: Engine, key: str) -> tuple[int, int] | None:
    """(uidvalidity, last_uid) of a mailbox, or None before its first poll."""
    with read_connection(engine) as conn:
        row = conn.execute(
            select(CURSOR.c.uidvalidity, CURSOR.c.last_uid).where(CURSOR.c.mailbox == key)
        ).first()
    return (int(row[0]), int(row[1])) if row else None


def write_cursor(conn: Connection, key: str, values: dict[str, Any]) -> None:
    """Insert or update the cursor row of ``key`` with ``values``."""
    dialect = conn.dialect.name
    if dialect in ("postgresql", "sqlite"):
        ins = dialect_insert(dialect, CURSOR)
        conn.execute(
            ins.values(mailbox=key, **values).on_conflict_do_update(index_elements=["mailbox"], set_=values)
        )
        return
    if not conn.execute(update(CURSOR).where(CURSOR.c.mailbox == key).values(**values)).rowcount:
        conn.execute(CURSOR.insert().values(mailbox=key, **values))


def record_status(engine: Engine, key: str, values: dict[str, Any]) -> None:
    """``write_cursor`` in a transaction of its own: a poll's success or
    error (``last_success_at``, ``last_error``, ``last_error_at``), and the
    cursor it reached."""
    with connection(engine) as conn:
        write_cursor(conn, key, values)
