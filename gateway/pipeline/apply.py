"""Translate a parsed mail into desk operations (``gateway.desk``): a new
ticket or a comment, with the mail's attachments, the sender's colleagues
it was addressed to, how it was threaded, and its Message-ID remembered so
replies thread. The operations do the rest (status, history,
notifications), exactly as they do for the command line and the web."""

from __future__ import annotations

import functools
import re

from sqlalchemy import Connection

from gateway.desk import operations
from gateway.desk.operations import Actor, Desk, Done, NewComment, NewTicket
from gateway.domain import ParsedMail, Priority, RequestType, is_desk_address
from gateway.pipeline.fields import ExtractedFields
from gateway.pipeline.identify import Sender, create_account, domain_of, organization_for_domain
from gateway.pipeline.reply_text import trim_blank_lines
from gateway.pipeline.thread import ThreadMatch
from gateway.store import repo
from gateway.store.repo import AccountRow, TicketRow

_INTERNAL = re.compile(r"^\s*#internal\b[ \t]*\r?\n?", re.IGNORECASE)


# What the desk's own subjects put before a summary (status_changed,
# ticket_shared): a reply that becomes a new ticket leaves it off.
_DESK_WORDS = ("gelöst", "geschlossen", "wieder geöffnet", "mit ihnen geteilt",
               "resolved", "closed", "reopened", "shared with you")


@functools.lru_cache(maxsize=8)
def _leading(prefix: str) -> re.Pattern[str]:
    return re.compile(
        rf"^\s*(?:(?:re|aw|wg|fw|fwd|antw)\s*:|\[\s*{re.escape(prefix)}-\d+\s*\]|"
        rf"(?:{'|'.join(re.escape(w) for w in _DESK_WORDS)})\s*:)\s*",
        re.IGNORECASE,
    )


def summary_from(subject: str, prefix: str = "SD") -> str:
    """A new ticket's summary from a mail's subject: without reply prefixes
    (Re:, AW:, …), ticket keys in brackets (``[SD-3]``: a reply to a closed
    ticket gets a key of its own, a stranger's mention of one is not theirs)
    and the status words of the desk's own subjects (``Gelöst:``)."""
    text = " ".join(subject.split())
    leading = _leading(prefix)
    while True:
        shorter = leading.sub("", text, count=1)
        if shorter == text:
            break
        text = shorter
    return (text or "(no subject)")[:500]


def split_internal(body: str) -> tuple[bool, str]:
    """An agent mail whose first line is ``#internal`` is an internal note."""
    m = _INTERNAL.match(body)
    return (True, body[m.end() :]) if m else (False, body)


def actor_for(sender: Sender, inbound_mail_id: int, authenticated: bool) -> Actor:
    return Actor(
        account=sender.account,
        as_agent=sender.is_agent,
        source="email",
        mail_id=inbound_mail_id,
        authenticated=authenticated,
    )


def addressed_colleagues(conn: Connection, desk: Desk, mail: ParsedMail, sender: Sender) -> list[AccountRow]:
    """CC'd (and co-addressed) members of the sender's organization, who
    join the ticket; an unknown address on one of the organization's domains
    becomes an unverified member first. Strangers on CC never do."""
    org = sender.organization
    if org is None:
        return []
    desk_addresses = desk.settings.desk_addresses()
    out = []
    for address in dict.fromkeys([*mail.to, *mail.cc]):
        if is_desk_address(address, desk_addresses) or address == sender.account.email or "@" not in address:
            continue
        account = repo.account_by_email(conn, address)
        if account is None:
            dom_org = organization_for_domain(conn, domain_of(address))
            if dom_org is None or dom_org.id != org.id:
                continue
            account = create_account(conn, address, "", sender.account.locale or "de", desk.settings)
        if account.organization_id == org.id:
            out.append(account)
    return out


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
    desk: Desk,
    actor: Actor,
    mail: ParsedMail,
    sender: Sender,
    request_type: RequestType,
    extracted: ExtractedFields,
    match: ThreadMatch,
) -> Done:
    """A new ticket from ``mail``. It is numbered at the end of the
    transaction: the caller calls ``numbering.number_pending`` before the
    commit, and only then is its ``key`` real."""
    closed = match.closed_predecessor
    done = operations.create_ticket(
        conn,
        desk,
        actor,
        NewTicket(
            # A reply to a closed ticket continues its matter: same type.
            request_type=RequestType(closed.request_type) if closed else request_type,
            summary=summary_from(mail.subject, desk.settings.desk.ticket_prefix),
            description=trim_blank_lines(mail.text),
            priority=extracted.priority or Priority.medium,
            fields=extracted.fields,
            attachments=mail.attachments,
            addressed=addressed_colleagues(conn, desk, mail, sender),
            organization=sender.organization,
            message_id=mail.message_id,
            linked_key=closed.key if closed else None,
            threaded_by=f"new: {match.via} {match.ref} is {closed.key}, closed" if closed else "new",
        ),
    )
    remember(conn, mail, done.ticket, match.passed_over)
    return done


def add_comment(
    conn: Connection, desk: Desk, actor: Actor, mail: ParsedMail, sender: Sender, match: ThreadMatch
) -> Done:
    """The mail as a comment on the ticket it threaded into: its new text
    only, an internal note when an agent's starts with ``#internal``."""
    assert match.ticket is not None
    body = mail.reply_text or mail.text
    internal = False
    if sender.is_agent:
        internal, body = split_internal(body)
    done = operations.add_comment(
        conn,
        desk,
        actor,
        match.ticket,
        NewComment(
            body=body,
            internal=internal,
            attachments=mail.attachments,
            addressed=addressed_colleagues(conn, desk, mail, sender),
            message_id=mail.message_id,
            threaded_by=f"{match.via} {match.ref}",
        ),
    )
    remember(conn, mail, match.ticket, match.passed_over)
    return done
