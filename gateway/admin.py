"""Write side of the operator surface: the actions behind ``org create``,
``org add-member`` and ``outbox retry`` (ticket changes are desk operations:
``gateway.desk.operations``). Each takes
the caller's session (opened with ``store.db.transaction``) and raises
``AdminError`` for a refusal or ``store.read.NotFound`` for an unknown name.
This module decides what is allowed; the store reads and writes
(``store.orgs``, ``store.outbox_retry``)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from gateway.domain import OutboxStatus, Refused, normalize_address
from gateway.settings import FREE_MAIL_DOMAINS
from gateway.store import orgs, outbox_retry
from gateway.store.models import Account, Organization, OutboundMail
from gateway.store.read import NotFound, find_org, get_org

_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")
_EMAIL_RE = re.compile(r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+$")


class AdminError(Refused):
    """An operator action was refused; the message says why (CLI exit 1)."""


def normalize_domain(domain: str) -> str:
    """``@Bauwerk-AG.de.`` -> ``bauwerk-ag.de``; AdminError if not a domain.
    Kept in the form given (not punycode): it is compared with the domain
    part of normalised sender addresses."""
    norm = domain.strip().lstrip("@").rstrip(".").lower()
    try:
        ascii_form = norm.encode("idna").decode("ascii")
    except UnicodeError:
        raise AdminError(f"not a mail domain: {domain!r}") from None
    if not _DOMAIN_RE.match(ascii_form):
        raise AdminError(f"not a mail domain: {domain!r}")
    return norm


def create_org(
    session: Session, name: str, domains: Iterable[str], share_by_default: bool = False
) -> Organization:
    """Create an organization owning ``domains``. Refuses free-mail domains,
    domains another organization owns and a name already taken."""
    name = " ".join(name.split())
    if not name:
        raise AdminError("an organization needs a name")
    if find_org(session, name) is not None:
        raise AdminError(f"organization {name!r} already exists")
    wanted = sorted({normalize_domain(d) for d in domains})
    for domain in wanted:
        if domain in FREE_MAIL_DOMAINS:
            raise AdminError(f"{domain} is a free-mail domain and cannot belong to an organization")
    if wanted:
        taken = orgs.domain_owner(session, wanted)
        if taken is not None:
            raise AdminError(f"domain {taken[0]} already belongs to organization {taken[1]!r}")
    try:
        return orgs.insert_org(session, name, wanted, share_by_default)
    except IntegrityError:
        # Another operator won a race for the name or a domain.
        raise AdminError(f"organization {name!r} or one of its domains already exists") from None


def add_member(session: Session, org_name: str, email: str) -> tuple[Account, bool]:
    """Put the account for ``email`` into the organization, creating an
    ``unverified`` account when none exists. Returns (account, created)."""
    org = get_org(session, org_name)
    address = normalize_address(email)
    if not _EMAIL_RE.match(address):
        raise AdminError(f"not an e-mail address: {email!r}")
    try:
        return orgs.add_member(session, org, address)
    except IntegrityError:
        raise AdminError(f"account {address} was created concurrently; try again") from None


def retry_outbox(session: Session, outbound_id: int) -> OutboundMail:
    """Queue an outbound mail for an immediate new attempt, keeping its
    attempt count. A mail already sent is not sent twice."""
    out = outbox_retry.outbound_for_update(session, outbound_id)
    if out is None:
        raise NotFound(f"outbound mail {outbound_id} not found")
    if out.status == OutboxStatus.sent.value:
        raise AdminError(f"outbound mail {outbound_id} was already sent")
    if out.status == OutboxStatus.bounced.value:
        # The recipient's server said the address does not take mail.
        raise AdminError(f"outbound mail {outbound_id} bounced; it is not sent again")
    if out.body_removed_at is not None:
        # What it was rendered from is gone: a mail sent now would be another one.
        raise AdminError(f"outbound mail {outbound_id} cannot be sent again: retention removed its content "
                         f"on {out.body_removed_at:%Y-%m-%d} ([retention] outbox_days)")
    outbox_retry.requeue(session, out)
    return out
