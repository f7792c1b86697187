"""Ticket numbers, in one place: ``SD-<n>`` without gaps, whoever makes
the ticket and however many workers and processes do it at once.

A ticket made from the command line or the web takes its number at once
(``new_ticket_number``: a short transaction holds the counter row only
briefly). A ticket made by the mail pipeline first gets a placeholder
(negative number, key ``SD-new<spool id>``, which the subject-key pattern
never matches) and its real number just before its batch commits
(``number_pending``): the counter row is the one row every new ticket
writes, and taken per ticket a worker would hold its lock through its whole
batch while the other workers queued behind it. A rolled-back batch gives
its numbers back."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, bindparam, func, literal_column, select, update

from gateway.store.repo import COUNTER, TICKET, insert_ignore
from gateway.store.shapes import padded

_TAKE_NUMBERS = (
    update(COUNTER)
    .where(COUNTER.c.prefix == bindparam("b_prefix"))
    .values(value=COUNTER.c.value + bindparam("b_count"))
    .returning(COUNTER.c.value)
)
_MAX_NUMBER = select(func.max(TICKET.c.number)).where(TICKET.c.number > 0)
# The placeholders: a range of the unique index on ``number`` (they are the
# only negative numbers). No ORDER BY here: asked for ``ORDER BY id``,
# SQLite, which cannot know how few rows ``number < 0`` leaves, walks the
# whole table in id order rather than sort a range, and that cost ~0.25 s
# a batch at a million tickets (``bench/bench_growth.py``). The few rows
# are sorted by id in Python (``number_pending``). The 0 is inlined so that
# no planner has to guess at a parameter either.
_UNNUMBERED = select(TICKET.c.id, TICKET.c.key).where(TICKET.c.number < literal_column("0"))
_NUMBER_TICKET = update(TICKET).where(TICKET.c.id == bindparam("b_id"))
_TICKET_KEYS = select(TICKET.c.id, TICKET.c.key).where(TICKET.c.id.in_(bindparam("b_ids", expanding=True)))


def new_ticket_number(conn: Connection, prefix: str, inbound_mail_id: int | None) -> tuple[int, str]:
    """The number and key a new ticket is inserted with: a placeholder for
    a ticket made from mail (``inbound_mail_id``; the caller's batch calls
    ``number_pending`` before its commit), the real one otherwise."""
    if inbound_mail_id is not None:
        number = placeholder_number(inbound_mail_id)
        return number, placeholder_key(prefix, number)
    number = take_ticket_numbers(conn, prefix, 1)
    return number, f"{prefix}-{number}"


def take_ticket_numbers(conn: Connection, prefix: str, count: int) -> int:
    """Reserve ``count`` consecutive ticket numbers; the first of them.
    Atomic: the UPDATE takes a row lock (PostgreSQL) or runs under the write
    lock (SQLite), so two workers never get the same number; and, being part
    of the caller's transaction, a rollback returns them (no gaps)."""
    params = {"b_prefix": prefix, "b_count": count}
    value = conn.execute(_TAKE_NUMBERS, params).scalar_one_or_none()
    if value is None:
        # First ticket with this prefix: the counter starts at the highest
        # existing number. Two workers may get here at once: the second
        # insert waits for the first and then does nothing (no unique
        # violation at the end of a batch), and both take from the one row.
        highest = int(conn.execute(_MAX_NUMBER).scalar_one_or_none() or 0)
        conn.execute(insert_ignore(conn, COUNTER, COUNTER.c.prefix), {"prefix": prefix, "value": highest})
        value = conn.execute(_TAKE_NUMBERS, params).scalar_one()
    return int(value) - count + 1


def placeholder_number(inbound_mail_id: int) -> int:
    """The number a ticket carries until ``number_pending`` gives it its
    real one: negative, so it never collides with a real number, and unique
    per message (one message creates at most one ticket)."""
    return -inbound_mail_id


def placeholder_key(prefix: str, number: int) -> str:
    """The key that goes with a placeholder number; the subject-key pattern
    (digits after the prefix) never matches it."""
    return f"{prefix}-new{-number}"


def is_placeholder_key(key: str) -> bool:
    return "-new" in key


def ticket_keys(conn: Connection, ids: Iterable[int]) -> dict[int, str]:
    return dict(conn.execute(_TICKET_KEYS, {"b_ids": padded(ids)}).all())


def number_pending(conn: Connection, prefix: str) -> dict[int, tuple[str, str]]:
    """Give every ticket this transaction created with a placeholder number
    its real number and key, in creation order.

    Why late: the counter row is the one row every new ticket writes. Taken
    per ticket, a worker holds its lock from its first new ticket to the end
    of its whole batch, and PostgreSQL workers queue behind each other. Taken
    here, just before the commit, the lock lasts two statements. Placeholder
    rows of other transactions are uncommitted, so invisible here, and a
    committed ticket never has one. Returns ``{id: (placeholder key, key)}``."""
    pending = sorted((int(tid), str(old)) for tid, old in conn.execute(_UNNUMBERED))  # creation order: by id
    if not pending:
        return {}
    first = take_ticket_numbers(conn, prefix, len(pending))
    keys = {tid: (old, f"{prefix}-{first + i}") for i, (tid, old) in enumerate(pending)}
    conn.execute(
        _NUMBER_TICKET,
        [{"b_id": tid, "number": first + i, "key": keys[tid][1]} for i, (tid, _) in enumerate(pending)],
    )
    return keys
