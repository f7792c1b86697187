"""Apply a message: create a ticket or add a comment, store attachments
(identical inline images such as signature logos once per ticket), add CC'd
members of the sender's organization as participants, move the status as
SPEC §3 says, and record the Message-ID so replies thread."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import select as sa_select
from sqlalchemy import update
from sqlmodel import Session

from gateway.domain import ParsedAttachment, ParsedMail, Priority, RequestType, TicketStatus
from gateway.pipeline.fields import ExtractedFields
from gateway.pipeline.identify import (
    Sender,
    create_account,
    domain_of,
    find_account,
    organization_for_domain,
)
from gateway.store.blobs import DatabaseBlobStore, FileBlobStore
from gateway.store.models import (
    Account,
    Attachment,
    Comment,
    MessageRef,
    Ticket,
    TicketCounter,
    TicketParticipant,
    utcnow,
)
from gateway.settings import Settings

_REPLY_PREFIX = re.compile(r"^\s*(?:(?:re|aw|wg|fw|fwd|antw)\s*:\s*)+", re.IGNORECASE)
_INTERNAL = re.compile(r"^\s*#internal\b[ \t]*\r?\n?", re.IGNORECASE)


@dataclass
class Applied:
    ticket: Ticket
    comment: Comment | None  # None: the message created the ticket
    previous_status: str | None = None
    new_participants: list[Account] = field(default_factory=list)

    @property
    def created(self) -> bool:
        return self.comment is None


def next_ticket_number(session: Session, prefix: str) -> int:
    """Atomic counter: the UPDATE takes a row lock (PostgreSQL) or runs under
    the write lock (SQLite), so two workers never get the same number."""
    stmt = (
        update(TicketCounter)
        .where(TicketCounter.prefix == prefix)  # type: ignore[arg-type]
        .values(value=TicketCounter.value + 1)
        .returning(TicketCounter.value)
    )
    value = session.execute(stmt).scalar_one_or_none()
    if value is None:
        # First ticket with this prefix: start after any existing number.
        highest = session.execute(
            sa_select(Ticket.number).order_by(Ticket.number.desc()).limit(1)  # type: ignore[attr-defined]
        ).scalar_one_or_none()
        session.add(TicketCounter(prefix=prefix, value=(highest or 0) + 1))
        session.flush()
        return (highest or 0) + 1
    return int(value)


def summary_from(subject: str) -> str:
    text = _REPLY_PREFIX.sub("", " ".join(subject.split()))
    return (text or "(no subject)")[:500]


def split_internal(body: str) -> tuple[bool, str]:
    """An agent mail whose first line is ``#internal`` is an internal note."""
    m = _INTERNAL.match(body)
    return (True, body[m.end():]) if m else (False, body)


def _store_attachments(
    session: Session,
    blobs: FileBlobStore | DatabaseBlobStore,
    ticket: Ticket,
    comment: Comment | None,
    parts: list[ParsedAttachment],
) -> None:
    assert ticket.id is not None
    for part in parts:
        digest = blobs.put(session, part.data)
        if part.inline or part.content_id:
            # The same logo in every signature is stored once per ticket.
            exists = session.execute(
                sa_select(Attachment.id)
                .where(Attachment.ticket_id == ticket.id)  # type: ignore[arg-type]
                .where(Attachment.sha256 == digest)  # type: ignore[arg-type]
                .limit(1)
            ).first()
            if exists:
                continue
        session.add(
            Attachment(
                ticket_id=ticket.id,
                comment_id=comment.id if comment else None,
                filename=part.filename[:255],
                content_type=part.content_type[:255],
                size=part.size,
                sha256=digest,
                content_id=part.content_id,
                inline=part.inline,
            )
        )


def _add_participants(
    session: Session, settings: Settings, ticket: Ticket, mail: ParsedMail, sender: Sender
) -> list[Account]:
    """CC'd (and co-addressed) members of the sender's organization join the
    ticket; an unknown address on one of the organization's domains becomes
    an unverified member first. Strangers on CC never do."""
    org = sender.organization
    if org is None or org.id is None:
        return []
    desk = settings.desk_addresses()
    added: list[Account] = []
    for address in dict.fromkeys([*mail.to, *mail.cc]):
        if address in desk or address == sender.account.email or "@" not in address:
            continue
        account = find_account(session, address)
        if account is None:
            dom_org = organization_for_domain(session, domain_of(address))
            if dom_org is None or dom_org.id != org.id:
                continue
            account = create_account(session, address, "", sender.account.locale or "de", settings)
        if account.organization_id != org.id or account.id == ticket.reporter_id:
            continue
        key = (ticket.id, account.id)
        if session.get(TicketParticipant, key) is None:
            session.add(TicketParticipant(ticket_id=ticket.id, account_id=account.id))  # type: ignore[arg-type]
            added.append(account)
    return added


def _remember(session: Session, message_id: str | None, ticket: Ticket) -> None:
    if message_id and ticket.id is not None:
        session.add(MessageRef(message_id=message_id[:998], ticket_id=ticket.id, direction="inbound"))


def create_ticket(
    session: Session,
    settings: Settings,
    blobs: FileBlobStore | DatabaseBlobStore,
    mail: ParsedMail,
    sender: Sender,
    request_type: RequestType,
    extracted: ExtractedFields,
    inbound_mail_id: int | None,
    linked_key: str | None = None,
) -> Applied:
    prefix = settings.desk.ticket_prefix
    number = next_ticket_number(session, prefix)
    org = sender.organization
    shared = org is not None and org.share_by_default
    now = utcnow()
    ticket = Ticket(
        number=number,
        key=f"{prefix}-{number}",
        request_type=request_type,
        summary=summary_from(mail.subject),
        description=mail.text,
        status=TicketStatus.waiting_for_support,
        priority=extracted.priority or Priority.medium,
        reporter_id=sender.account.id,  # type: ignore[arg-type]
        organization_id=org.id if shared and org else None,
        fields=dict(extracted.fields),
        message_id=mail.message_id,
        linked_key=linked_key,
        source_mail_id=inbound_mail_id,
        created_at=now,
        updated_at=now,
    )
    session.add(ticket)
    session.flush()
    _store_attachments(session, blobs, ticket, None, mail.attachments)
    added = _add_participants(session, settings, ticket, mail, sender)
    _remember(session, mail.message_id, ticket)
    return Applied(ticket=ticket, comment=None, new_participants=added)


def write_comment(
    session: Session,
    ticket: Ticket,
    author: Account,
    body: str,
    internal: bool,
    by_agent: bool,
    source: str,
    message_id: str | None = None,
    inbound_mail_id: int | None = None,
) -> tuple[Comment, str]:
    """Add a comment and move the status: a customer comment sets
    ``waiting_for_support`` (reopening a resolved ticket), a public agent
    comment ``waiting_for_customer``. Returns the comment and the status
    before."""
    comment = Comment(
        ticket_id=ticket.id,  # type: ignore[arg-type]
        author_id=author.id,  # type: ignore[arg-type]
        body=body,
        public=not internal,
        source=source,
        message_id=message_id,
        inbound_mail_id=inbound_mail_id,
    )
    session.add(comment)
    session.flush()
    previous = ticket.status
    if not internal:
        ticket.status = TicketStatus.waiting_for_customer if by_agent else TicketStatus.waiting_for_support
    ticket.updated_at = utcnow()
    return comment, previous


def add_comment(
    session: Session,
    settings: Settings,
    blobs: FileBlobStore | DatabaseBlobStore,
    mail: ParsedMail,
    sender: Sender,
    ticket: Ticket,
    inbound_mail_id: int | None,
) -> Applied:
    body = mail.reply_text or mail.text
    internal = False
    if sender.is_agent:
        internal, body = split_internal(body)
    comment, previous = write_comment(
        session, ticket, sender.account, body, internal, sender.is_agent, "email", mail.message_id, inbound_mail_id
    )
    _store_attachments(session, blobs, ticket, comment, mail.attachments)
    added = _add_participants(session, settings, ticket, mail, sender)
    _remember(session, mail.message_id, ticket)
    return Applied(ticket=ticket, comment=comment, previous_status=previous, new_participants=added)
