"""Apply a message: create a ticket or add a comment, store attachments
(identical inline images such as signature logos once per ticket), add CC'd
members of the sender's organization as participants, move the status as
SPEC §3 says, and record the Message-ID so replies thread."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Connection

from gateway.domain import (
    ParsedAttachment,
    ParsedMail,
    Priority,
    RequestType,
    TicketStatus,
    is_desk_address,
)
from gateway.pipeline.fields import ExtractedFields
from gateway.pipeline.identify import Sender, create_account, domain_of, organization_for_domain
from gateway.settings import Settings
from gateway.store import repo
from gateway.store.blobs import DatabaseBlobStore, FileBlobStore
from gateway.store.repo import AccountRow, TicketRow

_REPLY_PREFIX = re.compile(r"^\s*(?:(?:re|aw|wg|fw|fwd|antw)\s*:\s*)+", re.IGNORECASE)
_INTERNAL = re.compile(r"^\s*#internal\b[ \t]*\r?\n?", re.IGNORECASE)


@dataclass
class Applied:
    ticket: TicketRow
    comment_id: int | None  # None: the message created the ticket
    public: bool = True


def summary_from(subject: str) -> str:
    text = _REPLY_PREFIX.sub("", " ".join(subject.split()))
    return (text or "(no subject)")[:500]


def split_internal(body: str) -> tuple[bool, str]:
    """An agent mail whose first line is ``#internal`` is an internal note."""
    m = _INTERNAL.match(body)
    return (True, body[m.end() :]) if m else (False, body)


def _store_attachments(
    conn: Connection,
    blobs: FileBlobStore | DatabaseBlobStore,
    ticket: TicketRow,
    comment_id: int | None,
    parts: list[ParsedAttachment],
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


def _add_participants(
    conn: Connection, settings: Settings, ticket: TicketRow, mail: ParsedMail, sender: Sender
) -> None:
    """CC'd (and co-addressed) members of the sender's organization join the
    ticket; an unknown address on one of the organization's domains becomes
    an unverified member first. Strangers on CC never do."""
    org = sender.organization
    if org is None:
        return
    desk = settings.desk_addresses()
    for address in dict.fromkeys([*mail.to, *mail.cc]):
        if is_desk_address(address, desk) or address == sender.account.email or "@" not in address:
            continue
        account = repo.account_by_email(conn, address)
        if account is None:
            dom_org = organization_for_domain(conn, domain_of(address))
            if dom_org is None or dom_org.id != org.id:
                continue
            account = create_account(conn, address, "", sender.account.locale or "de", settings)
        if account.organization_id != org.id or account.id == ticket.reporter_id:
            continue
        repo.add_participant(conn, ticket.id, account.id)


def remember(conn: Connection, mail: ParsedMail, ticket: TicketRow, ancestors: list[TicketRow]) -> None:
    """Record the mail's Message-ID for its ticket, and for the tickets it
    answered but whose people its sender may not see (see ThreadMatch)."""
    if not mail.message_id:
        return
    repo.remember_message_id(conn, mail.message_id, ticket.id)
    for other in ancestors:
        if other.id != ticket.id:
            repo.remember_message_id(conn, mail.message_id, other.id, direction="ancestor")


def create_ticket(
    conn: Connection,
    settings: Settings,
    blobs: FileBlobStore | DatabaseBlobStore,
    mail: ParsedMail,
    sender: Sender,
    request_type: RequestType,
    extracted: ExtractedFields,
    inbound_mail_id: int,
    linked_key: str | None = None,
    ancestors: list[TicketRow] | None = None,
) -> Applied:
    """A new ticket from ``mail``. It is numbered at the end of the
    transaction: the caller calls ``repo.number_new_tickets`` before the
    commit, and only then is its ``key`` real."""
    # The real number comes from repo.number_new_tickets just before the
    # commit (the caller's duty); until then a placeholder.
    number = repo.unnumbered_placeholder(inbound_mail_id)
    org = sender.organization
    ticket = repo.insert_ticket(
        conn,
        number=number,
        key=repo.placeholder_key(settings.desk.ticket_prefix, number),
        request_type=str(request_type),
        summary=summary_from(mail.subject),
        description=mail.text,
        status=str(TicketStatus.waiting_for_support),
        priority=str(extracted.priority or Priority.medium),
        reporter_id=sender.account.id,
        organization_id=org.id if org is not None and org.share_by_default else None,
        fields=dict(extracted.fields),
        message_id=mail.message_id,
        linked_key=linked_key,
        source_mail_id=inbound_mail_id,
    )
    _store_attachments(conn, blobs, ticket, None, mail.attachments)
    _add_participants(conn, settings, ticket, mail, sender)
    remember(conn, mail, ticket, ancestors or [])
    return Applied(ticket=ticket, comment_id=None)


def write_comment(
    conn: Connection,
    ticket: TicketRow,
    author: AccountRow,
    body: str,
    internal: bool,
    by_agent: bool,
    source: str,
    message_id: str | None = None,
    inbound_mail_id: int | None = None,
) -> Applied:
    """Add a comment and move the status: a customer comment sets
    ``waiting_for_support`` (reopening a resolved ticket), a public agent
    comment ``waiting_for_customer``; an internal note changes nothing."""
    comment_id = repo.insert_comment(
        conn,
        ticket_id=ticket.id,
        author_id=author.id,
        body=body,
        public=not internal,
        source=source,
        message_id=message_id,
        inbound_mail_id=inbound_mail_id,
    )
    status = None
    if not internal:
        status = TicketStatus.waiting_for_customer if by_agent else TicketStatus.waiting_for_support
    repo.set_ticket_status(conn, ticket.id, status)
    return Applied(ticket=ticket, comment_id=comment_id, public=not internal)


def add_comment(
    conn: Connection,
    settings: Settings,
    blobs: FileBlobStore | DatabaseBlobStore,
    mail: ParsedMail,
    sender: Sender,
    ticket: TicketRow,
    inbound_mail_id: int | None,
    ancestors: list[TicketRow] | None = None,
) -> Applied:
    body = mail.reply_text or mail.text
    internal = False
    if sender.is_agent:
        internal, body = split_internal(body)
    applied = write_comment(
        conn,
        ticket,
        sender.account,
        body,
        internal,
        sender.is_agent,
        "email",
        mail.message_id,
        inbound_mail_id,
    )
    _store_attachments(conn, blobs, ticket, applied.comment_id, mail.attachments)
    _add_participants(conn, settings, ticket, mail, sender)
    remember(conn, mail, ticket, ancestors or [])
    return applied
