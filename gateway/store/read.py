"""The read side: the queries behind the operator's ``list`` and ``show``
commands, ``gateway status`` and the metrics, and their JSON shapes (SPEC
§4). Free of argparse so tests and a later web portal or HTTP API can reuse
them: each list takes its filters as explicit keyword arguments and returns
plain dicts. Lookups by name raise ``NotFound``. List queries join or
prefetch; none runs one query per row. Reads through the caller's ORM
``Session`` (``store.db.reading``); writes live elsewhere in the store."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import CompoundSelect, Label, Select, case, func, union
from sqlalchemy.orm import aliased, defer
from sqlmodel import Session, col, select

from gateway.domain import AGENT_UNTRUSTED_REASON, MailStatus, OutboxStatus, normalize_address, shown_person
from gateway.store import repo
from gateway.store.models import (
    Account,
    Attachment,
    Comment,
    ImapCursor,
    InboundMail,
    Organization,
    OrganizationDomain,
    OutboundMail,
    Ticket,
    TicketEvent,
    TicketParticipant,
    as_utc,
)

JsonDict = dict[str, Any]


class NotFound(LookupError):
    """An operator named something that does not exist (CLI exit 1)."""


def iso(value: dt.datetime | None) -> str | None:
    """ISO-8601 in UTC with ``+00:00``; SQLite returns naive UTC values and
    PostgreSQL aware ones in the session time zone."""
    if value is None:
        return None
    return as_utc(value).astimezone(dt.UTC).isoformat()


# -- lookups ------------------------------------------------------------


def normalize_ticket_key(key: str) -> str:
    return key.strip().upper()


def get_ticket(session: Session, key: str) -> Ticket:
    ticket = session.exec(select(Ticket).where(Ticket.key == normalize_ticket_key(key))).first()
    if ticket is None:
        raise NotFound(f"ticket {key.strip()} not found")
    return ticket


def get_account(session: Session, email: str) -> Account:
    account = session.exec(select(Account).where(Account.email == normalize_address(email))).first()
    if account is None:
        raise NotFound(f"account {email.strip()} not found")
    return account


def find_org(session: Session, name: str) -> Organization | None:
    """By exact name, else by a unique case-insensitive match."""
    name = name.strip()
    org = session.exec(select(Organization).where(Organization.name == name)).first()
    if org is not None:
        return org
    matches = session.exec(
        select(Organization).where(func.lower(Organization.name) == name.lower())
    ).all()
    return matches[0] if len(matches) == 1 else None


def get_org(session: Session, name: str) -> Organization:
    org = find_org(session, name)
    if org is None:
        raise NotFound(f"organization {name.strip()!r} not found")
    return org


def get_mail(session: Session, mail_id: int) -> InboundMail:
    mail = session.get(InboundMail, mail_id)
    if mail is None:
        raise NotFound(f"mail {mail_id} not found")
    return mail


def missing_mail_ids(session: Session, mail_ids: list[int]) -> list[int]:
    """The ids among ``mail_ids`` that no inbound mail has."""
    found = set(session.exec(select(InboundMail.id).where(col(InboundMail.id).in_(mail_ids))).all())
    return [i for i in mail_ids if i not in found]


# -- tickets ------------------------------------------------------------


def _attachment_json(att: Attachment) -> JsonDict:
    return {
        "filename": att.filename,
        "content_type": att.content_type,
        "size": att.size,
        "sha256": att.sha256,
    }


def ticket_basics(ticket: Ticket) -> JsonDict:
    """The fields every view of a ticket shows."""
    return {
        "key": ticket.key,
        "summary": ticket.summary,
        "description": ticket.description,
        "request_type": ticket.request_type,
        "status": ticket.status,
        "priority": ticket.priority,
    }


def ticket_json(session: Session, ticket: Ticket) -> JsonDict:
    """The document of ``ticket show KEY --json`` (SPEC §4)."""
    reporter = session.get(Account, ticket.reporter_id)
    org = session.get(Organization, ticket.organization_id) if ticket.organization_id else None
    participants = session.exec(
        select(Account.email)
        .join(TicketParticipant, col(TicketParticipant.account_id) == col(Account.id))
        .where(TicketParticipant.ticket_id == ticket.id)
        .order_by(col(Account.email))
    ).all()

    attachments = session.exec(
        select(Attachment).where(Attachment.ticket_id == ticket.id).order_by(col(Attachment.id))
    ).all()
    by_comment: dict[int | None, list[JsonDict]] = defaultdict(list)
    for att in attachments:
        by_comment[att.comment_id].append(_attachment_json(att))

    rows = session.exec(
        select(Comment, Account.email)
        .join(Account, col(Account.id) == col(Comment.author_id))
        .where(Comment.ticket_id == ticket.id)
        .order_by(col(Comment.created_at), col(Comment.id))
    ).all()
    comments = [
        {
            "author": shown_person(email),
            "body": comment.body,
            "public": comment.public,
            "created_at": iso(comment.created_at),
            "message_id": comment.message_id,
            "source": comment.source,
            "mail_id": comment.inbound_mail_id,
            "threaded_by": comment.threaded_by,
            "attachments": by_comment.get(comment.id, []),
        }
        for comment, email in rows
    ]
    assignee = session.get(Account, ticket.assignee_id) if ticket.assignee_id else None
    return {
        **ticket_basics(ticket),
        # An erased account is "deleted user" wherever a person is named.
        "reporter": shown_person(reporter.email) if reporter else None,
        "organization": org.name if org else None,
        "assignee": shown_person(assignee.email) if assignee else None,
        "participants": [shown_person(p) for p in participants],
        "fields": dict(ticket.fields or {}),
        "message_id": ticket.message_id,
        "linked_key": ticket.linked_key,
        "created_at": iso(ticket.created_at),
        "updated_at": iso(ticket.updated_at),
        "mail_id": ticket.source_mail_id,
        "threaded_by": ticket.threaded_by,
        "attachments": by_comment.get(None, []),
        "comments": comments,
        "history": ticket_history(session, ticket),
    }


def ticket_history(session: Session, ticket: Ticket) -> list[JsonDict]:
    """Every change to ``ticket``, oldest first (SPEC §4 "history"):
    ``at``, ``actor`` (an address, or ``system``), ``action``, ``from``,
    ``to``; also how the request arrived (``source``), the inbound mail that
    carried it (``mail_id``) and, for ``commented``, the comment."""
    rows = session.exec(
        select(TicketEvent, Account.email)
        .join(Account, col(Account.id) == col(TicketEvent.actor_id), isouter=True)
        .where(TicketEvent.ticket_id == ticket.id)
        .order_by(col(TicketEvent.id))
    ).all()
    return [
        {
            "at": iso(event.at),
            "actor": shown_person(email) or "system",
            "action": event.action,
            "from": _shown_value(event.from_value),
            "to": _shown_value(event.to_value),
            "source": event.source,
            "mail_id": event.inbound_mail_id,
            "comment_id": event.comment_id,
        }
        for event, email in rows
    ]


def _shown_value(value: Any) -> Any:
    """A history value; an erased account's address (assigned, shared
    with) is "deleted user"."""
    return shown_person(value) if isinstance(value, str) else value


TICKET_SORTS = ("key", "updated", "created", "priority")
# Highest first when sorting by priority (ticket list, the agents' queue).
PRIORITY_RANK = {"blocker": 5, "critical": 4, "high": 3, "medium": 2, "low": 1}


def ticket_list(
    session: Session,
    *,
    status: str | None = None,
    org: str | None = None,
    reporter: str | None = None,
    assignee: str | None = None,
    sort: str = "key",
    limit: int | None = None,
    offset: int = 0,
) -> list[JsonDict]:
    """Tickets, optionally filtered by status, organization (a name, as
    ``find_org`` matches it), reporter (an address) and assignee (an
    address, or ``none``); unknown org, reporter or assignee raise NotFound
    rather than silently listing nothing. Sorted by key (oldest first), or
    newest update / creation first, or highest priority first; paged with
    ``limit`` and ``offset``."""
    assigned = aliased(Account)
    stmt = (
        select(Ticket, Account.email, Organization.name, assigned.email)
        .join(Account, col(Account.id) == col(Ticket.reporter_id))
        .outerjoin(Organization, col(Organization.id) == col(Ticket.organization_id))
        .outerjoin(assigned, col(assigned.id) == col(Ticket.assignee_id))
        .options(defer(Ticket.description), defer(Ticket.fields))  # type: ignore[arg-type]
    )
    if sort == "updated":
        stmt = stmt.order_by(col(Ticket.updated_at).desc(), col(Ticket.number).desc())
    elif sort == "created":
        stmt = stmt.order_by(col(Ticket.created_at).desc(), col(Ticket.number).desc())
    elif sort == "priority":
        rank = case(PRIORITY_RANK, value=col(Ticket.priority), else_=0)
        stmt = stmt.order_by(rank.desc(), col(Ticket.number))
    else:
        stmt = stmt.order_by(col(Ticket.number))
    if status:
        stmt = stmt.where(Ticket.status == status)
    if org:
        stmt = stmt.where(Ticket.organization_id == get_org(session, org).id)
    if reporter:
        stmt = stmt.where(Ticket.reporter_id == get_account(session, reporter).id)
    if assignee == "none":
        stmt = stmt.where(col(Ticket.assignee_id).is_(None))
    elif assignee:
        stmt = stmt.where(Ticket.assignee_id == get_account(session, assignee).id)
    if limit is not None:
        stmt = stmt.limit(limit)
    if offset:
        stmt = stmt.offset(offset)
    return [
        {
            "key": ticket.key,
            "summary": ticket.summary,
            "status": ticket.status,
            "priority": ticket.priority,
            "request_type": ticket.request_type,
            "reporter": shown_person(email),
            "organization": org_name,
            "assignee": shown_person(assignee_email),
            "created_at": iso(ticket.created_at),
            "updated_at": iso(ticket.updated_at),
        }
        for ticket, email, org_name, assignee_email in session.exec(stmt)
    ]


def visible_tickets(
    account_id: int,
    organization_id: int | None,
    *conditions: Any,
    scope: str = "all",
    sort: Any = Ticket.created_at,
) -> CompoundSelect | Select[Any] | None:
    """The tickets a customer may see (SPEC §3: reporter, participant, or
    member of the organization a ticket is shared with) that meet
    ``conditions``, as rows of ``id`` and ``sort_at`` (``sort``): one SELECT
    per way of seeing a ticket, UNIONed (a ticket seen two ways is one row).
    ``scope`` mine (reported) | org (shared with the organization) | all
    (anything else); None when it holds nothing (org without an organization).

    Why not one WHERE with OR: each branch here is a range of one index,
    (reporter_id, status, created_at, updated_at) or (organization_id, …),
    that holds every column a status filter and the sort need, so a
    customer's list reads index entries and only its page's ticket rows.
    With the OR the database fetched every ticket the customer may see,
    scattered over the whole table, twice per page (the count and the
    page), and on SQLite a status filter led the planner to the status
    index: all closed tickets of the desk, for one customer's list."""
    cols: tuple[Label[Any], Label[Any]] = (col(Ticket.id).label("id"), col(sort).label("sort_at"))
    branches: list[Select[Any]] = []
    if scope != "org":
        branches.append(select(*cols).where(col(Ticket.reporter_id) == account_id, *conditions))
    if scope not in ("mine", "org"):
        branches.append(
            select(*cols)
            .join(TicketParticipant, col(TicketParticipant.ticket_id) == col(Ticket.id))
            .where(col(TicketParticipant.account_id) == account_id, *conditions)
        )
    if scope != "mine" and organization_id is not None:
        branches.append(select(*cols).where(col(Ticket.organization_id) == organization_id, *conditions))
    if len(branches) > 1:
        return union(*branches)
    return branches[0] if branches else None


def newest_first(visible: CompoundSelect | Select[Any], limit: int, offset: int) -> Select[Any]:
    """The ids of one page of ``visible_tickets``, newest ``sort_at`` first."""
    ids = visible.subquery()
    return (
        select(ids.c.id)
        .order_by(ids.c.sort_at.desc(), ids.c.id.desc())
        .limit(limit)
        .offset(offset)
    )


def tickets_visible_to(
    session: Session, account_id: int, organization_id: int | None, *, limit: int = 20, offset: int = 0
) -> list[JsonDict]:
    """The tickets a customer may see (SPEC §3: reporter, participant, or
    member of the organization a ticket is shared with), most recently
    updated first: the portal's dashboard."""
    visible = visible_tickets(account_id, organization_id, sort=Ticket.updated_at)
    assert visible is not None
    stmt = (
        select(Ticket, Account.email, Account.name)
        .join(Account, col(Account.id) == col(Ticket.reporter_id))
        .where(col(Ticket.id).in_(newest_first(visible, limit, offset)))
        .options(defer(Ticket.description), defer(Ticket.fields))  # type: ignore[arg-type]
        .order_by(col(Ticket.updated_at).desc(), col(Ticket.id).desc())
    )
    return [
        {
            "key": ticket.key,
            "summary": ticket.summary,
            "status": ticket.status,
            "request_type": ticket.request_type,
            "reporter": email,
            "reporter_name": name,
            "updated_at": iso(ticket.updated_at),
        }
        for ticket, email, name in session.exec(stmt)
    ]


# -- inbound mail -------------------------------------------------------


def mail_json(mail: InboundMail, ticket_key: str | None) -> JsonDict:
    """One entry of ``mail list --json``."""
    return {
        "id": mail.id,
        "received_at": iso(mail.received_at),
        "source": mail.source,
        "message_id": mail.message_id,
        "from": mail.from_addr,
        "status": mail.status,
        "disposition": mail.disposition,
        "ticket": ticket_key,
        "error": mail.error,
    }


@dataclass(frozen=True)
class Window:
    """Which part of a log an operator lists: rows since a time, newest
    first or in id order, ``limit`` of them after skipping ``offset``."""

    since: dt.datetime | None = None
    limit: int | None = None
    offset: int = 0
    newest: bool = False

    def apply(self, stmt: Any, id_column: Any, time_column: Any) -> Any:
        if self.since is not None:
            stmt = stmt.where(time_column >= self.since)
        stmt = stmt.order_by(id_column.desc() if self.newest else id_column)
        if self.offset:
            stmt = stmt.offset(self.offset)
        if self.limit is not None:
            stmt = stmt.limit(self.limit)
        return stmt


def _address_filter(column: Any, address: str) -> Any:
    """An exact address, or every address of a domain with ``@domain``."""
    value = address.strip().lower()
    if value.startswith("@"):
        return func.lower(column).endswith(value, autoescape=True)
    return column == value


def mail_list(
    session: Session, *, status: str | None = None, sender: str | None = None, window: Window | None = None
) -> list[JsonDict]:
    """``mail list``: inbound mail in id order (or newest first), optionally
    of one status, from one address or domain, since a time."""
    stmt = (
        select(InboundMail, Ticket.key)
        .outerjoin(Ticket, col(Ticket.id) == col(InboundMail.ticket_id))
        .options(defer(InboundMail.raw_inline))  # type: ignore[arg-type]  # queued mail's bytes: not listed
    )
    if status:
        stmt = stmt.where(InboundMail.status == status)
    if sender:
        stmt = stmt.where(_address_filter(col(InboundMail.from_addr), sender))
    stmt = (window or Window()).apply(stmt, col(InboundMail.id), col(InboundMail.received_at))
    return [mail_json(mail, key) for mail, key in session.exec(stmt)]


def mail_detail(session: Session, mail: InboundMail) -> JsonDict:
    """``mail show``: the list entry plus the envelope and spool details."""
    key = None
    if mail.ticket_id is not None:
        ticket = session.get(Ticket, mail.ticket_id)
        key = ticket.key if ticket else None
    data = mail_json(mail, key)
    data.update(
        {
            "subject": mail.subject,
            "envelope_from": mail.envelope_from,
            "recipient": mail.recipient,
            "trusted": mail.trusted,
            "raw_size": mail.raw_size,
            "raw_sha256": mail.raw_sha256,
            "attempts": mail.attempts,
            "processed_at": iso(mail.processed_at),
            "raw_removed_at": iso(mail.raw_removed_at),  # retention removed the raw bytes (null: kept)
        }
    )
    return data


# -- organizations and accounts -----------------------------------------


def org_list(session: Session) -> list[JsonDict]:
    """``org list``: organizations by name, with their domains and member count."""
    orgs = session.exec(select(Organization).order_by(col(Organization.name))).all()
    domains: dict[int, list[str]] = defaultdict(list)
    for dom in session.exec(select(OrganizationDomain)):
        domains[dom.organization_id].append(dom.domain)
    counts: dict[int | None, int] = {
        org_id: n
        for org_id, n in session.exec(
            select(Account.organization_id, func.count())
            .where(col(Account.organization_id).is_not(None))
            .group_by(col(Account.organization_id))
        )
    }
    return [
        {
            "name": org.name,
            "domains": sorted(domains.get(org.id or 0, [])),
            "share_by_default": org.share_by_default,
            "members": counts.get(org.id, 0),
        }
        for org in orgs
    ]


def _account_json(account: Account, org_name: str | None) -> JsonDict:
    return {
        "email": account.email,
        "name": account.name,
        "state": account.state,
        "role": account.role,
        "organization": org_name,
        "locale": account.locale,
        "created_at": iso(account.created_at),
    }


def account_list(
    session: Session, *, role: str | None = None, state: str | None = None, org: str | None = None,
    since: dt.datetime | None = None, limit: int | None = None, offset: int = 0,
) -> list[JsonDict]:
    """``account list``: accounts by address, optionally of one role, state
    or organization, created since a time."""
    stmt = (
        select(Account, Organization.name)
        .outerjoin(Organization, col(Organization.id) == col(Account.organization_id))
        .order_by(col(Account.email))
    )
    if role:
        stmt = stmt.where(Account.role == role)
    if state:
        stmt = stmt.where(Account.state == state)
    if org:
        stmt = stmt.where(Organization.name == org)
    if since is not None:
        stmt = stmt.where(col(Account.created_at) >= since)
    if offset:
        stmt = stmt.offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [_account_json(account, org_name) for account, org_name in session.exec(stmt)]


def account_show(session: Session, email: str) -> JsonDict:
    """``account show``: the list entry plus the keys of the tickets it reported."""
    account = get_account(session, email)
    org = session.get(Organization, account.organization_id) if account.organization_id else None
    data = _account_json(account, org.name if org else None)
    data["tickets"] = list(
        session.exec(
            select(Ticket.key).where(Ticket.reporter_id == account.id).order_by(col(Ticket.number))
        ).all()
    )
    return data


# -- outbox -------------------------------------------------------------


def outbox_list(
    session: Session, *, status: str | None = None, to: str | None = None, template: str | None = None,
    window: Window | None = None,
) -> list[JsonDict]:
    """``outbox list``: outbound mail in id order (or newest first),
    optionally of one status, to one address or domain, of one template,
    queued since a time."""
    stmt = select(OutboundMail, Ticket.key).outerjoin(Ticket, col(Ticket.id) == col(OutboundMail.ticket_id))
    if status:
        stmt = stmt.where(OutboundMail.status == status)
    if to:
        stmt = stmt.where(_address_filter(col(OutboundMail.to_addr), to))
    if template:
        stmt = stmt.where(OutboundMail.template == template)
    stmt = (window or Window()).apply(stmt, col(OutboundMail.id), col(OutboundMail.created_at))
    return [
        {
            "id": out.id,
            "to": out.to_addr,
            "template": out.template,
            "subject": out.subject,
            "message_id": out.message_id,
            "ticket": key,
            "status": out.status,
            "attempts": out.attempts,
            "last_error": out.last_error,
        }
        for out, key in session.exec(stmt)
    ]


# -- status (``gateway status``, the metrics endpoint) ------------------


def _age_seconds(value: dt.datetime | None, now: dt.datetime) -> float | None:
    if value is None:
        return None
    return max(0.0, round((now - as_utc(value)).total_seconds(), 1))


def status_json(session: Session, now: dt.datetime | None = None) -> JsonDict:
    """What an operator looks at first when a customer says "my mail never
    arrived": is mail waiting (spool depth, oldest queued), did some end in
    the quarantine, is the outbox failing, when did each IMAP mailbox last
    succeed. Every query is a group-by on an indexed status column or a
    lookup by primary key, cheap enough for every metrics scrape."""
    now = now or dt.datetime.now(dt.UTC)
    inbound = {str(s): 0 for s in MailStatus}
    for status, n in session.exec(
        select(InboundMail.status, func.count()).group_by(col(InboundMail.status))
    ):
        inbound[status] = int(n)
    # The lowest queued id is the oldest queued mail: (status, id) is indexed.
    oldest = session.exec(
        select(InboundMail.received_at)
        .where(InboundMail.status == MailStatus.queued)
        .order_by(col(InboundMail.id))
        .limit(1)
    ).first()
    last = session.exec(select(InboundMail.received_at).order_by(col(InboundMail.id).desc()).limit(1)).first()
    outbox = {str(s): 0 for s in OutboxStatus}
    for status, n in session.exec(
        select(OutboundMail.status, func.count()).group_by(col(OutboundMail.status))
    ):
        outbox[status] = int(n)
    imap = [
        {
            "mailbox": c.mailbox,
            "last_success_at": iso(c.last_success_at),
            "last_error": c.last_error,
            "last_error_at": iso(c.last_error_at),
            # The error is current when nothing succeeded after it.
            "failing": c.last_error_at is not None
            and (c.last_success_at is None or as_utc(c.last_error_at) >= as_utc(c.last_success_at)),
        }
        for c in session.exec(select(ImapCursor).order_by(col(ImapCursor.mailbox)))
    ]
    return {
        "spool": {
            "depth": inbound[MailStatus.queued] + inbound[MailStatus.processing],
            "queued": inbound[MailStatus.queued],
            "processing": inbound[MailStatus.processing],
            "oldest_queued_at": iso(oldest),
            "oldest_queued_age_seconds": _age_seconds(oldest, now),
        },
        "quarantined": inbound[MailStatus.quarantined],
        # Agents' mail the desk could not authenticate (a trust source is
        # missing from the config): quarantined, never acted on.
        "quarantined_agent_mail": int(session.exec(
            select(func.count()).select_from(InboundMail)
            .where(InboundMail.status == MailStatus.quarantined)
            .where(col(InboundMail.disposition).startswith(f"quarantined: {AGENT_UNTRUSTED_REASON}"))
        ).one()),
        "inbound": inbound,
        "last_received_at": iso(last),
        "outbox": outbox,
        # automatic mail to unverified addresses held back by the desk-wide cap
        "outbox_unverified_capped": repo.backscatter_counts(session.connection()),
        "imap": imap,
    }
