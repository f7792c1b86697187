"""Which rows of the store are one person's (GDPR Art. 15 and 17): the
selections that ``account export`` shows and ``account erase`` takes, kept
in one place so that the export lists exactly what an erasure removes.

As in ``repo``: SQLAlchemy Core on the caller's ``Connection``; each
selection is a statement (usable as a subquery) or a small query."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, Text, cast, func, or_, select

from gateway.domain import Role, normalize_address
from gateway.store.repo import ACCOUNT, COMMENT, MAIL, PARTICIPANT, TICKET


@dataclass(frozen=True)
class Person:
    """The account whose data is asked for."""

    id: int
    email: str
    name: str
    role: str
    state: str
    organization_id: int | None

    @property
    def is_agent(self) -> bool:
        return self.role == Role.agent


# What may stand next to an address in text without being part of it: the
# address ``anna@x.de`` is not in ``hanna@x.de`` nor in ``anna@x.de.example``.
_LOCAL_CHAR = r"[\w.!#$%&'*+/=?^`{|}~-]"


def address_pattern(email: str) -> re.Pattern[str]:
    """Their address, in any case, as a whole address in a text."""
    return re.compile(rf"(?<!{_LOCAL_CHAR}){re.escape(email)}(?![\w-]|\.[\w-])", re.IGNORECASE)


def rate_limit_keys(column: Any, person: Person) -> ColumnElement[bool]:
    """The rate-limit counters kept per their address (``login:<address>``,
    ``signup:…``, ``reset:…``)."""
    return func.lower(column).endswith(f":{person.email}", autoescape=True)


def find_person(conn: Connection, email: str) -> Person | None:
    row = conn.execute(
        select(ACCOUNT.c.id, ACCOUNT.c.email, ACCOUNT.c.name, ACCOUNT.c.role, ACCOUNT.c.state,
               ACCOUNT.c.organization_id)
        .where(ACCOUNT.c.email == normalize_address(email))
    ).first()
    return Person(*row) if row is not None else None


def reported(person: Person) -> Select[Any]:
    """The ids of the tickets they reported."""
    return select(TICKET.c.id).where(TICKET.c.reporter_id == person.id)


def comments(person: Person) -> Select[Any]:
    """The ids of the comments they wrote."""
    return select(COMMENT.c.id).where(COMMENT.c.author_id == person.id)


def own_mails(person: Person) -> Select[Any]:
    """The ids of the inbound mails they sent: From or envelope sender is
    their address, or a ticket or comment of theirs came from the mail."""
    return select(MAIL.c.id).where(or_(
        func.lower(MAIL.c.from_addr) == person.email,
        func.lower(MAIL.c.envelope_from) == person.email,
        MAIL.c.id.in_(select(COMMENT.c.inbound_mail_id).where(COMMENT.c.author_id == person.id)),
        MAIL.c.id.in_(select(TICKET.c.source_mail_id).where(TICKET.c.reporter_id == person.id)),
    ))


def ticket_roles(conn: Connection, person: Person) -> dict[int, set[str]]:
    """Every ticket they take part in, with how: ``reporter``,
    ``participant`` (it was shared with them), ``commenter``, ``assignee``,
    ``responsible`` (named in the ``responsible_user`` field). Tickets
    merely shared with their organization are not theirs."""
    roles: dict[int, set[str]] = defaultdict(set)
    for (tid,) in conn.execute(reported(person)):
        roles[tid].add("reporter")
    for (tid,) in conn.execute(select(PARTICIPANT.c.ticket_id).where(PARTICIPANT.c.account_id == person.id)):
        roles[tid].add("participant")
    commented = select(COMMENT.c.ticket_id).where(COMMENT.c.author_id == person.id).distinct()
    for (tid,) in conn.execute(commented):
        roles[tid].add("commenter")
    for (tid,) in conn.execute(select(TICKET.c.id).where(TICKET.c.assignee_id == person.id)):
        roles[tid].add("assignee")
    # The fields are JSON: the text search finds candidates, the value decides.
    named = cast(TICKET.c.fields, Text).icontains(person.email, autoescape=True)
    for tid, fields in conn.execute(select(TICKET.c.id, TICKET.c.fields).where(named)):
        named_one = fields.get("responsible_user") if isinstance(fields, dict) else None
        if isinstance(named_one, str) and normalize_address(named_one) == person.email:
            roles[tid].add("responsible")
    return dict(roles)


def others_on(conn: Connection, person: Person) -> set[int]:
    """The tickets they reported that somebody else is on as well: shared
    with an organization or a person, or with a comment by anyone else (an
    agent's answer, a colleague's reply)."""
    mine = reported(person)
    found = {tid for (tid,) in conn.execute(
        select(TICKET.c.id).where(TICKET.c.reporter_id == person.id, TICKET.c.organization_id.is_not(None))
    )}
    found |= {tid for (tid,) in conn.execute(
        select(PARTICIPANT.c.ticket_id).where(PARTICIPANT.c.ticket_id.in_(mine),
                                              PARTICIPANT.c.account_id != person.id)
    )}
    found |= {tid for (tid,) in conn.execute(
        select(COMMENT.c.ticket_id).where(COMMENT.c.ticket_id.in_(mine), COMMENT.c.author_id != person.id)
        .distinct()
    )}
    return found
