"""The portal's persistence: browser sessions and rate-limit counters, in
the database so that every portal process (and instance) sees the same.
Session ids are stored as their SHA-256 only. Core statements built once,
as in ``repo``."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from gateway.store.db import dialect_insert
from gateway.store.models import RateLimit, SharedSecret, WebSession, utcnow
from gateway.store.repo import ACCOUNT, ACCOUNT_COLS, AccountRow

SESSION = WebSession.__table__  # type: ignore[attr-defined]
LIMIT = RateLimit.__table__  # type: ignore[attr-defined]


def session_key(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SignedIn:
    """A live session and its account."""

    account: AccountRow
    csrf_token: str
    expires_at: dt.datetime
    password_hash: str | None


_INSERT_SESSION = insert(SESSION)
_SESSION = (
    select(SESSION.c.csrf_token, SESSION.c.expires_at, ACCOUNT.c.password_hash, *ACCOUNT_COLS)
    .join(ACCOUNT, ACCOUNT.c.id == SESSION.c.account_id)
    .where(SESSION.c.id_sha256 == bindparam("b_key"))
    .where(SESSION.c.expires_at > bindparam("b_now"))
)
_DELETE_SESSION = delete(SESSION).where(SESSION.c.id_sha256 == bindparam("b_key"))
_DELETE_ACCOUNT_SESSIONS = delete(SESSION).where(SESSION.c.account_id == bindparam("b_account"))
_DELETE_EXPIRED = delete(SESSION).where(SESSION.c.expires_at <= bindparam("b_now"))
_LIMIT_ROW = select(LIMIT.c.window_start, LIMIT.c.count).where(LIMIT.c.key == bindparam("b_key"))
_LIMIT_BUMP = (
    update(LIMIT).where(LIMIT.c.key == bindparam("b_key")).values(count=LIMIT.c.count + 1)
)
_LIMIT_RESET = update(LIMIT).where(LIMIT.c.key == bindparam("b_key"))
_ACCOUNT_PASSWORD = select(ACCOUNT.c.password_hash).where(ACCOUNT.c.id == bindparam("b_id"))
_SET_ACCOUNT = update(ACCOUNT).where(ACCOUNT.c.id == bindparam("b_id"))


def create_session(conn: Connection, raw_id: str, account_id: int, csrf_token: str, hours: int) -> None:
    now = utcnow()
    conn.execute(_INSERT_SESSION, {
        "id_sha256": session_key(raw_id), "account_id": account_id, "csrf_token": csrf_token,
        "created_at": now, "expires_at": now + dt.timedelta(hours=hours),
    })


def signed_in(conn: Connection, raw_id: str) -> SignedIn | None:
    """The session's account, if the session exists, has not expired and
    its account is active."""
    row = conn.execute(_SESSION, {"b_key": session_key(raw_id), "b_now": utcnow()}).first()
    if row is None:
        return None
    account = AccountRow(*row[3:])
    if account.state != "active":
        return None
    return SignedIn(account=account, csrf_token=row[0], expires_at=row[1], password_hash=row[2])


def end_session(conn: Connection, raw_id: str) -> None:
    conn.execute(_DELETE_SESSION, {"b_key": session_key(raw_id)})


def end_account_sessions(conn: Connection, account_id: int) -> None:
    """Sign the account out everywhere (after a password change or reset)."""
    conn.execute(_DELETE_ACCOUNT_SESSIONS, {"b_account": account_id})


def delete_expired_sessions(conn: Connection) -> int:
    return int(conn.execute(_DELETE_EXPIRED, {"b_now": utcnow()}).rowcount or 0)


def delete_stale_limits(conn: Connection, window: dt.timedelta) -> int:
    """Counters whose window has passed (a new request starts a new one)."""
    cutoff = utcnow() - window
    return int(conn.execute(delete(LIMIT).where(LIMIT.c.window_start < cutoff)).rowcount or 0)


def hit(conn: Connection, key: str, window: dt.timedelta) -> int:
    """Count one request for ``key`` in the current window (a fixed window
    starting at its first request); the count including this one."""
    now = utcnow()
    key = key[:200]
    row = conn.execute(_LIMIT_ROW, {"b_key": key}).first()
    if row is None:
        ins = dialect_insert(conn.dialect.name, LIMIT).on_conflict_do_nothing()
        if conn.execute(ins, {"key": key, "window_start": now, "count": 1}).rowcount:
            return 1
        row = conn.execute(_LIMIT_ROW, {"b_key": key}).first()
        assert row is not None
    start = row[0] if row[0].tzinfo else row[0].replace(tzinfo=dt.UTC)
    if now - start >= window:
        conn.execute(_LIMIT_RESET, {"b_key": key, "window_start": now, "count": 1})
        return 1
    conn.execute(_LIMIT_BUMP, {"b_key": key})
    return int(row[1]) + 1


def password_hash(conn: Connection, account_id: int) -> str | None:
    value = conn.execute(_ACCOUNT_PASSWORD, {"b_id": account_id}).scalar_one_or_none()
    return str(value) if value else None


def update_profile(conn: Connection, account_id: int, **values: object) -> None:
    """Set ``name``, ``locale`` and/or ``password_hash`` of an account."""
    conn.execute(_SET_ACCOUNT, {"b_id": account_id, **values})


SECRET = SharedSecret.__table__  # type: ignore[attr-defined]


def shared_secret(conn: Connection, name: str, candidate: str) -> str:
    """The secret ``name`` all instances use: the one stored, or else
    ``candidate``, stored now (a concurrent first start loses quietly and
    reads the winner's)."""
    ins = dialect_insert(conn.dialect.name, SECRET).values(name=name, value=candidate)
    conn.execute(ins.on_conflict_do_nothing(index_elements=["name"]))
    return str(conn.execute(select(SECRET.c.value).where(SECRET.c.name == name)).scalar_one())
