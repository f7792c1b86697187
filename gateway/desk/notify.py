"""Decide who gets which mail after a desk operation, and queue the outbox
rows (template name, recipient, ticket, data). The same decisions whether
the operation came by mail, from the command line or from the web. Never
renders or sends: the outbound sender does, and the renderer leaves every
ticket text out of mail to an address that is not verified.

Rules: a new ticket gets an acknowledgement (``request_created``) to its
reporter, or a ``signup_invitation`` when the reporter is an unverified
account (at most one per address per day); a new public comment goes to the
reporter, the participants and, when the ticket is shared, the
organization's members (``comment_added``); a ticket resolved, closed or
reopened is told to the reporter and the participants (``status_changed``);
a person a ticket is shared with is told so (``ticket_shared``). Never to
the one who did it, never to robots, bounced or disabled addresses, never to
the desk itself. Nobody gets more than ``security.max_auto_mails_per_hour``
automatic mails."""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import Connection

from gateway.domain import AccountState, OutboxStatus, TicketStatus, is_desk_address
from gateway.settings import Settings
from gateway.store import repo
from gateway.store.models import utcnow
from gateway.store.repo import AccountRow, TicketRow

log = logging.getLogger("gateway.notify")

INVITATION_INTERVAL = dt.timedelta(days=1)
# The status changes the customer side hears about.
_CLOSED_STATES = frozenset({TicketStatus.resolved.value, TicketStatus.closed.value})


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
        # Held back, never silently: a person who gets this many automatic
        # mails an hour is more likely a robot in a loop.
        log.warning("notify: %s to %s held back: %d automatic mails in the last hour (the limit)",
                    template, account.email, recent[0])
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


def _queue_all(
    conn: Connection,
    settings: Settings,
    ids: list[int],
    template: str,
    ticket: TicketRow,
    data: dict[str, object],
    cause_mail_id: int | None,
) -> list[int]:
    rows = []
    for account in repo.accounts_by_id(conn, dict.fromkeys(ids)):
        row = queue(conn, settings, account, template, ticket, data, cause_mail_id)
        if row:
            rows.append(row)
    return rows


def ticket_created(
    conn: Connection,
    settings: Settings,
    ticket: TicketRow,
    reporter: AccountRow,
    cause_mail_id: int | None = None,
    *,
    sender_authenticated: bool = True,
) -> list[int]:
    """The acknowledgement (or, to a stranger, the signup invitation) of a
    new ticket. ``sender_authenticated``: the mail that created it passed
    DMARC or an aligned SPF/DKIM check at our MTA (always so for the command
    line and the web). When the operator has told us which MTA to believe
    (``trusted_authserv_id``), an unverified address whose mail did not pass
    gets nothing: its From may be forged, and the mail would be
    backscatter."""
    if (
        reporter.state == AccountState.unverified
        and settings.security.trusted_authserv_id
        and not sender_authenticated
    ):
        return []
    # No ticket_key in the data: the renderer reads the key from the ticket
    # (a new ticket's is only a placeholder until its transaction commits).
    data: dict[str, object] = {}
    recent = repo.recent_mail_counts(conn, reporter.email, utcnow(), INVITATION_INTERVAL)
    template = "request_created"
    if reporter.state == AccountState.unverified and recent[1] == 0:
        template = "signup_invitation"
    row = queue(conn, settings, reporter, template, ticket, data, cause_mail_id, recent)
    return [row] if row else []


def comment_added(
    conn: Connection,
    settings: Settings,
    ticket: TicketRow,
    comment_id: int,
    public: bool,
    author: AccountRow,
    cause_mail_id: int | None = None,
) -> list[int]:
    """A public comment, to everyone on the ticket but its author."""
    if not public:
        return []
    data: dict[str, object] = {"comment_id": comment_id}  # the key: see ticket_created
    ids = [i for i in repo.audience_ids(conn, ticket) if i != author.id]
    return _queue_all(conn, settings, ids, "comment_added", ticket, data, cause_mail_id)


def status_changed(
    conn: Connection,
    settings: Settings,
    ticket: TicketRow,
    previous: str,
    new: str,
    actor: AccountRow | None,
    cause_mail_id: int | None = None,
) -> list[int]:
    """Resolved, closed or reopened: to the reporter and the participants."""
    if new in _CLOSED_STATES:
        event = new
    elif previous in _CLOSED_STATES:
        event = "reopened"
    else:
        return []
    data: dict[str, object] = {"ticket_key": ticket.key, "event": event}
    if actor is not None and actor.role != "agent":
        # A customer (the reporter, a colleague) did it, not the desk: the
        # mail says who.
        data["by"] = actor.name or actor.email
    ids = [ticket.reporter_id, *repo.participant_ids(conn, ticket.id)]
    if actor is not None:
        ids = [i for i in ids if i != actor.id]
    return _queue_all(conn, settings, ids, "status_changed", ticket, data, cause_mail_id)


def shared_with(
    conn: Connection,
    settings: Settings,
    ticket: TicketRow,
    person: AccountRow,
    actor: AccountRow | None,
    cause_mail_id: int | None = None,
) -> list[int]:
    """A person the ticket was shared with learns of it."""
    if actor is not None and actor.id == person.id:
        return []
    data: dict[str, object] = {}  # the key: see ticket_created
    row = queue(conn, settings, person, "ticket_shared", ticket, data, cause_mail_id)
    return [row] if row else []


def agents_told(
    conn: Connection,
    settings: Settings,
    ticket: TicketRow,
    event: str,
    actor: AccountRow | None,
    as_agent: bool,
    comment_id: int | None = None,
    cause_mail_id: int | None = None,
) -> list[int]:
    """A customer's new ticket (``event`` ``created``) or public reply
    (``commented``), with its full text, to the ticket's assignee or, while
    it has none, to ``desk.agent_notify``. Not for what an agent did, never
    to the one who did it. Not counted against the hourly cap meant for
    robots (``automatic`` False): an agent must hear of every one."""
    if as_agent:
        return []
    targets: list[tuple[str, str | None]] = []
    if ticket.assignee_id is not None:
        agent = repo.account_by_id(conn, ticket.assignee_id)
        if agent is not None and agent.state != AccountState.disabled:
            targets.append((agent.email, agent.locale))
    else:
        targets = [(address, None) for address in settings.desk.agent_notify]
    data: dict[str, object] = {"event": event}
    if comment_id is not None:
        data["comment_id"] = comment_id
    now = utcnow()
    rows = []
    for address, locale in targets:
        if actor is not None and address == actor.email:
            continue
        if is_desk_address(address, settings.desk_addresses()):
            continue
        rows.append(repo.insert_outbox(
            conn, to_addr=address, template="agent_notice", locale=locale or settings.desk.default_locale,
            ticket_id=ticket.id, cause_mail_id=cause_mail_id, data=data, automatic=False,
            status=str(OutboxStatus.queued), attempts=0, next_attempt_at=now, created_at=now,
        ))
    return rows
