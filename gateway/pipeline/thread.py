"""Find the ticket a message belongs to (SPEC §3), first match wins:
(1) In-Reply-To, then References newest to oldest, over every Message-ID the
desk knows, inbound and outbound; (2) a ticket key in the subject. A
candidate ticket the sender is not allowed on is passed over, so a stranger
who quotes someone else's Message-ID or key gets a ticket of their own and
never sees the other one."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from sqlalchemy import Connection

from gateway.desk.access import may_access
from gateway.domain import ParsedMail, TicketStatus
from gateway.pipeline.identify import Sender
from gateway.store import numbering, repo
from gateway.store.repo import TicketRow

# Prefixes mail clients put in front of a reply or forward subject.
_PREFIX = r"(?:(?:re|aw|wg|fw|fwd|antw|antwort|sv|vs|tr|r|rif)\s*(?:\[\d+\])?\s*:\s*)"


@dataclass
class ThreadMatch:
    ticket: TicketRow | None  # the ticket to comment on; None: a new ticket
    closed_predecessor: TicketRow | None = None  # reply to a closed ticket
    via: str = ""  # "in-reply-to", "references", "subject"
    ref: str = ""  # the Message-ID or subject key it matched
    # Tickets this mail refers to by Message-ID but the sender may not see.
    # Recorded as the mail's "ancestors", so that when someone who may see
    # them answers this mail, the answer still finds its way home.
    passed_over: list[TicketRow] = field(default_factory=list)


@functools.lru_cache(maxsize=8)  # built once per prefix, not per message
def subject_key_patterns(prefix: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    p = re.escape(prefix)
    bracketed = re.compile(rf"\[{p}-(\d{{1,9}})\]", re.IGNORECASE)
    bare = re.compile(rf"^\s*{_PREFIX}+{p}-(\d{{1,9}})\b", re.IGNORECASE)
    return bracketed, bare


def candidate_ids(mail: ParsedMail) -> list[str]:
    """In-Reply-To first, then References newest to oldest, no repeats."""
    seen: set[str] = set()
    out: list[str] = []
    for mid in [*mail.in_reply_to, *reversed(mail.references)]:
        if mid and mid not in seen:
            seen.add(mid)
            out.append(mid)
    return out[:100]  # a hostile References header must not cost more


def _candidates(conn: Connection, mail: ParsedMail, prefix: str) -> list[tuple[TicketRow, str, str]]:
    """(ticket, via, the Message-ID or key matched), in SPEC order."""
    ids = candidate_ids(mail)
    known = repo.tickets_by_message_ids(conn, ids)
    out: list[tuple[TicketRow, str, str]] = []
    for pos, mid in enumerate(ids):
        for ticket in known.get(mid, ()):
            out.append((ticket, "in-reply-to" if pos == 0 and mail.in_reply_to else "references", mid))
    bracketed, bare = subject_key_patterns(prefix)
    numbers = [int(m.group(1)) for m in bracketed.finditer(mail.subject)]
    m = bare.match(mail.subject)
    if m:
        numbers.append(int(m.group(1)))
    wanted = list(dict.fromkeys(numbers))
    by_number = repo.tickets_by_number(conn, wanted)
    if len(by_number) < len(wanted) and numbering.number_pending(conn, prefix):
        # The key may belong to a ticket an earlier message of this same
        # transaction created, still unnumbered (numbers are handed out at
        # the commit). Number them now, so that a batch threads exactly as
        # its messages would one by one; rare outside re-imported archives.
        by_number = repo.tickets_by_number(conn, wanted)
    out += [(by_number[n], "subject", by_number[n].key) for n in dict.fromkeys(numbers) if n in by_number]
    return out


def find_ticket(conn: Connection, mail: ParsedMail, sender: Sender, prefix: str) -> ThreadMatch:
    seen: set[int] = set()
    passed_over: list[TicketRow] = []
    for ticket, via, ref in _candidates(conn, mail, prefix):
        if ticket.id in seen:
            continue
        seen.add(ticket.id)
        if not may_access(conn, sender.account, ticket, as_agent=sender.is_agent):
            if via != "subject":
                passed_over.append(ticket)
            continue
        if ticket.status == TicketStatus.closed and not sender.is_agent:
            return ThreadMatch(
                ticket=None, closed_predecessor=ticket, via=via, ref=ref, passed_over=passed_over
            )
        return ThreadMatch(ticket=ticket, via=via, ref=ref, passed_over=passed_over)
    return ThreadMatch(ticket=None, passed_over=passed_over)
