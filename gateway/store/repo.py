"""Data access for the pipeline's hot path, in SQLAlchemy Core on one
``Connection``. The ORM is used for the schema and the read side (``read``); on
the per-message path its unit of work cost more than the SQL itself
(profiled: ~5 ms of Python per message vs ~1 ms here), and the benchmark
target is hundreds of messages per second on two cores. Statements are
built once, at import, with bind parameters: building them per call cost
as much as executing them.

Rows come back as small frozen dataclasses, not ORM instances."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, case, func, insert, or_, select, update

from gateway import verp
from gateway.domain import MailStatus, OutboxStatus
from gateway.store.db import dialect_insert
from gateway.store.models import (
    Account,
    Attachment,
    Comment,
    InboundMail,
    MessageRef,
    Organization,
    OrganizationDomain,
    OutboundMail,
    ProcessedKey,
    Ticket,
    TicketCounter,
    TicketEvent,
    TicketParticipant,
    utcnow,
)
from gateway.store.shapes import padded

ACCOUNT = Account.__table__  # type: ignore[attr-defined]
ORG = Organization.__table__  # type: ignore[attr-defined]
ORG_DOMAIN = OrganizationDomain.__table__  # type: ignore[attr-defined]
TICKET = Ticket.__table__  # type: ignore[attr-defined]
PARTICIPANT = TicketParticipant.__table__  # type: ignore[attr-defined]
COUNTER = TicketCounter.__table__  # type: ignore[attr-defined]
COMMENT = Comment.__table__  # type: ignore[attr-defined]
ATTACHMENT = Attachment.__table__  # type: ignore[attr-defined]
MAIL = InboundMail.__table__  # type: ignore[attr-defined]
# ``raw_sha256`` of a mail whose bytes erasure (``store/erasure.py``) removed
# with its sender's data: no digest of any bytes is empty.
ERASED_RAW = ""
MESSAGE_REF = MessageRef.__table__  # type: ignore[attr-defined]
OUTBOX = OutboundMail.__table__  # type: ignore[attr-defined]
PROCESSED = ProcessedKey.__table__  # type: ignore[attr-defined]
EVENT = TicketEvent.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class AccountRow:
    id: int
    email: str
    name: str
    state: str
    role: str
    organization_id: int | None
    locale: str | None
    is_robot: bool
    bounced_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class OrgRow:
    id: int
    name: str
    share_by_default: bool


@dataclass(frozen=True, slots=True)
class TicketRow:
    id: int
    number: int
    key: str
    status: str
    reporter_id: int
    organization_id: int | None
    priority: str
    request_type: str
    assignee_id: int | None = None


ACCOUNT_COLS = [ACCOUNT.c[f] for f in AccountRow.__dataclass_fields__]
_TICKET_COLS = [TICKET.c[f] for f in TicketRow.__dataclass_fields__]


_INSERT_IGNORE: dict[tuple[str, str], Any] = {}


def insert_ignore(conn: Connection, table: Any, returning: Any) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING RETURNING`` for this dialect, built
    once per table."""
    key = (conn.dialect.name, table.name)
    stmt = _INSERT_IGNORE.get(key)
    if stmt is None:
        base = dialect_insert(conn.dialect.name, table)
        stmt = _INSERT_IGNORE[key] = base.on_conflict_do_nothing().returning(returning)
    return stmt


def _in(name: str) -> Any:
    return bindparam(name, expanding=True)


_ORG_COLS = (ORG.c.id, ORG.c.name, ORG.c.share_by_default)

# -- statements ---------------------------------------------------------------
_ACCOUNT_BY_EMAIL = select(*ACCOUNT_COLS).where(ACCOUNT.c.email == bindparam("email"))
_ACCOUNTS_BY_ID = select(*ACCOUNT_COLS).where(ACCOUNT.c.id.in_(_in("ids"))).order_by(ACCOUNT.c.id)
_INSERT_ACCOUNT = insert(ACCOUNT).returning(ACCOUNT.c.id)
_KNOWN_EMAILS = select(ACCOUNT.c.email).where(ACCOUNT.c.email.in_(bindparam("b_emails", expanding=True)))
_SET_ACCOUNT_NAME = update(ACCOUNT).where(ACCOUNT.c.id == bindparam("b_id"))
# SET name, password_hash and state come with the parameters.
_ACTIVATE_ACCOUNT = (
    update(ACCOUNT)
    .where(ACCOUNT.c.id == bindparam("b_id"))
    .where(ACCOUNT.c.state == "unverified")
    .returning(ACCOUNT.c.email)
)
_ORG_BY_ID = select(*_ORG_COLS).where(ORG.c.id == bindparam("b_id"))
_ORG_BY_DOMAIN = (
    select(*_ORG_COLS)
    .join(ORG_DOMAIN, ORG_DOMAIN.c.organization_id == ORG.c.id)
    .where(ORG_DOMAIN.c.domain == bindparam("domain"))
)
DUE_STATUSES = (str(OutboxStatus.queued), str(OutboxStatus.retrying))  # the sender may claim these
_UNVERIFIED_SENT = (
    select(func.count(), func.min(OUTBOX.c.sent_at))
    .select_from(OUTBOX.outerjoin(ACCOUNT, ACCOUNT.c.email == OUTBOX.c.to_addr))
    .where(OUTBOX.c.automatic.is_(True))
    .where(OUTBOX.c.status.in_(("sent", "bounced")))
    .where(OUTBOX.c.sent_at > bindparam("b_since"))
    .where(or_(ACCOUNT.c.id.is_(None), ACCOUNT.c.state == "unverified"))
)
_BACKSCATTER_COUNT = (
    select(func.count()).select_from(OUTBOX)
    .where(OUTBOX.c.status.in_(_in("b_status")))
    .where(OUTBOX.c.last_error == bindparam("b_error"))
)
_OUTBOX_FOR_BOUNCE = select(OUTBOX.c.id, OUTBOX.c.to_addr, OUTBOX.c.message_id)
_OUTBOX_FOR_BOUNCE_BY_ID = _OUTBOX_FOR_BOUNCE.where(OUTBOX.c.id == bindparam("b_id"))
_OUTBOX_FOR_BOUNCE_BY_MID = _OUTBOX_FOR_BOUNCE.where(OUTBOX.c.message_id == bindparam("b_mid")).limit(1)
_BOUNCE_OUTBOX = update(OUTBOX).where(OUTBOX.c.id == bindparam("b_id"))
_BOUNCE_ACCOUNT = update(ACCOUNT).where(ACCOUNT.c.email == bindparam("b_email"))
_UNBOUNCE_ACCOUNT = (
    update(ACCOUNT).where(ACCOUNT.c.email == bindparam("b_email")).where(ACCOUNT.c.bounced_at.is_not(None))
    .values(bounced_at=None)
)
_TICKET_BY_ID = select(*_TICKET_COLS).where(TICKET.c.id == bindparam("b_id"))
_TICKET_BY_KEY = select(*_TICKET_COLS).where(TICKET.c.key == bindparam("b_key"))
_TICKETS_BY_NUMBER = select(*_TICKET_COLS).where(TICKET.c.number.in_(_in("numbers")))
_TICKETS_BY_MESSAGE_ID = (
    select(MESSAGE_REF.c.message_id, *_TICKET_COLS)
    .join(TICKET, TICKET.c.id == MESSAGE_REF.c.ticket_id)
    .where(MESSAGE_REF.c.message_id.in_(_in("mids")))
    # the ticket a message landed in before the tickets it descends from
    .order_by(case((MESSAGE_REF.c.direction == "ancestor", 1), else_=0), TICKET.c.id)
)
_IS_PARTICIPANT = (
    select(PARTICIPANT.c.ticket_id)
    .where(PARTICIPANT.c.ticket_id == bindparam("b_ticket"))
    .where(PARTICIPANT.c.account_id == bindparam("b_account"))
)
_INSERT_TICKET = insert(TICKET).returning(TICKET.c.id)
_UPDATE_TICKET = update(TICKET).where(TICKET.c.id == bindparam("b_id"))
_INSERT_COMMENT = insert(COMMENT).returning(COMMENT.c.id)
_ATTACHMENT_EXISTS = (
    select(ATTACHMENT.c.id)
    .where(ATTACHMENT.c.ticket_id == bindparam("b_ticket"))
    .where(ATTACHMENT.c.sha256 == bindparam("b_sha"))
    .limit(1)
)
_INSERT_ATTACHMENT = insert(ATTACHMENT)
_INSERT_MESSAGE_REF = insert(MESSAGE_REF)
_REMOVE_PARTICIPANT = (
    PARTICIPANT.delete()
    .where(PARTICIPANT.c.ticket_id == bindparam("b_ticket"))
    .where(PARTICIPANT.c.account_id == bindparam("b_account"))
)
_TICKET_FIELDS = select(TICKET.c.fields).where(TICKET.c.id == bindparam("b_id"))
_INSERT_EVENT = insert(EVENT)
_PARTICIPANT_IDS = select(PARTICIPANT.c.account_id).where(PARTICIPANT.c.ticket_id == bindparam("b_ticket"))
_ORG_MEMBER_IDS = select(ACCOUNT.c.id).where(ACCOUNT.c.organization_id == bindparam("b_org"))
_RECENT_MAIL = (
    select(
        func.count(case((OUTBOX.c.created_at >= bindparam("b_hour_ago"), 1))),
        func.count(case((OUTBOX.c.template == "signup_invitation", 1))),
    )
    .where(OUTBOX.c.to_addr == bindparam("b_to"))
    .where(OUTBOX.c.automatic.is_(True))
    .where(OUTBOX.c.created_at >= bindparam("b_since"))
)
_INSERT_OUTBOX = insert(OUTBOX).returning(OUTBOX.c.id)
_PROCESSED_OWNER = select(PROCESSED.c.inbound_mail_id).where(PROCESSED.c.key == bindparam("b_key"))
_FINISH_MAIL = update(MAIL).where(MAIL.c.id == bindparam("b_id"))
# By Message-ID alone, the status checked in Python: with a status filter
# SQLite chose the (status, id) index and read every queued row of a backlog
# (60% of a worker's time with 160,000 queued). A Message-ID has one or two rows.
_IN_FLIGHT = select(MAIL.c.id, MAIL.c.message_id, MAIL.c.status).where(
    MAIL.c.message_id.in_(bindparam("b_mids", expanding=True))
)
_NOT_DONE = frozenset({str(MailStatus.processing), str(MailStatus.queued)})


# -- accounts and organizations ----------------------------------------------


def account_by_id(conn: Connection, account_id: int) -> AccountRow | None:
    rows = accounts_by_id(conn, [account_id])
    return rows[0] if rows else None


def account_by_email(conn: Connection, email: str) -> AccountRow | None:
    row = conn.execute(_ACCOUNT_BY_EMAIL, {"email": email}).first()
    return AccountRow(*row) if row else None


def accounts_by_id(conn: Connection, ids: Iterable[int]) -> list[AccountRow]:
    return [AccountRow(*r) for r in conn.execute(_ACCOUNTS_BY_ID, {"ids": padded(ids)})]


def _new_account(
    email: str, name: str, role: str, organization_id: int | None, locale: str | None
) -> dict[str, Any]:
    return {
        "email": email,
        "name": name,
        "state": "unverified",
        "role": role,
        "organization_id": organization_id,
        "locale": locale,
        "is_robot": False,
        "created_at": utcnow(),
    }


def insert_account(
    conn: Connection, email: str, name: str, role: str, organization_id: int | None, locale: str | None
) -> AccountRow:
    values = _new_account(email, name, role, organization_id, locale)
    new_id = conn.execute(_INSERT_ACCOUNT, values).scalar_one()
    return AccountRow(new_id, email, name, "unverified", role, organization_id, locale, False, None)


def insert_account_if_absent(
    conn: Connection, email: str, name: str, role: str, organization_id: int | None, locale: str | None
) -> bool:
    """Like ``insert_account``, but an address that exists (or that a
    concurrent transaction has just inserted) is left alone; True if this
    call inserted it."""
    stmt = insert_ignore(conn, ACCOUNT, ACCOUNT.c.id)
    return conn.execute(stmt, _new_account(email, name, role, organization_id, locale)).first() is not None


def known_emails(conn: Connection, emails: Sequence[str]) -> set[str]:
    return set(conn.execute(_KNOWN_EMAILS, {"b_emails": padded(emails)}).scalars())


def set_account_name(conn: Connection, account_id: int, name: str) -> None:
    conn.execute(_SET_ACCOUNT_NAME, {"b_id": account_id, "name": name})


def set_account_role(conn: Connection, account_id: int, role: str) -> None:
    conn.execute(update(ACCOUNT).where(ACCOUNT.c.id == account_id).values(role=role))


def set_account_state(conn: Connection, account_id: int, state: str) -> None:
    conn.execute(update(ACCOUNT).where(ACCOUNT.c.id == account_id).values(state=state))


def activate_account(conn: Connection, account_id: int, name: str, password_hash: str) -> str | None:
    """An ``unverified`` account becomes ``active`` with its name and
    password; returns its address, or None (and changes nothing) when it is
    not unverified: active already through another link, or disabled."""
    params = {"b_id": account_id, "name": name, "password_hash": password_hash, "state": "active"}
    email = conn.execute(_ACTIVATE_ACCOUNT, params).scalar_one_or_none()
    return None if email is None else str(email)


def org_by_id(conn: Connection, org_id: int) -> OrgRow | None:
    row = conn.execute(_ORG_BY_ID, {"b_id": org_id}).first()
    return OrgRow(*row) if row else None


def org_by_domain(conn: Connection, domain: str) -> OrgRow | None:
    row = conn.execute(_ORG_BY_DOMAIN, {"domain": domain}).first()
    return OrgRow(*row) if row else None


# -- backscatter: automatic mail to unverified addresses ---------------------------

BACKSCATTER_DEFERRED = "deferred: desk-wide hourly limit for unverified addresses"
BACKSCATTER_DROPPED = "not sent: desk-wide hourly limit for unverified addresses, waited too long"


def unverified_mails_sent_since(conn: Connection, since: dt.datetime) -> tuple[int, dt.datetime | None]:
    """How many automatic mails went to addresses without an active account
    since ``since``, and when the oldest of them went."""
    row = conn.execute(_UNVERIFIED_SENT, {"b_since": since}).one()
    return int(row[0]), row[1]


def backscatter_counts(conn: Connection) -> dict[str, int]:
    """Rows waiting for the desk-wide cap, and rows it dropped."""
    due = list(DUE_STATUSES)
    waiting = conn.execute(_BACKSCATTER_COUNT, {"b_error": BACKSCATTER_DEFERRED, "b_status": due})
    dropped = conn.execute(_BACKSCATTER_COUNT, {"b_error": BACKSCATTER_DROPPED, "b_status": ["failed"]})
    return {"waiting": int(waiting.scalar_one()), "dropped": int(dropped.scalar_one())}


def record_bounce(
    conn: Connection,
    failed: Sequence[str],
    original_message_id: str | None,
    verp_row: tuple[int, str] | None,
    status: str,
) -> str | None:
    """Mark the desk mail a bounce is about, and its recipient's address, as
    bounced; returns that address, or None when the bounce refers to no desk
    mail or does not name its recipient as failed (a forged bounce would
    otherwise silence any customer). The mail is found by the VERP return
    path the bounce was sent to (``verp_row``: id and token), else by the
    Message-ID of the returned headers."""
    row = None
    if verp_row is not None:
        found = conn.execute(_OUTBOX_FOR_BOUNCE_BY_ID, {"b_id": verp_row[0]}).first()
        if found is not None and found.message_id and verp.token(found.message_id) == verp_row[1]:
            row = found
    if row is None and original_message_id:
        row = conn.execute(_OUTBOX_FOR_BOUNCE_BY_MID, {"b_mid": original_message_id}).first()
    if row is None or row.to_addr not in failed:
        return None
    conn.execute(_BOUNCE_OUTBOX, {"b_id": row.id, "status": "bounced", "last_error": f"bounced: {status}"})
    conn.execute(_BOUNCE_ACCOUNT, {"b_email": row.to_addr, "bounced_at": utcnow()})
    return str(row.to_addr)


def clear_bounce(conn: Connection, email: str) -> bool:
    """The address works again (it wrote to us, or an operator says so);
    True when it was marked bounced."""
    return bool(conn.execute(_UNBOUNCE_ACCOUNT, {"b_email": email}).rowcount)


# -- tickets ---------------------------------------------------------------------


def ticket_by_id(conn: Connection, ticket_id: int) -> TicketRow | None:
    row = conn.execute(_TICKET_BY_ID, {"b_id": ticket_id}).first()
    return TicketRow(*row) if row else None


def ticket_by_key(conn: Connection, key: str) -> TicketRow | None:
    row = conn.execute(_TICKET_BY_KEY, {"b_key": key}).first()
    return TicketRow(*row) if row else None


def tickets_by_number(conn: Connection, numbers: Sequence[int]) -> dict[int, TicketRow]:
    if not numbers:
        return {}
    return {r.number: TicketRow(*r) for r in conn.execute(_TICKETS_BY_NUMBER, {"numbers": padded(numbers)})}


def tickets_by_message_ids(conn: Connection, message_ids: Sequence[str]) -> dict[str, list[TicketRow]]:
    """Tickets that know each Message-ID: the one it is in first, then the
    ones it descends from ("ancestor" refs), oldest first."""
    if not message_ids:
        return {}
    out: dict[str, list[TicketRow]] = {}
    for r in conn.execute(_TICKETS_BY_MESSAGE_ID, {"mids": padded(message_ids)}):
        out.setdefault(r[0], []).append(TicketRow(*r[1:]))
    return out


def is_participant(conn: Connection, ticket_id: int, account_id: int) -> bool:
    return conn.execute(_IS_PARTICIPANT, {"b_ticket": ticket_id, "b_account": account_id}).first() is not None


def add_participant(conn: Connection, ticket_id: int, account_id: int) -> bool:
    """True when the account was not a participant before."""
    stmt = insert_ignore(conn, PARTICIPANT, PARTICIPANT.c.account_id)
    inserted = conn.execute(stmt, {"ticket_id": ticket_id, "account_id": account_id}).first()
    return inserted is not None


def insert_ticket(conn: Connection, **values: Any) -> TicketRow:
    now = utcnow()
    values.setdefault("created_at", now)
    values.setdefault("updated_at", now)
    new_id = conn.execute(_INSERT_TICKET, values).scalar_one()
    v = values
    return TicketRow(
        new_id, v["number"], v["key"], v["status"], v["reporter_id"], v["organization_id"], v["priority"],
        v["request_type"], v.get("assignee_id"),
    )


def update_ticket(conn: Connection, ticket_id: int, **values: Any) -> None:
    """Set columns of one ticket (and ``updated_at``)."""
    values.setdefault("updated_at", utcnow())
    conn.execute(_UPDATE_TICKET, {"b_id": ticket_id, **values})


def ticket_fields(conn: Connection, ticket_id: int) -> dict[str, Any]:
    value = conn.execute(_TICKET_FIELDS, {"b_id": ticket_id}).scalar_one_or_none()
    return dict(value) if isinstance(value, dict) else {}


def set_ticket_status(conn: Connection, ticket_id: int, status: str | None) -> None:
    values: dict[str, Any] = {"b_id": ticket_id, "updated_at": utcnow()}
    if status is not None:
        values["status"] = status
    conn.execute(_UPDATE_TICKET, values)


def insert_comment(conn: Connection, **values: Any) -> int:
    values.setdefault("created_at", utcnow())
    return int(conn.execute(_INSERT_COMMENT, values).scalar_one())


def attachment_exists(conn: Connection, ticket_id: int, sha256: str) -> bool:
    return conn.execute(_ATTACHMENT_EXISTS, {"b_ticket": ticket_id, "b_sha": sha256}).first() is not None


def insert_attachment(conn: Connection, **values: Any) -> None:
    values.setdefault("created_at", utcnow())
    conn.execute(_INSERT_ATTACHMENT, values)


def remember_message_id(
    conn: Connection, message_id: str, ticket_id: int, direction: str = "inbound"
) -> None:
    conn.execute(
        _INSERT_MESSAGE_REF, {"message_id": message_id[:998], "ticket_id": ticket_id, "direction": direction}
    )


def remove_participant(conn: Connection, ticket_id: int, account_id: int) -> bool:
    """True when the account was a participant."""
    result = conn.execute(_REMOVE_PARTICIPANT, {"b_ticket": ticket_id, "b_account": account_id})
    return bool(result.rowcount)


def participant_ids(conn: Connection, ticket_id: int) -> list[int]:
    return [aid for (aid,) in conn.execute(_PARTICIPANT_IDS, {"b_ticket": ticket_id})]


def audience_ids(conn: Connection, ticket: TicketRow) -> list[int]:
    """Reporter, participants and (when shared) organization members."""
    ids: dict[int, None] = {ticket.reporter_id: None}
    for (aid,) in conn.execute(_PARTICIPANT_IDS, {"b_ticket": ticket.id}):
        ids[aid] = None
    if ticket.organization_id is not None:
        for (aid,) in conn.execute(_ORG_MEMBER_IDS, {"b_org": ticket.organization_id}):
            ids[aid] = None
    return list(ids)


# -- outbox -----------------------------------------------------------------------


def recent_mail_counts(
    conn: Connection, address: str, now: dt.datetime, day: dt.timedelta
) -> tuple[int, int]:
    """Automatic mails to ``address`` in the last hour, and signup
    invitations to it in the last ``day`` — one query for both."""
    hour_ago = now - dt.timedelta(hours=1)
    params = {"b_hour_ago": hour_ago, "b_to": address, "b_since": now - max(day, dt.timedelta(hours=1))}
    last_hour, invitations = conn.execute(_RECENT_MAIL, params).one()
    return int(last_hour), int(invitations)


def insert_outbox(conn: Connection, **values: Any) -> int:
    return int(conn.execute(_INSERT_OUTBOX, values).scalar_one())


# -- the mail log ---------------------------------------------------------------------


def claim_processed_key(conn: Connection, key: str, mail_id: int) -> int | None:
    """Record that ``mail_id`` has its effect; return the id of an earlier
    mail with the same key (a duplicate) or None. The primary key makes this
    safe against a concurrent worker processing a copy at the same time."""
    # RETURNING, not rowcount: psycopg reports a row for a skipped insert.
    stmt = insert_ignore(conn, PROCESSED, PROCESSED.c.key)
    inserted = conn.execute(stmt, {"key": key, "inbound_mail_id": mail_id}).first()
    if inserted is not None:
        return None
    earlier = conn.execute(_PROCESSED_OWNER, {"b_key": key}).scalar_one()
    return None if earlier == mail_id else int(earlier)


def finish_mails(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Record the results of several spool rows in one statement (psycopg
    pipelines an executemany: one round trip). Each dict has ``b_id`` and
    the same columns."""
    if not rows:
        return
    now = utcnow()
    for r in rows:
        r.setdefault("processed_at", now)
    # claimed_by stays: it tells an operator which worker processed the mail
    conn.execute(_FINISH_MAIL, rows)


def in_flight(conn: Connection, message_ids: Sequence[str]) -> list[tuple[int, str, str]]:
    """Spool rows with one of these Message-IDs that are not processed yet
    (a worker has them, or they wait in the queue): ``(id, message_id,
    status)``."""
    rows = conn.execute(_IN_FLIGHT, {"b_mids": padded(message_ids)})
    return [(int(i), str(m), str(st)) for i, m, st in rows if st in _NOT_DONE]


# -- history ----------------------------------------------------------------------


def insert_events(conn: Connection, events: list[dict[str, Any]]) -> None:
    """The history rows of one operation, in one statement. Each dict holds
    ``ticket_id``, ``action``, ``actor_id``, ``source`` and optionally
    ``from_value``, ``to_value``, ``comment_id``, ``inbound_mail_id``."""
    if not events:
        return
    now = utcnow()
    rows = [
        {"at": now, "from_value": None, "to_value": None, "comment_id": None, "inbound_mail_id": None, **e}
        for e in events
    ]
    conn.execute(_INSERT_EVENT, rows)
