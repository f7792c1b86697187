"""The outbox's persistence: what the outbox sender claims, loads and
records, and what the renderer reads to write a mail (the ticket, the
comment, the thread's Message-IDs). The decisions (what is due, how long a
lease lasts, what an unverified recipient may see) stay with the sender and
the renderer; this module only runs their queries.

As in ``repo``: SQLAlchemy Core on the caller's ``Connection``, statements
built once at import with bind parameters, rows as small frozen dataclasses.
Every status change names the attempt it belongs to (``attempts``) and
touches only a row that is still due: a sender whose lease ran out and was
taken over can then not overwrite the new owner's result.

Queueing (``repo.insert_outbox``) and the caps ``notify`` checks before it
(``repo.recent_mail_counts``), the desk-wide backscatter counts and bounces
stay in ``repo``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Integer, bindparam, func, or_, select, update

from gateway.domain import OutboxStatus
from gateway.store.repo import ACCOUNT, ATTACHMENT, COMMENT, DUE_STATUSES, MAIL, MESSAGE_REF, OUTBOX, TICKET
from gateway.store.shapes import padded

# Rows the sender may claim (repo.DUE_STATUSES); every other status is final (or an operator's).
DUE = DUE_STATUSES
# Mails that count against a recipient's hourly cap: they left the desk.
_WENT_OUT = (OutboxStatus.sent.value, OutboxStatus.bounced.value)


@dataclass(frozen=True)
class OutboxRow:
    """The outbox columns the sender and renderer need."""

    id: int
    to_addr: str
    template: str
    locale: str
    ticket_id: int | None
    cause_mail_id: int | None
    data: dict[str, Any]
    message_id: str | None
    attempts: int
    created_at: dt.datetime
    status: str
    automatic: bool
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class TicketForMail:
    """What a mail about a ticket may show of it, and its first Message-ID."""

    key: str
    summary: str
    message_id: str | None
    reporter_email: str


@dataclass(frozen=True, slots=True)
class CommentForMail:
    """A comment a ``comment_added`` mail carries, with its author."""

    body: str
    public: bool
    message_id: str | None
    author_name: str
    author_email: str
    author_role: str


@dataclass(frozen=True, slots=True)
class FileForMail:
    """A file of a public comment, for the mail that carries the comment."""

    id: int
    filename: str
    content_type: str
    size: int
    sha256: str


_ROW_COLS = [OUTBOX.c[f] for f in OutboxRow.__dataclass_fields__]

# -- statements ---------------------------------------------------------------
_DUE_NOW = (
    select(OUTBOX.c.id, OUTBOX.c.attempts)
    .where(OUTBOX.c.status.in_(DUE))
    .where(or_(OUTBOX.c.next_attempt_at.is_(None), OUTBOX.c.next_attempt_at <= bindparam("b_now")))
    .order_by(OUTBOX.c.next_attempt_at, OUTBOX.c.id)
    .limit(bindparam("b_limit", type_=Integer))
    .with_for_update(skip_locked=True)
)
_DUE_NOW_EXCEPT = _DUE_NOW.where(OUTBOX.c.id.not_in(bindparam("b_exclude", expanding=True)))
# SET next_attempt_at comes with the parameters.
_LEASE = (
    update(OUTBOX)
    .where(OUTBOX.c.id.in_(bindparam("b_ids", expanding=True)))
    .values(attempts=OUTBOX.c.attempts + 1)
)
# This attempt still owns the row, and it is still due.
_ATTEMPT = (
    OUTBOX.c.id == bindparam("b_id"),
    OUTBOX.c.attempts == bindparam("b_attempt"),
    OUTBOX.c.status.in_(DUE),
)
_LOAD_ATTEMPT = select(*_ROW_COLS).where(*_ATTEMPT)
# SET columns come with the parameters.
_UPDATE_ATTEMPT = update(OUTBOX).where(*_ATTEMPT)
_SENT_TO = (
    select(func.count(), func.min(OUTBOX.c.sent_at))
    .where(OUTBOX.c.to_addr == bindparam("b_to"))
    .where(OUTBOX.c.automatic.is_(True))
    .where(OUTBOX.c.status.in_(_WENT_OUT))
    .where(OUTBOX.c.sent_at > bindparam("b_since"))
)
_QUEUED_TO = (
    select(func.count())
    .select_from(OUTBOX)
    .where(OUTBOX.c.to_addr == bindparam("b_to"))
    .where(OUTBOX.c.template.in_(bindparam("b_templates", expanding=True)))
    .where(OUTBOX.c.created_at >= bindparam("b_since"))
)
_TICKET_FOR_MAIL = (
    select(TICKET.c.key, TICKET.c.summary, TICKET.c.message_id, ACCOUNT.c.email)
    .join(ACCOUNT, ACCOUNT.c.id == TICKET.c.reporter_id)
    .where(TICKET.c.id == bindparam("b_id"))
)
_COMMENT_FOR_MAIL = (
    select(COMMENT.c.body, COMMENT.c.public, COMMENT.c.message_id, ACCOUNT.c.name, ACCOUNT.c.email,
           ACCOUNT.c.role)
    .join(ACCOUNT, ACCOUNT.c.id == COMMENT.c.author_id)
    .where(COMMENT.c.id == bindparam("b_id"))
)
_THREAD_IDS = (
    select(MESSAGE_REF.c.message_id)
    .where(MESSAGE_REF.c.ticket_id == bindparam("b_ticket"))
    .where(MESSAGE_REF.c.direction.in_(("inbound", "outbound")))
    .order_by(MESSAGE_REF.c.id.desc())
    .limit(bindparam("b_limit", type_=Integer))
)
_MAIL_MESSAGE_ID = select(MAIL.c.message_id).where(MAIL.c.id == bindparam("b_id"))


# -- the sender's rows ----------------------------------------------------------


def claim_due(
    conn: Connection, now: dt.datetime, limit: int, lease_until: dt.datetime, exclude: Iterable[int] = ()
) -> list[tuple[int, int]]:
    """Lease up to ``limit`` rows due at ``now`` (the longest waiting
    first), leaving out ``exclude``: their next attempt moves to
    ``lease_until`` and the attempt is counted. Returns ``(id, attempt
    number)``. Rows another transaction has locked are skipped on
    PostgreSQL (``FOR UPDATE SKIP LOCKED``), so concurrent senders claim
    different rows; SQLite serializes the write transactions instead."""
    excluded = padded(exclude)
    if excluded:
        rows = conn.execute(_DUE_NOW_EXCEPT, {"b_now": now, "b_limit": limit, "b_exclude": excluded}).all()
    else:
        rows = conn.execute(_DUE_NOW, {"b_now": now, "b_limit": limit}).all()
    if not rows:
        return []
    conn.execute(_LEASE, {"b_ids": padded(r.id for r in rows), "next_attempt_at": lease_until})
    return [(r.id, r.attempts + 1) for r in rows]


def extend_leases(conn: Connection, claimed: Iterable[tuple[int, int]], lease_until: dt.datetime) -> int:
    """Renew the lease of rows a live sender still works on: ``(id,
    attempt)`` pairs that are still this attempt's and still due; how many."""
    params = [{"b_id": row_id, "b_attempt": attempt, "next_attempt_at": lease_until}
              for row_id, attempt in claimed]
    if not params:
        return 0
    return int(conn.execute(_UPDATE_ATTEMPT, params).rowcount or 0)


def load_attempt(conn: Connection, row_id: int, attempt: int) -> OutboxRow | None:
    """The row, if this attempt still owns it and it is still due (not
    bounced, retried by an operator, or leased to another sender)."""
    row = conn.execute(_LOAD_ATTEMPT, {"b_id": row_id, "b_attempt": attempt}).first()
    return OutboxRow(*row) if row else None


def update_attempt(conn: Connection, row_id: int, attempt: int, **values: Any) -> bool:
    """Set columns of the row if this attempt still owns it and it is
    still due; False when it changed meanwhile (and nothing was written)."""
    result = conn.execute(_UPDATE_ATTEMPT, {"b_id": row_id, "b_attempt": attempt, **values})
    return bool(result.rowcount)


def automatic_mails_sent_to(
    conn: Connection, address: str, since: dt.datetime
) -> tuple[int, dt.datetime | None]:
    """How many automatic mails went (sent, or sent and bounced) to
    ``address`` after ``since``, and when the oldest of them went: the
    per-recipient hourly cap, checked again before sending because not
    every path that queues mail goes through ``notify``."""
    count, oldest = conn.execute(_SENT_TO, {"b_to": address, "b_since": since}).one()
    return int(count), oldest


# The mails that carry a signup link (``gateway.signup``).
SIGNUP_TEMPLATES = ("signup_confirmation", "signup_invitation")
_EVER = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def signup_link_sent(conn: Connection, address: str) -> bool:
    """Whether ``address`` was ever sent a signup link (a mail may then
    refer to "the link from our invitation")."""
    return mails_to_since(conn, address, SIGNUP_TEMPLATES, _EVER) > 0


def mails_to_since(conn: Connection, address: str, templates: Sequence[str], since: dt.datetime) -> int:
    """Outbox rows for ``address`` with one of ``templates`` queued since
    ``since``, whatever became of them (signup asks this: a confirmation
    that is still going counts)."""
    params = {"b_to": address, "b_templates": list(templates), "b_since": since}
    return int(conn.execute(_QUEUED_TO, params).scalar_one())


# -- what a mail shows ------------------------------------------------------------


def ticket_for_mail(conn: Connection, ticket_id: int) -> TicketForMail | None:
    row = conn.execute(_TICKET_FOR_MAIL, {"b_id": ticket_id}).first()
    return TicketForMail(*row) if row else None


def comment_for_mail(conn: Connection, comment_id: int) -> CommentForMail | None:
    """The comment and its author, internal or not: whether it may go out
    is the renderer's decision."""
    row = conn.execute(_COMMENT_FOR_MAIL, {"b_id": comment_id}).first()
    return CommentForMail(*row) if row else None


def ticket_text(conn: Connection, ticket_id: int) -> tuple[str, str, str]:
    """A ticket's description and its reporter's name and address (an agent
    notice carries them)."""
    row = conn.execute(
        select(TICKET.c.description, ACCOUNT.c.name, ACCOUNT.c.email)
        .join(ACCOUNT, ACCOUNT.c.id == TICKET.c.reporter_id)
        .where(TICKET.c.id == ticket_id)
    ).one()
    return row[0] or "", row[1] or "", row[2]


def comment_files(conn: Connection, comment_id: int) -> list[FileForMail]:
    """The comment's files (not the inline images of a mail's signature),
    oldest first."""
    rows = conn.execute(
        select(ATTACHMENT.c.id, ATTACHMENT.c.filename, ATTACHMENT.c.content_type, ATTACHMENT.c.size,
               ATTACHMENT.c.sha256)
        .where(ATTACHMENT.c.comment_id == comment_id)
        .where(ATTACHMENT.c.inline.is_(False))
        .order_by(ATTACHMENT.c.id)
    )
    return [FileForMail(*r) for r in rows]


def recent_thread_ids(conn: Connection, ticket_id: int, limit: int) -> list[str]:
    """The newest ``limit`` Message-IDs of mails into and out of the ticket
    (not the ones it merely descends from), newest first."""
    return [r[0] for r in conn.execute(_THREAD_IDS, {"b_ticket": ticket_id, "b_limit": limit})]


def inbound_message_id(conn: Connection, mail_id: int) -> str | None:
    """The Message-ID of an inbound mail (the one that caused an outbox row)."""
    value = conn.execute(_MAIL_MESSAGE_ID, {"b_id": mail_id}).scalar()
    return None if value is None else str(value)
