"""What the customer portal's request pages read: a customer's requests
(filtered, searched, paged), one request with its public conversation, one
attachment. Whether the viewer may see a ticket is decided by the caller
(``desk.access``) before anything of it is shown; internal comments and
their attachments are never read here at all."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from gateway.store.models import Account, Attachment, Comment, Organization, Ticket, TicketParticipant
from gateway.store.read import iso, newest_first, ticket_basics, visible_tickets

CLOSED = ("resolved", "closed")


def customer_requests(
    session: Session,
    account_id: int,
    organization_id: int | None,
    *,
    status: str = "open",
    scope: str = "all",
    q: str = "",
    limit: int = 25,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """The requests the account may see, newest first, and how many match:
    ``status`` open | closed | all; ``scope`` mine (reported by the account)
    | org (shared with its organization) | all; ``q`` a key (``SD-12``) or
    words of the summary."""
    conditions: list[ColumnElement[bool]] = []
    if status == "open":
        conditions.append(col(Ticket.status).not_in(CLOSED))
    elif status == "closed":
        conditions.append(col(Ticket.status).in_(CLOSED))
    words = q.strip()
    if words:
        key = words.upper()
        terms = [col(Ticket.summary).ilike(f"%{w}%") for w in words.split()[:8]]
        conditions.append(or_(col(Ticket.key) == key, and_(*terms)))
    visible = visible_tickets(account_id, organization_id, *conditions, scope=scope)
    if visible is None:
        return [], 0
    total = session.exec(select(func.count()).select_from(visible.subquery())).one()
    rows = session.exec(
        select(Ticket, Account.email, Account.name)
        .join(Account, col(Account.id) == col(Ticket.reporter_id))
        .where(col(Ticket.id).in_(newest_first(visible, limit, offset)))
        .options(defer(Ticket.description), defer(Ticket.fields))  # type: ignore[arg-type]
        .order_by(col(Ticket.created_at).desc(), col(Ticket.id).desc())
    ).all()
    return [
        {
            "key": t.key, "summary": t.summary, "status": t.status, "priority": t.priority,
            "request_type": t.request_type, "reporter": email, "reporter_name": name,
            "created_at": iso(t.created_at), "updated_at": iso(t.updated_at),
        }
        for t, email, name in rows
    ], int(total)


def request_page(session: Session, ticket_id: int) -> dict[str, Any]:
    """Everything a customer may see of one ticket: its fields, who it is
    shared with, its public comments with their authors and attachments,
    and the attachments of the request itself."""
    ticket = session.get(Ticket, ticket_id)
    assert ticket is not None
    comments = session.exec(
        select(Comment, Account.email, Account.name, Account.role)
        .join(Account, col(Account.id) == col(Comment.author_id))
        .where(Comment.ticket_id == ticket_id)
        .where(col(Comment.public).is_(True))
        .order_by(col(Comment.created_at), col(Comment.id))
    ).all()
    public_ids = [c.id for c, *_ in comments]
    files = session.exec(
        select(Attachment)
        .where(Attachment.ticket_id == ticket_id)
        .where(or_(col(Attachment.comment_id).is_(None), col(Attachment.comment_id).in_(public_ids)))
        .where(col(Attachment.inline).is_(False))
        .order_by(col(Attachment.id))
    ).all()
    by_comment: dict[int | None, list[dict[str, Any]]] = {}
    for a in files:
        by_comment.setdefault(a.comment_id, []).append(
            {"id": a.id, "filename": a.filename, "content_type": a.content_type, "size": a.size}
        )
    return {
        **ticket_basics(ticket),
        "fields": dict(ticket.fields or {}),
        **ticket_people(session, ticket),
        "created_at": iso(ticket.created_at),
        "updated_at": iso(ticket.updated_at),
        "attachments": by_comment.get(None, []),
        "comments": [
            {
                "author": email, "author_name": name, "agent": role == "agent", "body": c.body,
                "created_at": iso(c.created_at), "attachments": by_comment.get(c.id, []),
            }
            for c, email, name, role in comments
        ],
    }


def ticket_people(session: Session, ticket: Ticket) -> dict[str, Any]:
    """Who a ticket's pages name (the customer's and the agents'): the
    reporter with their organization, the organization the ticket is shared
    with, the participants."""
    reporter = session.get(Account, ticket.reporter_id)
    org = session.get(Organization, ticket.organization_id) if ticket.organization_id else None
    reporter_org = (
        session.get(Organization, reporter.organization_id) if reporter and reporter.organization_id else None
    )
    participants = session.exec(
        select(Account.email, Account.name)
        .join(TicketParticipant, col(TicketParticipant.account_id) == col(Account.id))
        .where(TicketParticipant.ticket_id == ticket.id)
        .order_by(col(Account.email))
    ).all()
    return {
        "reporter": reporter.email if reporter else "",
        "reporter_name": reporter.name if reporter else "",
        "reporter_state": reporter.state if reporter else "",
        "reporter_organization_id": reporter_org.id if reporter_org else None,
        "reporter_organization": reporter_org.name if reporter_org else None,
        "organization": org.name if org else None,
        "participants": [{"email": e, "name": n} for e, n in participants],
    }


def attachment(session: Session, attachment_id: int) -> tuple[Attachment, bool] | None:
    """An attachment and whether it belongs to the request or a public
    comment (False: an internal note's, never shown to a customer)."""
    found = session.get(Attachment, attachment_id)
    if found is None:
        return None
    if found.comment_id is None:
        return found, True
    comment = session.get(Comment, found.comment_id)
    return found, bool(comment is not None and comment.public)


def organization(session: Session, organization_id: int | None) -> dict[str, Any] | None:
    """The account's organization as the request form needs it: its name
    and whether its requests are shared by default."""
    if organization_id is None:
        return None
    org = session.get(Organization, organization_id)
    if org is None:
        return None
    return {"id": org.id, "name": org.name, "share_by_default": org.share_by_default}


def colleagues(
    session: Session, organization_id: int | None, except_id: int, limit: int = 500
) -> list[dict[str, Any]]:
    """The people of an organization a request may be shared with or made
    the responsibility of: not disabled, not ``except_id``, by name."""
    if organization_id is None:
        return []
    rows = session.exec(
        select(Account.email, Account.name)
        .where(Account.organization_id == organization_id)
        .where(Account.id != except_id)
        .where(Account.state != "disabled")
        .order_by(func.lower(func.coalesce(func.nullif(Account.name, ""), Account.email)), col(Account.email))
        .limit(limit)
    ).all()
    return [{"email": email, "name": name} for email, name in rows]
