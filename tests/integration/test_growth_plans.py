"""Statements that once walked a whole table, once per batch or per mail
sent (issue #17, ``bench/bench_growth.py``), read an index range on
SQLite: the placeholder tickets a batch numbers, a ticket's newest
Message-IDs (the References of the desk's mail), the desk-wide count of
mail to unverified addresses in the last hour, one address's recent mail
(the per-recipient caps), and the threading lookup.

SQLite plans without statistics (the gateway never runs ANALYZE), so the
plan is the same on an empty store as on a million tickets: asking it here
is what the benchmark found at a million. (PostgreSQL plans from its
statistics; the benchmark's ``--pg --explain`` shows those.)"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, event

from gateway.app import App
from gateway.store import numbering, outbox, repo
from gateway.store.db import connection


@pytest.fixture
def captured(app: App) -> Iterator[list[tuple[str, Any]]]:
    """Every statement the engine runs, with its parameters."""
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                executemany: bool) -> None:
        seen.append((statement, parameters))

    event.listen(app.engine, "before_cursor_execute", capture)
    yield seen
    event.remove(app.engine, "before_cursor_execute", capture)


def _plan(app: App, captured: list[tuple[str, Any]], call: Callable[[Connection], object],
          table: str) -> list[str]:
    """Run ``call``, then ask SQLite how it runs the last statement that
    names ``table``: the plan's lines."""
    with connection(app.engine) as conn:
        captured.clear()
        call(conn)
        statement, parameters = next(s for s in reversed(captured) if table in s[0])
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
    return [str(r[3]) for r in rows]


# What each statement must narrow the table by: (table, the index's
# constraint as SQLite prints it, the call that runs the statement).
CALLS: dict[str, tuple[str, str, Callable[[Connection], object]]] = {
    "placeholder tickets": ("ticket", "(number<?)", lambda conn: numbering.number_pending(conn, "SD")),
    "a ticket's newest Message-IDs": (
        "message_ref", "(ticket_id=?)", lambda conn: outbox.recent_thread_ids(conn, 1, 20),
    ),
    # Both columns: the status alone is every mail ever sent.
    "mail to unverified addresses in the last hour": (
        "outbound_mail", "(status=? AND sent_at>?)",
        lambda conn: repo.unverified_mails_sent_since(conn, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)),
    ),
    # An address's mail of the last hour or day: the per-recipient caps.
    "one address's recent notifications": (
        "outbound_mail", "(to_addr=? AND created_at>?)",
        lambda conn: repo.recent_mail_counts(conn, "a@b.example", dt.datetime.now(dt.UTC), dt.timedelta(1)),
    ),
    "one address's mail sent in the last hour": (
        "outbound_mail", "(to_addr=? AND sent_at>?)",
        lambda conn: outbox.automatic_mails_sent_to(conn, "a@b.example", dt.datetime.now(dt.UTC)),
    ),
    "tickets by Message-ID": (
        "message_ref", "(message_id=?)", lambda conn: repo.tickets_by_message_ids(conn, ["<a@b>", "<c@d>"]),
    ),
}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("what", list(CALLS))
def test_reads_an_index_range_not_the_table(app: App, captured: list[tuple[str, Any]], what: str) -> None:
    table, constraint, call = CALLS[what]
    plan = _plan(app, captured, call, table)
    assert any(line.startswith(f"SEARCH {table} USING") and line.endswith(constraint) for line in plan), plan
