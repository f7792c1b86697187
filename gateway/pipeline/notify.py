"""Decide who gets which mail and queue outbox rows (template name,
recipient, ticket, data). Never renders or sends: the outbound sender does.

Rules: a new ticket gets an acknowledgement (``request_created``) to its
reporter, or a ``signup_invitation`` when the reporter is an unverified
account (at most one per address per day); a new public comment goes to the
reporter, the participants and, when the ticket is shared, the
organization's members (``comment_added``), never to its author, never to
robots or bounced addresses, never to the desk itself. Nobody gets more than
``security.max_auto_mails_per_hour`` automatic mails."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlmodel import Session

from gateway.domain import AccountState, OutboxStatus
from gateway.pipeline.apply import Applied
from gateway.settings import Settings
from gateway.store.models import Account, OutboundMail, Ticket, TicketParticipant, utcnow

INVITATION_INTERVAL = dt.timedelta(days=1)


def _sent_since(session: Session, address: str, since: dt.datetime, template: str | None = None) -> int:
    stmt = (
        select(func.count())
        .select_from(OutboundMail)
        .where(OutboundMail.to_addr == address)  # type: ignore[arg-type]
        .where(OutboundMail.automatic)  # type: ignore[arg-type]
        .where(OutboundMail.created_at >= since)  # type: ignore[arg-type]
    )
    if template is not None:
        stmt = stmt.where(OutboundMail.template == template)  # type: ignore[arg-type]
    return int(session.execute(stmt).scalar_one())


def _mailable(account: Account, settings: Settings) -> bool:
    return (
        account.state != AccountState.disabled
        and not account.is_robot
        and account.bounced_at is None
        and account.email not in settings.desk_addresses()
    )


def queue(
    session: Session,
    settings: Settings,
    account: Account,
    template: str,
    ticket: Ticket | None,
    data: dict[str, object],
    cause_mail_id: int | None = None,
) -> OutboundMail | None:
    """Insert one outbox row unless the recipient's hourly cap is reached."""
    if not _mailable(account, settings):
        return None
    now = utcnow()
    cap = settings.security.max_auto_mails_per_hour
    if _sent_since(session, account.email, now - dt.timedelta(hours=1)) >= cap:
        return None
    row = OutboundMail(
        to_addr=account.email,
        template=template,
        locale=account.locale or settings.desk.default_locale,
        ticket_id=ticket.id if ticket else None,
        cause_mail_id=cause_mail_id,
        data=data,
        automatic=True,
        status=OutboxStatus.queued,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(row)
    return row


def _audience(session: Session, ticket: Ticket) -> list[Account]:
    """Reporter, participants and (when shared) organization members."""
    ids: dict[int, None] = {ticket.reporter_id: None}
    for (aid,) in session.execute(
        select(TicketParticipant.account_id).where(TicketParticipant.ticket_id == ticket.id)  # type: ignore[arg-type]
    ):
        ids[aid] = None
    if ticket.organization_id is not None:
        for (aid,) in session.execute(
            select(Account.id).where(Account.organization_id == ticket.organization_id)  # type: ignore[arg-type]
        ):
            ids[aid] = None
    accounts = session.execute(select(Account).where(Account.id.in_(list(ids)))).scalars()  # type: ignore[union-attr]
    return sorted(accounts, key=lambda a: a.id or 0)


def notify_created(
    session: Session, settings: Settings, applied: Applied, reporter: Account, cause_mail_id: int | None = None
) -> list[OutboundMail]:
    ticket = applied.ticket
    data: dict[str, object] = {"ticket_key": ticket.key}
    if reporter.state == AccountState.unverified:
        since = utcnow() - INVITATION_INTERVAL
        if _sent_since(session, reporter.email, since, "signup_invitation") == 0:
            row = queue(session, settings, reporter, "signup_invitation", ticket, data, cause_mail_id)
            return [row] if row else []
    row = queue(session, settings, reporter, "request_created", ticket, data, cause_mail_id)
    return [row] if row else []


def notify_commented(
    session: Session, settings: Settings, applied: Applied, author: Account, cause_mail_id: int | None = None
) -> list[OutboundMail]:
    comment = applied.comment
    if comment is None or not comment.public:
        return []
    data: dict[str, object] = {"ticket_key": applied.ticket.key, "comment_id": comment.id}
    rows = []
    for account in _recipients(session, applied.ticket, exclude=[author]):
        row = queue(session, settings, account, "comment_added", applied.ticket, data, cause_mail_id)
        if row:
            rows.append(row)
    return rows


def _recipients(session: Session, ticket: Ticket, exclude: Iterable[Account]) -> list[Account]:
    skip = {a.id for a in exclude}
    return [a for a in _audience(session, ticket) if a.id not in skip]
