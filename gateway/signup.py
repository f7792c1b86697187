"""Signup: an ``unverified`` account (known only from mail) becomes
``active`` by proving it receives mail at its address.

Tokens: over 256 random bits (``new_token``); only their SHA-256
is stored, bound to a purpose and an expiry. The raw token exists only in
the mail that carries it (created by the outbox sender when it renders a
``signup_confirmation`` or ``signup_invitation``). Redeeming is one
``UPDATE … WHERE used_at IS NULL AND expires_at > now RETURNING``, so two
simultaneous redemptions of the same token cannot both succeed on either
database. Passwords are hashed with argon2id (argon2-cffi)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import unicodedata

from argon2 import PasswordHasher
from sqlalchemy import Connection, Engine

from gateway.desk import notify
from gateway.domain import AccountState, normalize_address
from gateway.pipeline.identify import create_account
from gateway.settings import Settings
from gateway.store import outbox, repo, tokens, web
from gateway.store.db import connection
from gateway.store.models import utcnow
from gateway.store.repo import AccountRow

PURPOSE_SIGNUP = "signup"
PURPOSE_RESET = "password_reset"
# Mails about an account's access, and how often one of a kind may go to an address.
ACCOUNT_EXISTS_TEMPLATES = ("account_exists",)
RESET_TEMPLATES = ("password_reset",)
RESET_REPEAT_INTERVAL = dt.timedelta(minutes=15)
REPEAT_INTERVAL = dt.timedelta(days=1)
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 would hash megabytes; nobody types them

_EMAIL_RE = re.compile(r"^[^@\s<>()\[\],;:\"\\]+@[^@\s<>()\[\],;:\"\\]+\.[^@\s<>()\[\],;:\"\\]+$")
# argon2id with RFC 9106's low-memory parameters (t=3, 64 MiB) but one lane
# instead of four: the same work, on one core rather than a burst over all
# of them, so that sign-ins on the portal do not take the CPU the SMTP
# listener needs (bench/bench_web.py). Hashes made with other parameters
# still verify (they carry their own).
_HASHER = PasswordHasher(parallelism=1)


class SignupError(Exception):
    """A signup step was refused; the message is safe to show."""


INVALID_LINK = "this signup link is invalid, already used or expired"


def is_email(address: str) -> bool:
    """A plausible, normalised e-mail address (local@domain.tld, no spaces)."""
    return bool(_EMAIL_RE.match(address)) and len(address) <= 320


def _link_token(raw: str) -> str:
    """A link's token as it may be looked up; SignupError for a shape no
    token of ours has."""
    token = raw.strip()
    if not token or len(token) > 200:
        raise SignupError(INVALID_LINK)
    return token


def token_sha256(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A URL-safe token of 264 random bits that never starts with "-": such
    a token would be read as an option by ``gateway account confirm TOKEN``
    (it failed so one run in 64). Redrawing those costs 0.02 bits."""
    while True:
        raw = secrets.token_urlsafe(33)
        if not raw.startswith("-"):
            return raw


def issue_token(
    conn: Connection, account_id: int, purpose: str, lifetime: dt.timedelta, now: dt.datetime | None = None
) -> str:
    """Store a new token's hash; return the raw token (put it in the mail,
    nowhere else)."""
    now = now or utcnow()
    raw = new_token()
    tokens.insert_token(conn, token_sha256(raw), account_id, purpose, now, now + lifetime)
    return raw


def discard_token(conn: Connection, raw: str) -> None:
    """Forget a token whose mail was never sent."""
    tokens.delete_token(conn, token_sha256(raw))


def redeem_token(conn: Connection, raw: str, purpose: str, now: dt.datetime | None = None) -> int | None:
    """Mark the token used and return its account id, or None when it is
    unknown, for another purpose, used or expired. Atomic: of two
    concurrent calls with the same token exactly one gets the account."""
    now = now or utcnow()
    return tokens.use_token(conn, token_sha256(raw), purpose, now)


def signup_url(settings: Settings, raw: str) -> str:
    return f"{settings.desk.portal_url.rstrip('/')}/signup/{raw}"


def reset_url(settings: Settings, raw: str) -> str:
    return f"{settings.desk.portal_url.rstrip('/')}/password-reset/{raw}"


def recent_signup_mail(conn: Connection, address: str, now: dt.datetime) -> bool:
    """Whether a confirmation or invitation went (or is going) to the address
    in the last day."""
    return outbox.mails_to_since(conn, address, outbox.SIGNUP_TEMPLATES, now - REPEAT_INTERVAL) > 0


def request_signup(engine: Engine, settings: Settings, email: str, locale: str | None = None) -> None:
    """Queue a ``signup_confirmation`` for ``email`` when that makes sense
    (an unverified or new address, nothing of the kind sent in the last
    day). Says nothing either way: the caller's output must not reveal
    whether the address has an account. ``locale``: the language the
    person asked in (the portal's page), for a new account and its mail."""
    address = normalize_address(email)
    if not is_email(address):
        raise SignupError(f"not an e-mail address: {email!r}")
    with connection(engine) as conn:
        account = repo.account_by_email(conn, address)
        if account is None:
            account = create_account(conn, address, "", locale or settings.desk.default_locale, settings)
        now = utcnow()
        if account.state == AccountState.active:
            # Someone (perhaps its owner) asks again: point to sign-in and
            # the password reset, at most once a day.
            if outbox.mails_to_since(conn, address, ACCOUNT_EXISTS_TEMPLATES, now - REPEAT_INTERVAL) == 0:
                notify.queue(conn, settings, account, "account_exists", None, {})
            return
        if account.state != AccountState.unverified:
            return
        if recent_signup_mail(conn, address, now):
            return
        notify.queue(conn, settings, account, "signup_confirmation", None, {})


def request_password_reset(engine: Engine, settings: Settings, email: str) -> None:
    """Queue a ``password_reset`` link for an active account (one per
    quarter hour); an address that never completed its signup gets the
    signup confirmation instead; any other address nothing. Says nothing
    either way, like ``request_signup``."""
    address = normalize_address(email)
    if not is_email(address):
        return
    with connection(engine) as conn:
        account = repo.account_by_email(conn, address)
        if account is None:
            return
        now = utcnow()
        if account.state == AccountState.active:
            if outbox.mails_to_since(conn, address, RESET_TEMPLATES, now - RESET_REPEAT_INTERVAL) == 0:
                notify.queue(conn, settings, account, "password_reset", None, {})
        elif account.state == AccountState.unverified and not recent_signup_mail(conn, address, now):
            notify.queue(conn, settings, account, "signup_confirmation", None, {})


def token_account(engine: Engine, raw_token: str, purpose: str) -> int | None:
    """The account a link's token is for while it is still good (unused,
    unexpired), without spending it."""
    try:
        token = _link_token(raw_token)
    except SignupError:
        return None
    with connection(engine) as conn:
        return tokens.valid_token(conn, token_sha256(token), purpose, utcnow())


def reset_password(engine: Engine, raw_token: str, password: str) -> int:
    """Redeem a password-reset token: the account gets the new password, and
    every session of it ends (whoever knew the old one is signed out).
    Returns the account id. Raises SignupError."""
    check_password(password)
    token = _link_token(raw_token)
    password_hash = hash_password(password)
    now = utcnow()
    with connection(engine) as conn:
        account_id = redeem_token(conn, token, PURPOSE_RESET, now)
        if account_id is None:
            raise SignupError(INVALID_LINK)
        account = repo.account_by_id(conn, account_id)
        if account is None or account.state != AccountState.active:
            raise SignupError(INVALID_LINK)
        web.update_profile(conn, account_id, password_hash=password_hash)
        web.end_account_sessions(conn, account_id)
        tokens.use_account_tokens(conn, account_id, PURPOSE_RESET, now)
        return account_id


# A hash to verify against when an address has no password: sign-in takes
# as long whether or not the account exists.
_DUMMY_HASH = _HASHER.hash("no account has this password")


def authenticate(engine: Engine, email: str, password: str) -> AccountRow | None:
    """The active account with this address and password, or None."""
    address = normalize_address(email)
    with connection(engine) as conn:
        account = repo.account_by_email(conn, address) if len(address) <= 320 else None
        stored = web.password_hash(conn, account.id) if account is not None else None
    ok = verify_password(stored or _DUMMY_HASH, password[:MAX_PASSWORD])
    if not ok or account is None or stored is None or account.state != AccountState.active:
        return None
    return account


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except Exception:  # noqa: BLE001 - mismatch, invalid hash: both mean "no"
        return False


def clean_name(name: str) -> str:
    text = "".join(" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in name)
    return " ".join(text.split())[:200]


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise SignupError(f"the password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise SignupError(f"the password may have at most {MAX_PASSWORD} characters")


def confirm_signup(engine: Engine, raw_token: str, name: str, password: str) -> str:
    """Redeem a signup token: the account gets its name and password and
    becomes ``active``; its earlier tickets are its own already. Returns the
    account's address. Raises SignupError."""
    display = clean_name(name)
    if not display:
        raise SignupError("a name is required")
    check_password(password)
    token = _link_token(raw_token)
    # Hashed before the transaction: argon2 takes a while, and SQLite holds
    # its write lock for the whole transaction.
    password_hash = hash_password(password)
    now = utcnow()
    with connection(engine) as conn:
        account_id = redeem_token(conn, token, PURPOSE_SIGNUP, now)
        if account_id is None:
            raise SignupError(INVALID_LINK)
        activated = repo.activate_account(conn, account_id, display, password_hash)
        if activated is None:  # active already (another link), or disabled
            raise SignupError(INVALID_LINK)
        # The other links sent to this address are spent too.
        tokens.use_account_tokens(conn, account_id, PURPOSE_SIGNUP, now)
        return activated
