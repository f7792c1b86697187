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
from gateway.store import outbox, repo, tokens
from gateway.store.db import connection
from gateway.store.models import utcnow

PURPOSE_SIGNUP = "signup"
SIGNUP_TEMPLATES = ("signup_confirmation", "signup_invitation")
REPEAT_INTERVAL = dt.timedelta(days=1)
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 would hash megabytes; nobody types them

_EMAIL_RE = re.compile(r"^[^@\s<>()\[\],;:\"\\]+@[^@\s<>()\[\],;:\"\\]+\.[^@\s<>()\[\],;:\"\\]+$")
_HASHER = PasswordHasher()  # argon2id with the library's current RFC 9106 defaults


class SignupError(Exception):
    """A signup step was refused; the message is safe to show."""


INVALID_LINK = "this signup link is invalid, already used or expired"


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


def recent_signup_mail(conn: Connection, address: str, now: dt.datetime) -> bool:
    """Whether a confirmation or invitation went (or is going) to the address
    in the last day."""
    return outbox.mails_to_since(conn, address, SIGNUP_TEMPLATES, now - REPEAT_INTERVAL) > 0


def request_signup(engine: Engine, settings: Settings, email: str) -> None:
    """Queue a ``signup_confirmation`` for ``email`` when that makes sense
    (an unverified or new address, nothing of the kind sent in the last
    day). Says nothing either way: the caller's output must not reveal
    whether the address has an account."""
    address = normalize_address(email)
    if not _EMAIL_RE.match(address) or len(address) > 320:
        raise SignupError(f"not an e-mail address: {email!r}")
    with connection(engine) as conn:
        account = repo.account_by_email(conn, address)
        if account is None:
            account = create_account(conn, address, "", settings.desk.default_locale, settings)
        if account.state != AccountState.unverified:
            return
        now = utcnow()
        if recent_signup_mail(conn, address, now):
            return
        notify.queue(conn, settings, account, "signup_confirmation", None, {})


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
    token = raw_token.strip()
    if not token or len(token) > 200:
        raise SignupError(INVALID_LINK)
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
