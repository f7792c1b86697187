"""Accounts the operator manages by hand (SPEC §6, #15): agents are
created with ``gateway account create EMAIL --role agent`` and complete
their signup from the link mailed to them, like customers; ``account
disable`` shuts an account out (its sessions end, its mail is not answered
as from a person the desk knows).

Who may be an agent is decided here: a new address becomes one at once, a
customer only with ``--promote`` (an operator's typo must not hand a
stranger the queue)."""

from __future__ import annotations

from sqlalchemy import Engine

from gateway.desk import notify
from gateway.domain import AccountState, Refused, normalize_address
from gateway.settings import Settings
from gateway.signup import is_email, recent_signup_mail
from gateway.store import repo, web as web_store
from gateway.store.db import connection
from gateway.store.models import utcnow


class StaffError(Refused):
    """The command was refused; the message says why (CLI exit 1)."""


def create_account(
    engine: Engine, settings: Settings, email: str, *, role: str, name: str = "", promote: bool = False
) -> str:
    """Create an account with ``role`` (or promote a customer to agent) and
    mail it the signup link when it has no password yet. Returns what was
    done, in words for the operator."""
    address = normalize_address(email)
    if not is_email(address):
        raise StaffError(f"not an e-mail address: {email!r}")
    with connection(engine) as conn:
        account = repo.account_by_email(conn, address)
        if account is None:
            org = repo.org_by_domain(conn, address.rpartition("@")[2]) if role == "customer" else None
            account = repo.insert_account(conn, address, name.strip()[:200], role,
                                          org.id if org else None, settings.desk.default_locale)
            done = f"created {role} {address}"
        elif account.role == role:
            done = f"{address} is already {'an' if role == 'agent' else 'a'} {role}"
        elif role == "agent" and not promote:
            raise StaffError(f"{address} is a customer: give --promote to make them an agent")
        else:
            repo.set_account_role(conn, account.id, role)
            account = repo.account_by_id(conn, account.id)
            assert account is not None
            done = f"{address} is now {'an' if role == 'agent' else 'a'} {role}"
        if name.strip() and not account.name:
            repo.set_account_name(conn, account.id, name.strip()[:200])
        if account.state == AccountState.disabled:
            raise StaffError(f"{address} is disabled")
        if account.state == AccountState.unverified:
            if recent_signup_mail(conn, address, utcnow()):
                return f"{done}; a signup link went to {address} within the last day"
            notify.queue(conn, settings, account, "signup_confirmation", None, {})
            return f"{done}; a signup link is on its way to {address}"
        return done


def disable_account(engine: Engine, email: str) -> str:
    """Disable an account: no sign-in, its sessions end now."""
    address = normalize_address(email)
    with connection(engine) as conn:
        account = repo.account_by_email(conn, address)
        if account is None:
            raise StaffError(f"no account for {address}")
        if account.state == AccountState.disabled:
            return f"{address} is already disabled"
        repo.set_account_state(conn, account.id, AccountState.disabled.value)
        web_store.end_account_sessions(conn, account.id)
        return f"{address} is disabled; its sessions have ended"
