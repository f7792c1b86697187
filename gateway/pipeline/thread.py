"""Find the ticket a message belongs to (SPEC §3), first match wins:
(1) In-Reply-To, then References newest to oldest, over every Message-ID the
desk knows, inbound and outbound; (2) a ticket key in the subject. A
candidate ticket the sender is not allowed on is passed over, so a stranger
who quotes someone else's Message-ID or key gets a ticket of their own and
never sees the other one."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select as sa_select
from sqlmodel import Session, select

from gateway.domain import ParsedMail, TicketStatus
from gateway.pipeline.identify import Sender
from gateway.store.models import MessageRef, Ticket, TicketParticipant

# Prefixes mail clients put in front of a reply or forward subject.
_PREFIX = r"(?:(?:re|aw|wg|fw|fwd|antw|antwort|sv|vs|tr|r|rif)\s*(?:\[\d+\])?\s*:\s*)"


@dataclass
class ThreadMatch:
    ticket: Ticket | None  # the ticket to comment on; None: a new ticket
    closed_predecessor: Ticket | None = None  # reply to a closed ticket
    via: str = ""  # "in-reply-to", "references", "subject" (for logs/tests)


def subject_key_patterns(prefix: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    p = re.escape(prefix)
    bracketed = re.compile(rf"\[{p}-(\d{{1,9}})\]", re.IGNORECASE)
    bare = re.compile(rf"^\s*{_PREFIX}+{p}-(\d{{1,9}})\b", re.IGNORECASE)
    return bracketed, bare


def may_access(session: Session, sender: Sender, ticket: Ticket) -> bool:
    """Reporter, participant, member of the organization the ticket is
    shared with, or an agent (with agent privileges in effect)."""
    account = sender.account
    if sender.is_agent or ticket.reporter_id == account.id:
        return True
    if ticket.organization_id is not None and ticket.organization_id == account.organization_id:
        return True
    return (
        session.get(TicketParticipant, (ticket.id, account.id)) is not None
        if account.id is not None and ticket.id is not None
        else False
    )


def candidate_ids(mail: ParsedMail) -> list[str]:
    """In-Reply-To first, then References newest to oldest, no repeats."""
    seen: set[str] = set()
    out: list[str] = []
    for mid in [*mail.in_reply_to, *reversed(mail.references)]:
        if mid and mid not in seen:
            seen.add(mid)
            out.append(mid)
    return out[:100]  # a hostile References header must not cost more


def _tickets_by_reference(session: Session, ids: list[str]) -> list[tuple[Ticket, str]]:
    if not ids:
        return []
    rows = session.execute(
        sa_select(MessageRef.message_id, MessageRef.ticket_id).where(
            MessageRef.message_id.in_(ids)  # type: ignore[attr-defined]
        )
    ).all()
    by_mid: dict[str, list[int]] = {}
    for mid, tid in rows:
        by_mid.setdefault(mid, []).append(tid)
    out: list[tuple[Ticket, str]] = []
    for pos, mid in enumerate(ids):
        for tid in sorted(by_mid.get(mid, ())):
            ticket = session.get(Ticket, tid)
            if ticket is not None:
                out.append((ticket, "in-reply-to" if pos < 1 else "references"))
    return out


def _tickets_by_subject(session: Session, subject: str, prefix: str) -> list[Ticket]:
    bracketed, bare = subject_key_patterns(prefix)
    numbers = [int(m.group(1)) for m in bracketed.finditer(subject)]
    m = bare.match(subject)
    if m:
        numbers.append(int(m.group(1)))
    out = []
    for number in dict.fromkeys(numbers):
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).first()
        if ticket is not None:
            out.append(ticket)
    return out


def find_ticket(session: Session, mail: ParsedMail, sender: Sender, prefix: str) -> ThreadMatch:
    candidates = _tickets_by_reference(session, candidate_ids(mail))
    candidates += [(t, "subject") for t in _tickets_by_subject(session, mail.subject, prefix)]
    seen: set[int | None] = set()
    for ticket, via in candidates:
        if ticket.id in seen:
            continue
        seen.add(ticket.id)
        if not may_access(session, sender, ticket):
            continue
        if ticket.status == TicketStatus.closed and not sender.is_agent:
            return ThreadMatch(ticket=None, closed_predecessor=ticket, via=via)
        return ThreadMatch(ticket=ticket, via=via)
    return ThreadMatch(ticket=None)
