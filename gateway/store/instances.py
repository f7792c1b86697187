"""The registry of running ``gateway serve`` instances and the leases of
work only one of them may do at a time (SQLAlchemy Core; SQLite and
PostgreSQL alike).

A lease is a row ``(name, holder, expires_at)``. Taking it is one
conditional UPDATE (free, expired, or already ours) or, for a lease never
taken, an INSERT that loses quietly to a concurrent one: on PostgreSQL the
second UPDATE waits for the first's row lock and then re-checks its WHERE,
so two instances never both succeed. A holder's heartbeat moves the expiry
of every lease it holds in the same statement that proves it alive; a dead
instance's leases simply run out. Times are the instances' own clocks (keep
them in sync, as NTP does; a lease outlives its heartbeat by its whole
length, so seconds of skew do not matter)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BindParameter, Connection, bindparam, case, delete, func, or_, select, update

from gateway.store.db import dialect_insert
from gateway.store.models import GatewayInstance, InboundMail, Lease

INSTANCE = GatewayInstance.__table__  # type: ignore[attr-defined]
LEASE = Lease.__table__  # type: ignore[attr-defined]
MAIL = InboundMail.__table__  # type: ignore[attr-defined]


def register(conn: Connection, name: str, host: str, pid: int, version: str, now: dt.datetime) -> None:
    """Insert or replace the instance's row (a restarted instance of the
    same configured name takes its row over)."""
    values = {"host": host, "pid": pid, "version": version, "started_at": now, "heartbeat_at": now}
    ins = dialect_insert(conn.dialect.name, INSTANCE).values(name=name, **values)
    conn.execute(ins.on_conflict_do_update(index_elements=["name"], set_=values))


def instance(conn: Connection, name: str) -> dict[str, Any] | None:
    row = conn.execute(select(INSTANCE).where(INSTANCE.c.name == name)).mappings().first()
    return dict(row) if row else None


def heartbeat(conn: Connection, name: str, now: dt.datetime, lease_for: dt.timedelta) -> set[str] | None:
    """Prove ``name`` alive and extend its leases by ``lease_for``; the
    names of the leases it still holds. None when its row is gone (an
    operator removed it, or another instance thought it dead): register
    again."""
    alive = conn.execute(
        update(INSTANCE).where(INSTANCE.c.name == name).values(heartbeat_at=now)
    ).rowcount
    if not alive:
        return None
    conn.execute(update(LEASE).where(LEASE.c.holder == name).values(expires_at=now + lease_for))
    return set(conn.execute(select(LEASE.c.name).where(LEASE.c.holder == name)).scalars())


def unregister(conn: Connection, name: str) -> None:
    """A clean stop: the instance's leases are free at once."""
    conn.execute(delete(LEASE).where(LEASE.c.holder == name))
    conn.execute(delete(INSTANCE).where(INSTANCE.c.name == name))


def acquire(conn: Connection, lease: str, holder: str, now: dt.datetime, lease_for: dt.timedelta) -> bool:
    """Take or renew ``lease`` for ``holder``: True when it is now theirs
    until ``now + lease_for``."""
    expires = now + lease_for
    taken = conn.execute(
        update(LEASE)
        .where(LEASE.c.name == lease)
        .where(or_(LEASE.c.holder == holder, LEASE.c.expires_at < now))
        .values(
            # A renewal keeps when it was first taken; a takeover starts anew.
            acquired_at=case((LEASE.c.holder == holder, LEASE.c.acquired_at), else_=now),
            holder=holder,
            expires_at=expires,
        )
    ).rowcount
    if taken:
        return True
    ins = dialect_insert(conn.dialect.name, LEASE).values(
        name=lease, holder=holder, acquired_at=now, expires_at=expires
    )
    won = conn.execute(ins.on_conflict_do_nothing(index_elements=["name"]).returning(LEASE.c.name)).first()
    return won is not None


def holder(conn: Connection, lease: str, now: dt.datetime) -> str | None:
    """Who holds ``lease`` now (None: nobody, or it ran out)."""
    row = conn.execute(
        select(LEASE.c.holder).where(LEASE.c.name == lease).where(LEASE.c.expires_at >= now)
    ).first()
    return str(row[0]) if row else None


_CLAIMS = (
    select(MAIL.c.claimed_by, func.count())
    .where(MAIL.c.status == "processing")
    .group_by(MAIL.c.claimed_by)
)


def listing(conn: Connection, now: dt.datetime, lease_for: dt.timedelta) -> list[dict[str, Any]]:
    """Every registered instance, newest first, with whether its heartbeat
    is current, the leases it holds and how many spool rows its workers
    have claimed (workers are named ``<instance>/<host>:<pid>``)."""
    claims: dict[str, int] = {}
    for owner, n in conn.execute(_CLAIMS):
        name = str(owner or "").rpartition("/")[0]
        claims[name] = claims.get(name, 0) + int(n)
    leases: dict[str, list[str]] = {}
    for name, who in conn.execute(
        select(LEASE.c.name, LEASE.c.holder).where(LEASE.c.expires_at >= now).order_by(LEASE.c.name)
    ):
        leases.setdefault(who, []).append(name)
    out = []
    for row in conn.execute(select(INSTANCE).order_by(INSTANCE.c.started_at.desc())).mappings():
        beat = row["heartbeat_at"]
        beat = beat if beat.tzinfo else beat.replace(tzinfo=dt.UTC)
        out.append({
            "name": row["name"],
            "host": row["host"],
            "pid": row["pid"],
            "version": row["version"],
            "started_at": _iso(row["started_at"]),
            "heartbeat_at": _iso(beat),
            "alive": now - beat <= lease_for,
            "leases": leases.get(row["name"], []),
            "claims": claims.get(row["name"], 0),
        })
    return out


def dead_instances(conn: Connection, now: dt.datetime, lease_for: dt.timedelta) -> list[str]:
    """Instances whose heartbeat stopped more than ``lease_for`` ago."""
    return list(conn.execute(
        select(INSTANCE.c.name).where(INSTANCE.c.heartbeat_at < now - lease_for)
    ).scalars())


def forget(conn: Connection, names: list[str]) -> None:
    """Remove dead instances' rows and their (expired) leases: their work
    was taken over."""
    if names:
        params = {"b_names": names}
        named: BindParameter[str] = bindparam("b_names", expanding=True)
        conn.execute(delete(LEASE).where(LEASE.c.holder.in_(named)), params)
        conn.execute(delete(INSTANCE).where(INSTANCE.c.name.in_(named)), params)


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()
