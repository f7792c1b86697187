"""This daemon as one instance among several on one database: its name,
its row in the registry, the heartbeat that keeps the row and its leases
alive, and the leases themselves (``store.instances``).

An instance believes it holds a lease only until its last successful
heartbeat (or acquisition) plus the lease's length, counted from *before*
that database call, minus a margin: if the database is unreachable, it
stops using the lease before any other instance could have taken it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import time

from sqlalchemy import Engine

from gateway import __version__
from gateway.children import gone_here
from gateway.exits import CommandError
from gateway.settings import Settings
from gateway.store import instances
from gateway.store.db import connection, read_connection
from gateway.store.models import utcnow

log = logging.getLogger("gateway.instance")

MARGIN = 2.0  # seconds: stop using a lease this long before it could run out elsewhere


def default_name() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"


class Instance:
    """Register, heartbeat, unregister; take and check leases."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.engine = engine
        self.name = settings.instance.name or default_name()
        self.lease_for = dt.timedelta(seconds=settings.instance.lease_seconds)
        self.every = settings.instance.lease_seconds / 3
        self.blobs = settings.storage.blobs
        self.shared_blobs = settings.storage.blobs == "database" or settings.storage.shared
        self._held: set[str] = set()
        self._valid_until = 0.0  # time.monotonic() until which our leases are surely ours
        self._task: asyncio.Task[None] | None = None

    # -- life --------------------------------------------------------------
    def register(self) -> None:
        """Refuse a name another live instance uses; else take the row."""
        now = utcnow()
        with connection(self.engine) as conn:
            other = instances.instance(conn, self.name)
            if other is not None and other["pid"] != os.getpid() and self._alive(other, now):
                raise CommandError(
                    f"[instance] name {self.name!r} is in use by a running gateway "
                    f"(pid {other['pid']} on {other['host']}, heartbeat "
                    f"{(now - _utc(other['heartbeat_at'])).total_seconds():.0f}s ago): give each its own name"
                )
            if not self.shared_blobs:
                others = [i for i in instances.listing(conn, now, self.lease_for)
                          if i["alive"] and i["name"] != self.name and not _gone_here(i)]
                if others:
                    other_one = f"{others[0]['name']} on {others[0]['host']}"
                    raise CommandError(
                        f"another gateway ({other_one}) runs on this database, "
                        f"and [storage] blobs = {self.blobs!r} is a directory of this host: the others "
                        "could not read its files. Set blobs = \"database\", or storage.shared = true if "
                        "every instance mounts the same directory"
                    )
            instances.register(conn, self.name, os.uname().nodename, os.getpid(), __version__, now)
        log.info("instance %s registered", self.name)

    def _alive(self, row: dict[str, object], now: dt.datetime) -> bool:
        beat = row["heartbeat_at"]
        assert isinstance(beat, dt.datetime)
        return now - _utc(beat) <= self.lease_for and not _gone_here(row)

    async def start(self) -> None:
        await asyncio.to_thread(self.register)
        self._valid_until = time.monotonic() + self.lease_for.total_seconds() - MARGIN
        self._task = asyncio.create_task(self._beat(), name="instance-heartbeat")

    async def stop(self) -> None:
        """A clean stop: heartbeat off, row and leases removed (another
        instance takes the mailboxes over at its next poll). Nothing when
        it never started (a refused name is another instance's row)."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        self._held.clear()
        try:
            await asyncio.to_thread(self._unregister)
        except Exception as exc:  # noqa: BLE001 - the leases then simply run out
            log.warning("instance %s: could not unregister: %s", self.name, exc)

    def _unregister(self) -> None:
        with connection(self.engine) as conn:
            instances.unregister(conn, self.name)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            started = time.monotonic()
            try:
                held = await asyncio.to_thread(self._heartbeat)
            except Exception as exc:  # noqa: BLE001 - the database may be away; leases lapse on their own
                log.warning("instance %s: heartbeat failed: %s", self.name, exc)
                continue
            self._valid_until = started + self.lease_for.total_seconds() - MARGIN
            lost = self._held - held
            if lost:
                log.warning("instance %s: lost lease(s) %s", self.name, ", ".join(sorted(lost)))
            self._held = held

    def _heartbeat(self) -> set[str]:
        with connection(self.engine) as conn:
            held = instances.heartbeat(conn, self.name, utcnow(), self.lease_for)
            if held is None:
                # Our row is gone (removed as dead while the database was
                # away from us): register again, with no leases.
                log.warning("instance %s: registry row was gone; registering again", self.name)
                instances.register(conn, self.name, os.uname().nodename, os.getpid(), __version__, utcnow())
                return set()
            return held

    # -- leases ------------------------------------------------------------
    async def acquire(self, lease: str) -> bool:
        """Take or renew ``lease``; whether it is ours now."""
        started = time.monotonic()
        try:
            ok = await asyncio.to_thread(self._acquire, lease)
        except Exception as exc:  # noqa: BLE001 - cannot tell: behave as if not ours
            log.warning("instance %s: cannot take lease %s: %s", self.name, lease, exc)
            return False
        if ok:
            if lease not in self._held:
                log.info("instance %s: took lease %s", self.name, lease)
            self._held.add(lease)
            self._valid_until = max(self._valid_until, started + self.lease_for.total_seconds() - MARGIN)
        else:
            self._held.discard(lease)
        return ok

    def try_lease(self, lease: str) -> bool:
        """``acquire`` for a thread (a metrics scrape): whether ``lease`` is
        ours, taking it when free. Held already: no database call."""
        if self.holds(lease):
            return True
        started = time.monotonic()
        try:
            ok = self._acquire(lease)
        except Exception as exc:  # noqa: BLE001 - cannot tell: not ours
            log.warning("instance %s: cannot take lease %s: %s", self.name, lease, exc)
            return False
        if ok:
            self._held = self._held | {lease}  # a new set: the heartbeat's thread may swap it
            self._valid_until = max(self._valid_until, started + self.lease_for.total_seconds() - MARGIN)
        return ok

    def _acquire(self, lease: str) -> bool:
        with connection(self.engine) as conn:
            return instances.acquire(conn, lease, self.name, utcnow(), self.lease_for)

    def holds(self, lease: str) -> bool:
        """Whether ``lease`` is surely ours at this moment."""
        return lease in self._held and time.monotonic() < self._valid_until

    def holder(self, lease: str) -> str | None:
        with read_connection(self.engine) as conn:
            return instances.holder(conn, lease, utcnow())


def _gone_here(row: dict[str, object]) -> bool:
    """An instance of this host whose process no longer exists (killed
    moments ago: its heartbeat is still fresh)."""
    pid = row["pid"]
    return isinstance(pid, int) and gone_here(str(row["host"]), pid)


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
