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

from sqlalchemy import Connection

from gateway.domain import AccountState, OutboxStatus, is_desk_address
from gateway.pipeline.apply import Applied
from gateway.settings import Settings
from gateway.store import repo
from gateway.store.models import utcnow
from gateway.store.repo import AccountRow, TicketRow

INVITATION_INTERVAL = dt.timedelta(days=1)


def _mailable(account: AccountRow, settings: Settings) -> bool:
    return (
        account.state != AccountState.disabled
        and not account.is_robot
        and account.bounced_at is None
        and not is_desk_address(account.email, settings.desk_addresses())
    )


def queue(
    conn: Connection,
    settings: Settings,
    account: AccountRow,
    template: str,
    ticket: TicketRow | None,
    data: dict[str, object],
    cause_mail_id: int | None = None,
    recent: tuple[int, int] | None = None,
) -> int | None:
    """Insert one outbox row unless the recipient's hourly cap is reached;
    returns its id."""
    if not _mailable(account, settings):
        return None
    now = utcnow()
    if recent is None:
        recent = repo.recent_mail_counts(conn, account.email, now, INVITATION_INTERVAL)
    if recent[0] >= settings.security.max_auto_mails_per_hour:
        return None
    return repo.insert_outbox(
        conn,
        to_addr=account.email,
        template=template,
        locale=account.locale or settings.desk.default_locale,
        ticket_id=ticket.id if ticket else None,
        cause_mail_id=cause_mail_id,
        data=data,
        automatic=True,
        status=str(OutboxStatus.queued),
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )


def notify_created(
    conn: Connection,
    settings: Settings,
    applied: Applied,
    reporter: AccountRow,
    cause_mail_id: int | None = None,
    *,
    sender_authenticated: bool = True,
) -> list[int]:
    """The acknowledgement (or, to a stranger, the signup invitation) of a
    new ticket. ``sender_authenticated``: the mail that created it passed
    DMARC or an aligned SPF/DKIM check at our MTA. When the operator has told
    us which MTA to believe (``trusted_authserv_id``), an unverified address
    whose mail did not pass gets nothing: its From may be forged, and the
    mail would be backscatter."""
    if (
        reporter.state == AccountState.unverified
        and settings.security.trusted_authserv_id
        and not sender_authenticated
    ):
        return []
    ticket = applied.ticket
    # No ticket_key in the data: the renderer reads the key from the ticket
    # (a new ticket's is only a placeholder until its transaction commits).
    data: dict[str, object] = {}
    recent = repo.recent_mail_counts(conn, reporter.email, utcnow(), INVITATION_INTERVAL)
    template = "request_created"
    if reporter.state == AccountState.unverified and recent[1] == 0:
        template = "signup_invitation"
    row = queue(conn, settings, reporter, template, ticket, data, cause_mail_id, recent)
    return [row] if row else []


def notify_commented(
    conn: Connection,
    settings: Settings,
    applied: Applied,
    author: AccountRow,
    cause_mail_id: int | None = None,
) -> list[int]:
    if applied.comment_id is None or not applied.public:
        return []
    data: dict[str, object] = {"comment_id": applied.comment_id}  # the key: see notify_created
    ids = [i for i in repo.audience_ids(conn, applied.ticket) if i != author.id]
    rows = []
    for account in repo.accounts_by_id(conn, ids):
        row = queue(conn, settings, account, "comment_added", applied.ticket, data, cause_mail_id)
        if row:
            rows.append(row)
    return rows
