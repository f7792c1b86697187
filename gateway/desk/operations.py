"""The desk's operations on tickets: create, comment, transition, set
priority / request type / fields, assign, share and unshare.

Every entry point calls these: the mail pipeline (``pipeline/apply.py``
translates a parsed mail into them), the command line and the web. Each
operation, in the caller's transaction:

1. checks that its actor may do it (``access``; a refusal raises
   ``Forbidden``, which the web shows as "not found"),
2. changes the ticket,
3. records what changed in the ticket's history (``ticket_event``: when,
   who, what, from → to),
4. queues the notifications ``notify`` decides for it.

The actor is an account (with agent privileges in effect or not) or the
desk itself (``Actor.system``); ``source`` says how the request arrived
(``email``, ``cli``, ``web``, ``system``) and ``mail_id`` which inbound mail
carried it. Operations work on Core rows (``repo``) on one ``Connection``:
the mail pipeline runs them hundreds of times a second."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import Connection

from gateway.desk import access, notify
from gateway.domain import ParsedAttachment, Priority, Refused, RequestType, TicketStatus, normalize_address
from gateway.settings import Settings
from gateway.store import numbering, repo
from gateway.store.blobs import BlobStore
from gateway.store.repo import AccountRow, OrgRow, TicketRow

E = TypeVar("E", bound=StrEnum)


class Forbidden(Refused):
    """The actor may not do this on this ticket (the web answers 404)."""


class Invalid(Refused):
    """The request itself is wrong (an unknown status, an empty comment, a
    person outside the organization); the message says what."""


@dataclass(frozen=True)
class Actor:
    """Who does an operation, and how the request arrived."""

    account: AccountRow | None  # None: the desk itself ("system")
    as_agent: bool  # agent privileges in effect (by mail: only from a trusted source)
    source: str  # email, cli, web, system
    mail_id: int | None = None  # the inbound mail that carried the request
    # The mail passed DMARC or an aligned SPF/DKIM check (or the request
    # did not come by mail): decides whether a stranger may be answered.
    authenticated: bool = True

    @classmethod
    def system(cls, source: str = "system") -> Actor:
        return cls(account=None, as_agent=True, source=source)

    @classmethod
    def of(cls, account: AccountRow, source: str) -> Actor:
        """An account acting outside mail (command line, web): its role
        counts as it is."""
        return cls(account=account, as_agent=account.role == "agent", source=source)

    @property
    def id(self) -> int | None:
        return self.account.id if self.account is not None else None

    @property
    def name(self) -> str:
        return self.account.email if self.account is not None else "system"


@dataclass(frozen=True)
class Desk:
    """What the operations need besides the connection."""

    settings: Settings
    blobs: BlobStore


@dataclass
class NewTicket:
    request_type: RequestType
    summary: str
    description: str
    priority: Priority = Priority.medium
    fields: Mapping[str, Any] = field(default_factory=dict)
    attachments: Sequence[ParsedAttachment] = ()
    # None: the organization's share_by_default decides.
    share_with_org: bool | None = None
    # People of the reporter's organization it is shared with; they are
    # told by mail.
    share_with: Sequence[AccountRow] = ()
    # People who were addressed by the very mail that made the ticket (its
    # To/Cc): they join silently, they already have the text.
    addressed: Sequence[AccountRow] = ()
    reporter: AccountRow | None = None  # None: the actor (an agent may file for a customer)
    # The reporter's organization, when the caller has it at hand (the mail
    # pipeline does); otherwise it is looked up.
    organization: OrgRow | None = None
    message_id: str | None = None
    linked_key: str | None = None  # the closed ticket a reply to it continues
    threaded_by: str | None = None


@dataclass
class NewComment:
    body: str
    internal: bool = False
    attachments: Sequence[ParsedAttachment] = ()
    addressed: Sequence[AccountRow] = ()  # as NewTicket.addressed
    message_id: str | None = None
    threaded_by: str | None = None


@dataclass
class Done:
    """The result of an operation: the ticket (as it was before the change:
    read it again for the new values), the comment it made, the outbox
    rows it queued."""

    ticket: TicketRow
    comment_id: int | None = None
    public: bool = True
    changed: bool = True
    outbox_ids: list[int] = field(default_factory=list)


class _History:
    """The events of one operation, written in one statement at its end."""

    def __init__(self, ticket_id: int, actor: Actor) -> None:
        self.ticket_id = ticket_id
        self.actor = actor
        self.rows: list[dict[str, Any]] = []

    def add(self, action: str, old: Any = None, new: Any = None, comment_id: int | None = None) -> None:
        self.rows.append({
            "ticket_id": self.ticket_id,
            "action": action,
            "actor_id": self.actor.id,
            "source": self.actor.source,
            "from_value": old,
            "to_value": new,
            "comment_id": comment_id,
            "inbound_mail_id": self.actor.mail_id,
        })

    def write(self, conn: Connection) -> None:
        repo.insert_events(conn, self.rows)


# -- authorization helpers ------------------------------------------------------


def _require_access(conn: Connection, actor: Actor, ticket: TicketRow) -> None:
    if actor.account is None or actor.as_agent:
        return
    if not access.may_access(conn, actor.account, ticket, as_agent=False):
        raise Forbidden(f"{actor.name} may not see {ticket.key}")


def _require_agent(actor: Actor, ticket: TicketRow, what: str) -> None:
    if not actor.as_agent:
        raise Forbidden(f"only agents may change the {what} of {ticket.key}")


# -- operations -----------------------------------------------------------------


def create_ticket(conn: Connection, desk: Desk, actor: Actor, new: NewTicket) -> Done:
    """A new ticket, reported by ``new.reporter`` or the actor. From mail
    (``actor.mail_id``) it carries a placeholder number until the caller's
    ``numbering.number_pending`` just before the commit (see there); from
    anywhere else it is numbered at once."""
    reporter = new.reporter or actor.account
    if reporter is None:
        raise Invalid("a ticket needs a reporter")
    if not actor.as_agent and (actor.account is None or reporter.id != actor.account.id):
        raise Forbidden("only agents may file a request for someone else")
    settings = desk.settings
    prefix = settings.desk.ticket_prefix
    org = new.organization
    if org is None or org.id != reporter.organization_id:
        org = repo.org_by_id(conn, reporter.organization_id) if reporter.organization_id else None
    share_org = new.share_with_org if new.share_with_org is not None else bool(org and org.share_by_default)
    number, key = numbering.new_ticket_number(conn, prefix, actor.mail_id)
    for person in new.share_with:
        _check_shareable(person, reporter, actor)
    ticket = repo.insert_ticket(
        conn,
        number=number,
        key=key,
        request_type=str(new.request_type),
        summary=new.summary[:500],
        description=new.description,
        status=str(TicketStatus.waiting_for_support),
        priority=str(new.priority),
        reporter_id=reporter.id,
        organization_id=org.id if org is not None and share_org else None,
        fields=dict(new.fields),
        message_id=new.message_id,
        linked_key=new.linked_key,
        source_mail_id=actor.mail_id,
        threaded_by=new.threaded_by,
    )
    history = _History(ticket.id, actor)
    history.add("created")
    _store_attachments(conn, desk.blobs, ticket, None, new.attachments)
    if org is not None and share_org:
        history.add("shared", None, org.name)
    done = Done(ticket=ticket)
    _join(conn, ticket, reporter, new.addressed, history)
    for person in _join(conn, ticket, reporter, new.share_with, history):
        done.outbox_ids += notify.shared_with(conn, settings, ticket, person, actor.account, actor.mail_id)
    history.write(conn)
    done.outbox_ids += notify.ticket_created(
        conn, settings, ticket, reporter, actor.mail_id, sender_authenticated=actor.authenticated
    )
    done.outbox_ids += notify.agents_told(
        conn, settings, ticket, "created", actor.account, actor.as_agent, None, actor.mail_id
    )
    return done


def add_comment(conn: Connection, desk: Desk, actor: Actor, ticket: TicketRow, new: NewComment) -> Done:
    """A comment, and the status move SPEC §3 gives it: a customer's sets
    ``waiting_for_support`` (reopening a resolved ticket), a public agent's
    ``waiting_for_customer``; an internal note changes nothing. Only agents
    write internal notes; a customer cannot comment on a closed ticket (by
    mail their reply becomes a new ticket instead)."""
    author = actor.account
    if author is None:
        raise Invalid("a comment needs an author")
    _require_access(conn, actor, ticket)
    if new.internal and not actor.as_agent:
        raise Forbidden("only agents write internal notes")
    if ticket.status == TicketStatus.closed and not actor.as_agent:
        raise Forbidden(f"{ticket.key} is closed")
    comment_id = repo.insert_comment(
        conn,
        ticket_id=ticket.id,
        author_id=author.id,
        body=new.body,
        public=not new.internal,
        source=actor.source,
        message_id=new.message_id,
        inbound_mail_id=actor.mail_id,
        threaded_by=new.threaded_by,
    )
    history = _History(ticket.id, actor)
    history.add("commented", None, "internal" if new.internal else "public", comment_id=comment_id)
    status = None
    if not new.internal:
        status = TicketStatus.waiting_for_customer if actor.as_agent else TicketStatus.waiting_for_support
        if status == ticket.status:
            status = None
        else:
            history.add("status", ticket.status, str(status))
    repo.set_ticket_status(conn, ticket.id, status)
    _store_attachments(conn, desk.blobs, ticket, comment_id, new.attachments)
    _join(conn, ticket, author, new.addressed, history)
    history.write(conn)
    done = Done(ticket=ticket, comment_id=comment_id, public=not new.internal)
    done.outbox_ids += notify.comment_added(
        conn, desk.settings, ticket, comment_id, not new.internal, author, actor.mail_id
    )
    if not new.internal:
        done.outbox_ids += notify.agents_told(
            conn, desk.settings, ticket, "commented", author, actor.as_agent, comment_id, actor.mail_id
        )
    return done


def transition(conn: Connection, desk: Desk, actor: Actor, ticket: TicketRow, status: str) -> Done:
    """Set the status. Agents and the desk may set any; a customer who may
    see the ticket may mark it resolved, and reopen it while resolved."""
    new = _choice(TicketStatus, status, "ticket status")
    _require_access(conn, actor, ticket)
    if not actor.as_agent and not access.customer_may_move(ticket.status, new.value):
        raise Forbidden(f"{actor.name} may not set {ticket.key} to {new.value}")
    if ticket.status == new.value:
        return Done(ticket=ticket, changed=False)
    repo.set_ticket_status(conn, ticket.id, new.value)
    history = _History(ticket.id, actor)
    history.add("status", ticket.status, new.value)
    history.write(conn)
    done = Done(ticket=ticket)
    done.outbox_ids += notify.status_changed(
        conn, desk.settings, ticket, ticket.status, new.value, actor.account, actor.mail_id
    )
    return done


def set_priority(conn: Connection, desk: Desk, actor: Actor, ticket: TicketRow, priority: str) -> Done:
    new = _choice(Priority, priority, "priority")
    _require_agent(actor, ticket, "priority")
    return _set_column(conn, actor, ticket, "priority", ticket.priority, new.value)


def set_request_type(
    conn: Connection, desk: Desk, actor: Actor, ticket: TicketRow, request_type: str
) -> Done:
    new = _choice(RequestType, request_type, "request type")
    _require_agent(actor, ticket, "request type")
    return _set_column(conn, actor, ticket, "request_type", ticket.request_type, new.value)


def assign(conn: Connection, desk: Desk, actor: Actor, ticket: TicketRow, assignee: str | None) -> Done:
    """Give the ticket to an agent (an address), or to nobody (None or
    ""). Only agents assign, and only to agents who are not disabled."""
    _require_agent(actor, ticket, "assignee")
    person = _person(conn, assignee) if assignee else None
    if person is not None and (person.role != "agent" or person.state == "disabled"):
        raise Invalid(f"{person.email} is not an agent")
    new_id = person.id if person is not None else None
    if ticket.assignee_id == new_id:
        return Done(ticket=ticket, changed=False)
    before = repo.account_by_id(conn, ticket.assignee_id) if ticket.assignee_id is not None else None
    repo.update_ticket(conn, ticket.id, assignee_id=new_id)
    history = _History(ticket.id, actor)
    history.add("assignee", before.email if before else None, person.email if person else None)
    history.write(conn)
    return Done(ticket=ticket)


def _choice(kind: type[E], value: str, what: str) -> E:
    """``value`` as a member of ``kind``, or Invalid naming the allowed ones."""
    try:
        return kind(value.strip().lower())
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise Invalid(f"unknown {what} {value!r} (one of: {allowed})") from None


def _set_column(conn: Connection, actor: Actor, ticket: TicketRow, column: str, old: str, new: str) -> Done:
    if old == new:
        return Done(ticket=ticket, changed=False)
    repo.update_ticket(conn, ticket.id, **{column: new})
    history = _History(ticket.id, actor)
    history.add(column, old, new)
    history.write(conn)
    return Done(ticket=ticket)


def set_fields(
    conn: Connection, desk: Desk, actor: Actor, ticket: TicketRow, changes: Mapping[str, Any]
) -> Done:
    """Set (or, with the value None or "", remove) custom fields. The
    history holds the changed fields only: ``from`` their old values,
    ``to`` their new ones."""
    _require_agent(actor, ticket, "fields")
    current = repo.ticket_fields(conn, ticket.id)
    updated = dict(current)
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    for name, value in changes.items():
        gone = value is None or value == "" or value == []
        if gone and name not in current:
            continue
        if not gone and current.get(name) == value:
            continue
        old[name] = current.get(name)
        new[name] = None if gone else value
        if gone:
            updated.pop(name, None)
        else:
            updated[name] = value
    if not new:
        return Done(ticket=ticket, changed=False)
    repo.update_ticket(conn, ticket.id, fields=updated)
    history = _History(ticket.id, actor)
    history.add("fields", old, new)
    history.write(conn)
    return Done(ticket=ticket)


SHARE_ORG = "org"


def share(conn: Connection, desk: Desk, actor: Actor, ticket: TicketRow, target: str) -> Done:
    """Share with the reporter's organization (``target`` = ``"org"``) or
    with a person (an e-mail address), who becomes a participant and is told
    by mail. The reporter and agents may share; a customer only with people
    of the reporter's organization."""
    _require_sharer(conn, actor, ticket)
    reporter = repo.account_by_id(conn, ticket.reporter_id)
    assert reporter is not None  # a foreign key
    history = _History(ticket.id, actor)
    done = Done(ticket=ticket, changed=False)
    if target == SHARE_ORG:
        if reporter.organization_id is None:
            raise Invalid(f"{reporter.email} belongs to no organization")
        if ticket.organization_id == reporter.organization_id:
            return done
        org = repo.org_by_id(conn, reporter.organization_id)
        assert org is not None
        repo.update_ticket(conn, ticket.id, organization_id=org.id)
        history.add("shared", None, org.name)
    else:
        person = _person(conn, target)
        _check_shareable(person, reporter, actor)
        for joined in _join(conn, ticket, reporter, [person], history):
            done.outbox_ids += notify.shared_with(conn, desk.settings, ticket, joined, actor.account,
                                                  actor.mail_id)
    done.changed = bool(history.rows)
    if done.changed:
        repo.update_ticket(conn, ticket.id)
    history.write(conn)
    return done


def unshare(conn: Connection, desk: Desk, actor: Actor, ticket: TicketRow, target: str) -> Done:
    """Stop sharing with the organization (``"org"``) or a participant."""
    _require_sharer(conn, actor, ticket)
    history = _History(ticket.id, actor)
    if target == SHARE_ORG:
        if ticket.organization_id is None:
            return Done(ticket=ticket, changed=False)
        org = repo.org_by_id(conn, ticket.organization_id)
        repo.update_ticket(conn, ticket.id, organization_id=None)
        history.add("unshared", org.name if org else None, None)
    else:
        person = _person(conn, target)
        if not repo.remove_participant(conn, ticket.id, person.id):
            return Done(ticket=ticket, changed=False)
        repo.update_ticket(conn, ticket.id)
        history.add("unshared", person.email, None)
    history.write(conn)
    return Done(ticket=ticket)


def _require_sharer(conn: Connection, actor: Actor, ticket: TicketRow) -> None:
    if actor.as_agent:
        return
    if actor.account is None or actor.account.id != ticket.reporter_id:
        _require_access(conn, actor, ticket)  # a stranger learns nothing more than "not found"
        raise Forbidden(f"only the reporter or an agent may change whom {ticket.key} is shared with")


def _person(conn: Connection, address: str) -> AccountRow:
    account = repo.account_by_email(conn, normalize_address(address))
    if account is None:
        raise Invalid(f"no account for {address}")
    return account


def _check_shareable(person: AccountRow, reporter: AccountRow, actor: Actor) -> None:
    """A customer shares only with people of the reporter's organization;
    agents with anyone who has an account."""
    if actor.as_agent:
        return
    if reporter.organization_id is None or person.organization_id != reporter.organization_id:
        raise Invalid(f"{person.email} is not in the organization of {reporter.email}")


def _join(
    conn: Connection, ticket: TicketRow, reporter: AccountRow, people: Sequence[AccountRow], history: _History
) -> list[AccountRow]:
    """Make ``people`` participants (not the reporter, not twice); the ones
    who joined now, each with a ``shared`` event."""
    joined = []
    for person in people:
        if person.id == ticket.reporter_id or person.id == reporter.id:
            continue
        if repo.add_participant(conn, ticket.id, person.id):
            history.add("shared", None, person.email)
            joined.append(person)
    return joined


def _store_attachments(
    conn: Connection,
    blobs: BlobStore,
    ticket: TicketRow,
    comment_id: int | None,
    parts: Sequence[ParsedAttachment],
) -> None:
    for part in parts:
        digest = blobs.put(conn, part.data)
        # The same logo in every signature is stored once per ticket.
        if (part.inline or part.content_id) and repo.attachment_exists(conn, ticket.id, digest):
            continue
        repo.insert_attachment(
            conn,
            ticket_id=ticket.id,
            comment_id=comment_id,
            filename=part.filename[:255],
            content_type=part.content_type[:255],
            size=part.size,
            sha256=digest,
            content_id=part.content_id,
            inline=part.inline,
        )
