"""Identify the sender: the account for the normalised From address (created
``unverified`` under the default unknown-sender policy), its organization
(by membership, or by mail domain for new accounts only, never free-mail
domains) and its trust level: agent privileges by mail only from a trusted
source (SPEC §3)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from gateway.domain import AccountState, Ignore, ParsedMail, Role
from gateway.settings import FREE_MAIL_DOMAINS, Settings
from gateway.store import repo
from gateway.store.repo import AccountRow, OrgRow


@dataclass(frozen=True)
class Sender:
    account: AccountRow
    organization: OrgRow | None
    is_agent: bool  # agent privileges in effect for this message


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]


def organization_for_domain(conn: Connection, domain: str) -> OrgRow | None:
    if not domain or domain in FREE_MAIL_DOMAINS:
        return None
    return repo.org_by_domain(conn, domain)


def guess_locale(mail: ParsedMail, default: str) -> str:
    lang = (mail.header("content-language") or "").strip().lower()
    if lang.startswith("de"):
        return "de"
    if lang.startswith("en"):
        return "en"
    return default


def _account_for(conn: Connection, address: str, settings: Settings) -> tuple[str, int | None]:
    """Role and organization of a new account for ``address``."""
    domain = domain_of(address)
    org = organization_for_domain(conn, domain)
    role = Role.agent if domain in settings.security.agent_domains else Role.customer
    return role, org.id if org else None


def create_account(conn: Connection, address: str, name: str, locale: str, settings: Settings) -> AccountRow:
    """A new ``unverified`` account, joined to an organization by its domain."""
    role, org_id = _account_for(conn, address, settings)
    return repo.insert_account(conn, address, name[:200], role, org_id, locale)


def new_sender(mail: ParsedMail, settings: Settings) -> tuple[str, str, str] | None:
    """Address, name and locale of the account ``identify`` creates for
    ``mail``'s sender if the address is unknown; None if it would create
    none (policy ``reject``, no usable address)."""
    address = mail.from_addr
    if settings.desk.unknown_senders == "reject" or not address or "@" not in address:
        return None
    return address, mail.from_name, guess_locale(mail, settings.desk.default_locale)


def create_accounts_ahead(conn: Connection, senders: list[tuple[str, str, str]], settings: Settings) -> int:
    """Create the accounts of ``new_sender`` results that do not exist yet;
    how many were created. In address order: two workers doing this at once
    wait for each other's rows in the same order, never in a cycle."""
    senders = sorted(senders)
    known = repo.known_emails(conn, [address for address, _, _ in senders])
    created = 0
    for address, name, locale in senders:
        if address not in known:
            role, org_id = _account_for(conn, address, settings)
            created += repo.insert_account_if_absent(conn, address, name[:200], role, org_id, locale)
    return created


def identify(conn: Connection, mail: ParsedMail, settings: Settings, trusted_source: bool) -> Sender:
    """Find or create the sender's account. Raises Ignore when the policy
    refuses the sender (``unknown_senders = "reject"``, disabled account)."""
    address = mail.from_addr
    if not address or "@" not in address:
        raise Ignore("no usable sender address")
    account = repo.account_by_email(conn, address)
    if account is None:
        if settings.desk.unknown_senders == "reject":
            raise Ignore("unknown sender")
        account = create_account(
            conn, address, mail.from_name, guess_locale(mail, settings.desk.default_locale), settings
        )
    elif account.state == AccountState.disabled:
        raise Ignore("account disabled")
    elif not account.name and mail.from_name:
        repo.set_account_name(conn, account.id, mail.from_name[:200])
    org = repo.org_by_id(conn, account.organization_id) if account.organization_id else None
    is_agent = account.role == Role.agent and trusted_source
    return Sender(account=account, organization=org, is_agent=is_agent)
