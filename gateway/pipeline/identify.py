"""Identify the sender: the account for the normalised From address (created
``unverified`` under the default unknown-sender policy), its organization
(by membership, or by mail domain for new accounts only, never free-mail
domains) and its trust level: agent privileges by mail only from a trusted
source (SPEC §3)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, select

from gateway.domain import AccountState, Ignore, ParsedMail, Role
from gateway.settings import FREE_MAIL_DOMAINS, Settings
from gateway.store.models import Account, Organization, OrganizationDomain


@dataclass
class Sender:
    account: Account
    organization: Organization | None
    is_agent: bool  # agent privileges in effect for this message
    created: bool  # the account was created by this message


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]


def organization_for_domain(session: Session, domain: str) -> Organization | None:
    if not domain or domain in FREE_MAIL_DOMAINS:
        return None
    row = session.get(OrganizationDomain, domain)
    return session.get(Organization, row.organization_id) if row else None


def guess_locale(mail: ParsedMail, default: str) -> str:
    lang = (mail.header("content-language") or "").strip().lower()
    if lang.startswith("de"):
        return "de"
    if lang.startswith("en"):
        return "en"
    return default


def find_account(session: Session, address: str) -> Account | None:
    return session.exec(select(Account).where(Account.email == address)).first()


def create_account(
    session: Session, address: str, name: str, locale: str, settings: Settings
) -> Account:
    """A new ``unverified`` account, joined to an organization by its domain."""
    domain = domain_of(address)
    org = organization_for_domain(session, domain)
    role = Role.agent if domain in settings.security.agent_domains else Role.customer
    account = Account(
        email=address,
        name=name[:200],
        state=AccountState.unverified,
        role=role,
        organization_id=org.id if org else None,
        locale=locale,
    )
    session.add(account)
    session.flush()
    return account


def identify(session: Session, mail: ParsedMail, settings: Settings, trusted_source: bool) -> Sender:
    """Find or create the sender's account. Raises Ignore when the policy
    refuses the sender (``unknown_senders = "reject"``, disabled account)."""
    address = mail.from_addr
    if not address or "@" not in address:
        raise Ignore("no usable sender address")
    account = find_account(session, address)
    created = False
    if account is None:
        if settings.desk.unknown_senders == "reject":
            raise Ignore("unknown sender")
        account = create_account(
            session, address, mail.from_name, guess_locale(mail, settings.desk.default_locale), settings
        )
        created = True
    elif account.state == AccountState.disabled:
        raise Ignore("account disabled")
    if not account.name and mail.from_name:
        account.name = mail.from_name[:200]
    org = session.get(Organization, account.organization_id) if account.organization_id else None
    is_agent = account.role == Role.agent and trusted_source
    return Sender(account=account, organization=org, is_agent=is_agent, created=created)
