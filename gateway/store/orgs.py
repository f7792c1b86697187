"""Organizations and their members, written through the caller's ORM
``Session`` (opened with ``store.db.transaction``): the storage behind the
operator's ``org create`` and ``org add-member``. What is allowed is decided
by ``gateway.admin``; looking an organization up by name is the read side's
(``store.read.find_org``)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from gateway.domain import AccountState
from gateway.store.models import Account, Organization, OrganizationDomain


def domain_owner(session: Session, domains: Sequence[str]) -> tuple[str, str] | None:
    """One of ``domains`` that an organization owns already, as (domain,
    organization name); None when all of them are free."""
    row = session.exec(
        select(OrganizationDomain.domain, Organization.name)
        .join(Organization, col(Organization.id) == col(OrganizationDomain.organization_id))
        .where(col(OrganizationDomain.domain).in_(domains))
    ).first()
    return (row[0], row[1]) if row is not None else None


def insert_org(
    session: Session, name: str, domains: Sequence[str], share_by_default: bool
) -> Organization:
    """Create the organization ``name`` owning ``domains`` (normalised by
    the caller). Raises ``IntegrityError`` when the name or a domain is
    taken, e.g. by another operator who won a race for it."""
    org = Organization(name=name, share_by_default=share_by_default)
    session.add(org)
    session.flush()
    assert org.id is not None
    for domain in domains:
        session.add(OrganizationDomain(domain=domain, organization_id=org.id))
    session.flush()
    return org


def add_member(session: Session, org: Organization, address: str) -> tuple[Account, bool]:
    """Put the account for the normalised ``address`` into ``org``, creating
    an ``unverified`` account when none exists. Returns (account, created).
    Raises ``IntegrityError`` when a concurrent transaction created the
    account meanwhile."""
    account = session.exec(select(Account).where(Account.email == address)).first()
    created = account is None
    if account is None:
        account = Account(email=address, state=AccountState.unverified.value)
    account.organization_id = org.id
    session.add(account)
    session.flush()
    return account, created
