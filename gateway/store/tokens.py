"""Persistence of single-use tokens (signup links): rows keyed by the
token's SHA-256, bound to an account, a purpose and an expiry. The raw
token and its hashing belong to ``gateway.signup``; nothing here sees a
raw token.

As in ``repo``: SQLAlchemy Core on the caller's ``Connection``, statements
built once at import with bind parameters."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection, bindparam, insert, select, update

from gateway.store.models import SignupToken

TOKEN = SignupToken.__table__  # type: ignore[attr-defined]

# -- statements ---------------------------------------------------------------
_INSERT_TOKEN = insert(TOKEN)
_DELETE_TOKEN = TOKEN.delete().where(TOKEN.c.token_sha256 == bindparam("b_sha"))
# SET used_at comes with the parameters.
_USE_TOKEN = (
    update(TOKEN)
    .where(TOKEN.c.token_sha256 == bindparam("b_sha"))
    .where(TOKEN.c.purpose == bindparam("b_purpose"))
    .where(TOKEN.c.used_at.is_(None))
    .where(TOKEN.c.expires_at > bindparam("b_now"))
    .returning(TOKEN.c.account_id)
)
_VALID_TOKEN = (
    select(TOKEN.c.account_id)
    .where(TOKEN.c.token_sha256 == bindparam("b_sha"))
    .where(TOKEN.c.purpose == bindparam("b_purpose"))
    .where(TOKEN.c.used_at.is_(None))
    .where(TOKEN.c.expires_at > bindparam("b_now"))
)
_USE_ACCOUNT_TOKENS = (
    update(TOKEN)
    .where(TOKEN.c.account_id == bindparam("b_account"))
    .where(TOKEN.c.purpose == bindparam("b_purpose"))
    .where(TOKEN.c.used_at.is_(None))
)


def insert_token(
    conn: Connection,
    token_sha256: str,
    account_id: int,
    purpose: str,
    created_at: dt.datetime,
    expires_at: dt.datetime,
) -> None:
    """Store a new, unused token by its hash."""
    conn.execute(
        _INSERT_TOKEN,
        {
            "token_sha256": token_sha256,
            "account_id": account_id,
            "purpose": purpose,
            "created_at": created_at,
            "expires_at": expires_at,
            "used_at": None,
        },
    )


def delete_token(conn: Connection, token_sha256: str) -> None:
    """Forget a token (its mail was never sent, so nobody can hold it)."""
    conn.execute(_DELETE_TOKEN, {"b_sha": token_sha256})


def use_token(conn: Connection, token_sha256: str, purpose: str, now: dt.datetime) -> int | None:
    """Mark the token used and return its account id, or None when it is
    unknown, for another purpose, used or expired at ``now``. One
    ``UPDATE … RETURNING``: of two concurrent calls with the same token
    exactly one gets the account, on either database."""
    params = {"b_sha": token_sha256, "b_purpose": purpose, "b_now": now, "used_at": now}
    account_id = conn.execute(_USE_TOKEN, params).scalar_one_or_none()
    return None if account_id is None else int(account_id)


def use_account_tokens(conn: Connection, account_id: int, purpose: str, now: dt.datetime) -> None:
    """Mark every unused token of the account for ``purpose`` used (once
    one link has done its job, the others sent to the address are spent)."""
    conn.execute(_USE_ACCOUNT_TOKENS, {"b_account": account_id, "b_purpose": purpose, "used_at": now})


def valid_token(conn: Connection, token_sha256: str, purpose: str, now: dt.datetime) -> int | None:
    """The account of an unused, unexpired token, without using it (the
    portal shows the form, or a page offering a new link)."""
    value = conn.execute(_VALID_TOKEN, {"b_sha": token_sha256, "b_purpose": purpose, "b_now": now}).scalar()
    return None if value is None else int(value)
