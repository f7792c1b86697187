"""Ticket numbers are handed out at the end of the transaction that creates
the tickets (``numbering.number_pending``): in creation order, without gaps
after a rollback, starting after existing numbers, and (PostgreSQL) without
one worker's open batch holding up another worker's new tickets."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, delete, select, text

from gateway.app import App
from gateway.store import numbering, repo
from gateway.store.db import connection
from gateway.store.repo import COUNTER, TICKET


class _Rollback(Exception):
    pass


def _reporter(app: App) -> int:
    with connection(app.engine) as conn:
        return repo.insert_account(conn, "anna@bauwerk-ag.de", "Anna", "customer", None, "de").id


def _new_ticket(conn: Connection, reporter: int, mail_id: int) -> int:
    """A ticket as apply.create_ticket inserts it: with its placeholder."""
    return repo.insert_ticket(
        conn,
        number=numbering.placeholder_number(mail_id),
        key=f"SD-new{mail_id}",
        request_type="other",
        summary=f"ticket of mail {mail_id}",
        description="",
        status="waiting_for_support",
        priority="medium",
        reporter_id=reporter,
        organization_id=None,
        fields={},
        message_id=None,
        linked_key=None,
        source_mail_id=mail_id,
    ).id


def _keys(app: App) -> dict[int, str]:
    with app.engine.connect() as conn:
        return dict(conn.execute(select(TICKET.c.id, TICKET.c.key)).all())  # type: ignore[arg-type]


def test_numbers_in_creation_order_and_a_rollback_leaves_no_gap(app: App) -> None:
    reporter = _reporter(app)
    with connection(app.engine) as conn:
        ids = [_new_ticket(conn, reporter, m) for m in (7, 3, 5)]  # spool ids need not be ordered
        keys = numbering.number_pending(conn, "SD")
    assert keys == {ids[0]: ("SD-new7", "SD-1"), ids[1]: ("SD-new3", "SD-2"), ids[2]: ("SD-new5", "SD-3")}
    assert _keys(app) == {ids[0]: "SD-1", ids[1]: "SD-2", ids[2]: "SD-3"}

    # A batch that is rolled back (a deadlock, a crash) gives its numbers back.
    with pytest.raises(_Rollback), connection(app.engine) as conn:
        _new_ticket(conn, reporter, 8)
        _new_ticket(conn, reporter, 9)
        assert [k for _, k in numbering.number_pending(conn, "SD").values()] == ["SD-4", "SD-5"]
        raise _Rollback
    with connection(app.engine) as conn:
        again = _new_ticket(conn, reporter, 10)
        assert numbering.number_pending(conn, "SD") == {again: ("SD-new10", "SD-4")}
        assert numbering.number_pending(conn, "SD") == {}  # nothing left to number

    # No counter row (a database from before the counter, a new prefix):
    # numbering starts after the highest existing number.
    with connection(app.engine) as conn:
        conn.execute(delete(COUNTER))
        later = _new_ticket(conn, reporter, 11)
        assert numbering.number_pending(conn, "SD") == {later: ("SD-new11", "SD-5")}


def test_an_open_batch_does_not_hold_up_another_workers_new_tickets(pg_app: App) -> None:
    """PostgreSQL runs workers' batches side by side. Worker A has created a
    ticket in a batch that is still open; worker B creates, numbers and
    commits its own ticket meanwhile, without waiting for A's counter lock
    (B gives up after 2 s: were the number taken when A's ticket was
    inserted, B would wait for A's whole batch). SQLite has one writer at a
    time, so there is nothing to show there."""
    app = pg_app
    reporter = _reporter(app)
    with connection(app.engine) as a:
        a_ticket = _new_ticket(a, reporter, 1)
        with connection(app.engine) as b:
            b.execute(text("SET LOCAL lock_timeout = '2s'"))
            b_ticket = _new_ticket(b, reporter, 2)
            assert numbering.number_pending(b, "SD") == {b_ticket: ("SD-new2", "SD-1")}
        assert numbering.number_pending(a, "SD") == {a_ticket: ("SD-new1", "SD-2")}
    assert _keys(app) == {b_ticket: "SD-1", a_ticket: "SD-2"}
