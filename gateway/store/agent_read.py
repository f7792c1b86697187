"""What the agents' workspace reads (SPEC §6 ``/agent``): the queue with
its filters, sorting, paging and counts per status, and one ticket with
everything — internal notes, the mail behind each entry and how it was
threaded, participants, the history. Only agents get here (the web checks
the role before calling)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select as sa_select
from sqlalchemy.orm import aliased, defer
from sqlmodel import Session, col, select

from gateway.store.models import (
    Account,
    Attachment,
    Comment,
    InboundMail,
    Organization,
    Ticket,
)
from gateway.store.portal_read import ticket_people
from gateway.store.read import PRIORITY_RANK, iso, ticket_basics, ticket_history
from gateway.store.repo import ERASED_RAW, TICKET

OPEN = ("waiting_for_support", "waiting_for_customer")
STATUSES = ("waiting_for_support", "waiting_for_customer", "resolved", "closed")
SORTS = ("updated", "created", "priority")


@dataclass
class QueueFilter:
    """The queue's filters; empty strings mean "any". ``status`` is a
    status, ``open`` (the default: waiting for support or for the customer)
    or ``all``; ``assignee`` is ``me``, ``none`` or an agent's address."""

    status: str = "open"
    priority: str = ""
    request_type: str = ""
    organization: str = ""  # an organization's name, or its beginning
    assignee: str = ""
    q: str = ""
    sort: str = "updated"


def queue(
    session: Session, f: QueueFilter, me_id: int, *, limit: int = 50, offset: int = 0
) -> tuple[list[dict[str, Any]], int, dict[str, int]]:
    """A page of the queue, how many match, and how many match per status
    (the other filters applied). Waiting-for-support tickets come first,
    then by the sort: last update or creation (newest first) or priority
    (highest first)."""
    conditions: list[Any] = []
    if f.priority:
        conditions.append(col(Ticket.priority) == f.priority)
    if f.request_type:
        conditions.append(col(Ticket.request_type) == f.request_type)
    if f.organization:
        # A name or its beginning, whatever the case: desks have thousands.
        named = col(Organization.name).istartswith(f.organization, autoescape=True)
        org_ids = select(Organization.id).where(named)
        conditions.append(col(Ticket.organization_id).in_(org_ids))
    if f.assignee == "me":
        conditions.append(col(Ticket.assignee_id) == me_id)
    elif f.assignee == "none":
        conditions.append(col(Ticket.assignee_id).is_(None))
    elif f.assignee:
        agent_ids = select(Account.id).where(Account.email == f.assignee)
        conditions.append(col(Ticket.assignee_id).in_(agent_ids))
    words = f.q.strip()
    if words:
        sqlite = session.get_bind().dialect.name == "sqlite"
        reporter_ids = select(Account.id).where(_contains(col(Account.email), words, sqlite))
        terms = [_contains(col(Ticket.summary), w, sqlite) for w in words.split()[:8]]
        conditions.append(or_(
            col(Ticket.key) == words.upper(), and_(*terms), col(Ticket.reporter_id).in_(reporter_ids),
        ))
    if f.status == "open":
        chosen = list(OPEN)
    elif f.status in STATUSES:
        chosen = [f.status]
    else:
        chosen = list(STATUSES)
    # With words, each of these reads every summary once (the status ranges
    # of the page's walk cover the table once between them), in SQLite's C
    # with the GIL released: the portal's other threads keep serving.
    counts = {
        status: int(n)
        for status, n in session.exec(
            select(Ticket.status, func.count()).where(*conditions).group_by(col(Ticket.status))
        ).all()
    }
    ids = _page_ids(session, conditions, chosen, counts, f.sort, limit, offset)
    total = sum(counts.get(s, 0) for s in chosen)
    reporter = aliased(Account)
    assignee = aliased(Account)
    # SQLAlchemy's own select: SQLModel's is typed for at most four columns.
    found = {
        row[0].id: row
        for row in session.execute(
            sa_select(Ticket, col(reporter.email), col(reporter.name), col(Organization.name),
                      col(assignee.email), col(assignee.name))
            .join(reporter, col(reporter.id) == col(Ticket.reporter_id))
            .join(Organization, col(Organization.id) == col(Ticket.organization_id), isouter=True)
            .join(assignee, col(assignee.id) == col(Ticket.assignee_id), isouter=True)
            .where(col(Ticket.id).in_(ids))
            .options(defer(Ticket.description), defer(Ticket.fields))  # type: ignore[arg-type]
        ).all()
    } if ids else {}
    rows = [found[i] for i in ids if i in found]
    return [
        {
            "key": t.key, "summary": t.summary, "status": t.status, "priority": t.priority,
            "request_type": t.request_type, "reporter": r_email, "reporter_name": r_name,
            "organization": org_name, "assignee": a_email, "assignee_name": a_name,
            "created_at": iso(t.created_at), "updated_at": iso(t.updated_at),
        }
        for t, r_email, r_name, org_name, a_email, a_name in rows
    ], total, counts


def _contains(column: Any, word: str, sqlite: bool) -> Any:
    """``column`` contains ``word``, whatever its case (``%`` and ``_`` in
    it are only themselves). SQLite's LIKE ignores the case of ASCII letters
    by itself; ``lower()`` on every summary would double a search's cost
    (umlauts then match only as typed)."""
    return column.contains(word, autoescape=True) if sqlite else column.icontains(word, autoescape=True)


def _page_ids(
    session: Session, conditions: list[Any], chosen: list[str], counts: dict[str, int], sort: str,
    limit: int, offset: int,
) -> list[int]:
    """The ids of one page of the queue, in its order: waiting for support
    first, then the other chosen statuses; within them by the sort.

    Not one ``ORDER BY CASE …`` over everything (a sort of every matching
    ticket, 300 ms at 100,000): per status (and, sorted by priority, per
    priority) the first ``offset + limit`` ids from an index range in the
    sort's order (``ix_ticket_status_updated``, ``…_created``,
    ``…_priority``), merged here."""
    want = offset + limit
    segments = [[s for s in chosen if s == "waiting_for_support"],
                [s for s in chosen if s != "waiting_for_support"]]
    key = col(Ticket.created_at) if sort == "created" else col(Ticket.updated_at)
    merged: list[int] = []
    for segment in segments:
        found: list[tuple[int, Any, int]] = []  # (priority rank, sort key, id): the larger the sooner
        for status in segment:
            if not counts.get(status):
                continue
            groups = list(PRIORITY_RANK) if sort == "priority" else [None]
            for priority in groups:
                stmt = sa_select(col(Ticket.id), key).where(col(Ticket.status) == status, *conditions)
                if priority is not None:
                    stmt = stmt.where(col(Ticket.priority) == priority)
                rank = PRIORITY_RANK.get(priority, 0) if priority else 0
                stmt = stmt.order_by(key.desc(), col(Ticket.id).desc()).limit(want)
                found += [(rank, when, tid) for tid, when in session.execute(stmt).all()]
        found.sort(key=lambda r: (r[0], r[1], r[2]), reverse=True)
        merged += [tid for _, _, tid in found[: want - len(merged)]]
        if len(merged) >= want:
            break
    return merged[offset:offset + limit]


def agents(session: Session) -> list[dict[str, Any]]:
    """The agents a ticket may be assigned to (not disabled), by name."""
    rows = session.exec(
        select(Account.email, Account.name)
        .where(Account.role == "agent")
        .where(Account.state != "disabled")
        .order_by(func.lower(func.coalesce(func.nullif(Account.name, ""), Account.email)))
        .limit(1000)
    ).all()
    return [{"email": e, "name": n} for e, n in rows]


def agent_ticket(session: Session, ticket_id: int) -> dict[str, Any]:
    """Everything about one ticket: its fields, reporter, organization,
    assignee, participants, every comment (internal ones marked) with its
    files and the mail it came from, and the history."""
    ticket = session.get(Ticket, ticket_id)
    assert ticket is not None
    assignee = session.get(Account, ticket.assignee_id) if ticket.assignee_id else None
    comments = session.exec(
        select(Comment, Account.email, Account.name, Account.role)
        .join(Account, col(Account.id) == col(Comment.author_id))
        .where(Comment.ticket_id == ticket_id)
        .order_by(col(Comment.created_at), col(Comment.id))
    ).all()
    files: dict[int | None, list[dict[str, Any]]] = {}
    for a in session.exec(
        select(Attachment).where(Attachment.ticket_id == ticket_id).order_by(col(Attachment.id))
    ).all():
        files.setdefault(a.comment_id, []).append(
            {"id": a.id, "filename": a.filename, "content_type": a.content_type, "size": a.size,
             "inline": a.inline}
        )
    mail_ids = {c.inbound_mail_id for c, *_ in comments if c.inbound_mail_id} | (
        {ticket.source_mail_id} if ticket.source_mail_id else set()
    )
    mails = {
        m.id: {"id": m.id, "from": m.from_addr, "subject": m.subject, "message_id": m.message_id,
               "received_at": iso(m.received_at), "source": m.source, "trusted": m.trusted,
               "raw_removed_at": iso(m.raw_removed_at), "raw_erased": m.raw_sha256 == ERASED_RAW}
        for m in session.exec(
            select(InboundMail).where(col(InboundMail.id).in_(mail_ids))
            .options(defer(InboundMail.raw_inline))  # type: ignore[arg-type]
        ).all()
    } if mail_ids else {}
    return {
        **ticket_basics(ticket),
        "id": ticket.id,
        "fields": dict(ticket.fields or {}),
        **ticket_people(session, ticket),
        "assignee": assignee.email if assignee else None,
        "assignee_name": assignee.name if assignee else None,
        "created_at": iso(ticket.created_at),
        "updated_at": iso(ticket.updated_at),
        "version": iso(ticket.updated_at),
        "linked_key": ticket.linked_key,
        "mail": mails.get(ticket.source_mail_id) if ticket.source_mail_id else None,
        "threaded_by": ticket.threaded_by,
        "attachments": files.get(None, []),
        "comments": [
            {
                "id": c.id, "author": email, "author_name": name, "agent": role == "agent",
                "internal": not c.public, "body": c.body, "source": c.source,
                "created_at": iso(c.created_at), "attachments": files.get(c.id, []),
                "mail": mails.get(c.inbound_mail_id) if c.inbound_mail_id else None,
                "threaded_by": c.threaded_by,
            }
            for c, email, name, role in comments
        ],
        "history": ticket_history(session, ticket),
    }


def changes_since(session: Session, ticket_id: int, version: str) -> list[dict[str, Any]]:
    """The history entries after ``version`` (a ticket's ``updated_at`` as
    the agent's form saw it): what "changed meanwhile" means."""
    ticket = session.get(Ticket, ticket_id)
    assert ticket is not None
    return [h for h in ticket_history(session, ticket) if (h["at"] or "") > version]


def mail_of_ticket(session: Session, mail_id: int, ticket_id: int) -> InboundMail | None:
    """An inbound mail, when it belongs to the ticket (its source or one of
    its comments'): the raw-message link on the ticket page shows nothing
    else."""
    mail = session.get(InboundMail, mail_id)
    if mail is None:
        return None
    ticket = session.get(Ticket, ticket_id)
    if ticket is not None and ticket.source_mail_id == mail_id:
        return mail
    on_ticket = session.exec(
        select(Comment.id).where(Comment.ticket_id == ticket_id).where(Comment.inbound_mail_id == mail_id)
    ).first()
    return mail if on_ticket is not None else None


def ticket_version(conn: Connection, ticket_id: int) -> str | None:
    """The ticket's ``updated_at`` as the agent's form carries it (its
    version): read in the saving transaction, compared before any change."""
    value = conn.execute(sa_select(TICKET.c.updated_at).where(TICKET.c.id == ticket_id)).scalar_one_or_none()
    return iso(value)
