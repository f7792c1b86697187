"""Retention's persistence: the statements that find mail whose bytes are
due to go, remove them in bounded batches, and the lock that lets one
instance at a time do it (``gateway.retention`` decides what is due and
reports).

What goes: the raw bytes of a processed mail (its blob, unless other mail or
an attachment holds the same bytes; ``inbound_mail.raw_removed_at`` says
when), and an outbound mail's render data (``outbound_mail.data``, cleared;
``body_removed_at``). The rows stay: they are the mail log and the outbox's
record. Each batch is one short transaction, so a first run over a large
store never holds the (SQLite) write lock for long.

Removing a content-addressed blob races with a ``put`` of the same bytes for
a row that is not committed yet (``store/blobs.py`` says how a put marks
bytes as wanted); each batch here checks for rows that refer to its blobs
only after it has locked them (database blobs) or while their files are set
aside (file blobs)."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, Integer, bindparam, delete, func, select, tuple_, union, update

from gateway.domain import OutboxStatus
from gateway.store.blobs import BlobStore, DatabaseBlobStore, FileBlobStore, SetAside
from gateway.store.db import connection, read_connection, temporary_failures
from gateway.store.models import Blob
from gateway.store.repo import ATTACHMENT, ERASED_RAW, MAIL, OUTBOX

# pg_try_advisory_lock's key for "retention is running" ("gw-reten" in ASCII).
LOCK_KEY = 0x67772D726574656E
# A blob file a put touched this recently may belong to a row on its way to
# a commit: it stays. Far longer than any transaction between a put and its
# commit; a file kept for this reason keeps its rows' bytes until the next run.
WANTED_WINDOW = dt.timedelta(hours=1)
# Outbound mail that will never be sent again (bounced ones may still get a
# bounce report matched to them: the row stays, only its data goes).
FINAL_OUTBOX = (OutboxStatus.sent.value, OutboxStatus.failed.value, OutboxStatus.bounced.value)

BLOB = Blob.__table__  # type: ignore[attr-defined]

# -- statements ---------------------------------------------------------------
_KEPT_RAW = (
    MAIL.c.raw_removed_at.is_(None),
    MAIL.c.raw_sha256 != ERASED_RAW,  # no bytes left to remove
    MAIL.c.processed_at < bindparam("b_before"),
    MAIL.c.status.in_(bindparam("b_statuses", expanding=True)),
)
_AFTER_AT = bindparam("b_after_at", type_=MAIL.c.processed_at.type)  # typed: SQLite compares text
# Oldest first, continuing after the last row the run looked at (a row left
# alone, below, must not be looked at again and again).
_RAW_DUE = (
    select(MAIL.c.id, MAIL.c.raw_sha256, MAIL.c.processed_at)
    .where(*_KEPT_RAW)
    .where(tuple_(MAIL.c.processed_at, MAIL.c.id) > tuple_(_AFTER_AT, bindparam("b_after_id", type_=Integer)))
    .order_by(MAIL.c.processed_at, MAIL.c.id)
    .limit(bindparam("b_limit", type_=Integer))
    .with_for_update(skip_locked=True)  # PostgreSQL: a mail being reprocessed waits for the next run
)
_RAW_COUNT = select(func.count()).select_from(MAIL).where(*_KEPT_RAW)
_MARK_RAW = (
    update(MAIL)
    .where(MAIL.c.id.in_(bindparam("b_ids", expanding=True)))
    .values(raw_removed_at=bindparam("b_now"), raw_inline=None)
)
_UNMARK_RAW = (
    update(MAIL).where(MAIL.c.id.in_(bindparam("b_ids", expanding=True))).values(raw_removed_at=None)
)
# Digests some row still needs: mail whose bytes are kept (queued mail
# included) and attachments.
_STILL_USED = union(
    select(MAIL.c.raw_sha256.label("sha256"))
    .where(MAIL.c.raw_sha256.in_(bindparam("b_digests", expanding=True)))
    .where(MAIL.c.raw_removed_at.is_(None)),
    select(ATTACHMENT.c.sha256).where(ATTACHMENT.c.sha256.in_(bindparam("b_digests", expanding=True))),
)
_DELETE_BLOBS = delete(BLOB).where(BLOB.c.sha256.in_(bindparam("b_digests", expanding=True)))

_KEPT_BODY = (
    OUTBOX.c.body_removed_at.is_(None),
    OUTBOX.c.created_at < bindparam("b_before"),
    OUTBOX.c.status.in_(FINAL_OUTBOX),
)
_BODY_DUE = (
    select(OUTBOX.c.id)
    .where(*_KEPT_BODY)
    .order_by(OUTBOX.c.created_at, OUTBOX.c.id)
    .limit(bindparam("b_limit", type_=Integer))
    .with_for_update(skip_locked=True)
)
_BODY_COUNT = select(func.count()).select_from(OUTBOX).where(*_KEPT_BODY)
# The status again: ``outbox retry`` may have queued the mail meanwhile.
_CLEAR_BODY = (
    update(OUTBOX)
    .where(OUTBOX.c.id.in_(bindparam("b_ids", expanding=True)))
    .where(OUTBOX.c.body_removed_at.is_(None))
    .where(OUTBOX.c.status.in_(FINAL_OUTBOX))
    .values(data={}, body_removed_at=bindparam("b_now"))
)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


# -- one instance at a time ---------------------------------------------------------


@contextlib.contextmanager
def exclusive(engine: Engine) -> Iterator[bool]:
    """Whether this process may run retention now: on PostgreSQL, which
    several instances may share, a session advisory lock held on a
    connection of its own for the block (released by the database if the
    process dies); SQLite has one instance, whose batches the write lock
    already serialises."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    with temporary_failures(), engine.connect() as conn:
        got = bool(conn.execute(select(func.pg_try_advisory_lock(LOCK_KEY))).scalar())
        conn.commit()  # session-level: no transaction stays open while the run works
        try:
            yield got
        finally:
            if got:
                try:
                    conn.execute(select(func.pg_advisory_unlock(LOCK_KEY)))
                    conn.commit()
                except Exception:  # noqa: BLE001 - closing the session releases the lock too
                    conn.invalidate()


# -- raw mail -----------------------------------------------------------------------


@dataclass(frozen=True)
class RawBatch:
    """What one batch of ``remove_raw`` did."""

    seen: int  # mails looked at (fewer than the limit: the sweep is done)
    removed: int  # mails whose raw bytes are gone now
    after: tuple[dt.datetime, int]  # where the next batch goes on


def raw_start() -> tuple[dt.datetime, int]:
    """The position before the first mail."""
    return (_EPOCH, 0)


def remove_raw(
    engine: Engine,
    blobs: BlobStore,
    *,
    statuses: Sequence[str],
    before: dt.datetime,
    now: dt.datetime,
    limit: int,
    after: tuple[dt.datetime, int],
) -> RawBatch:
    """Remove the raw bytes of up to ``limit`` mails in ``statuses``
    processed before ``before``, the oldest after ``after`` first, in one
    transaction. A mail whose bytes a concurrent put just asked for keeps
    them (until a later run)."""
    aside: SetAside | None = None
    try:
        with connection(engine) as conn:
            params = {"b_before": before, "b_statuses": list(statuses), "b_limit": limit,
                      "b_after_at": after[0], "b_after_id": after[1]}
            rows = conn.execute(_RAW_DUE, params).all()
            if not rows:
                return RawBatch(0, 0, after)
            conn.execute(_MARK_RAW, {"b_ids": [r.id for r in rows], "b_now": now})
            digests = sorted({r.raw_sha256 for r in rows})
            kept: set[str] = set()
            if isinstance(blobs, FileBlobStore):
                # Checked after this batch's mails are marked: their own
                # references no longer count, every other mail's do.
                unused = set(digests) - _still_used(conn, digests)
                # Real time, not ``now`` (the age cutoff's): this is about puts happening now.
                aside = blobs.set_aside(sorted(unused), time.time() - WANTED_WINDOW.total_seconds())
                kept = aside.wanted
                if kept:
                    conn.execute(_UNMARK_RAW, {"b_ids": [r.id for r in rows if r.raw_sha256 in kept]})
            elif isinstance(blobs, DatabaseBlobStore):
                # Locked first: a put of the same bytes holds its lock until
                # its row is committed, so the check below sees that row.
                blobs.lock(conn, digests)
                unused = set(digests) - _still_used(conn, digests)
                if unused:
                    conn.execute(_DELETE_BLOBS, {"b_digests": sorted(unused)})
    except BaseException:
        if aside is not None:
            aside.restore()
        raise
    if aside is not None:
        aside.drop()
    last = rows[-1]
    return RawBatch(len(rows), sum(1 for r in rows if r.raw_sha256 not in kept), (last.processed_at, last.id))


def _still_used(conn: Connection, digests: Sequence[str]) -> set[str]:
    return {r[0] for r in conn.execute(_STILL_USED, {"b_digests": list(digests)})}


def count_raw(engine: Engine, *, statuses: Sequence[str], before: dt.datetime) -> int:
    """How many mails ``remove_raw`` would take (``--dry-run``)."""
    with read_connection(engine) as conn:
        return int(conn.execute(_RAW_COUNT, {"b_before": before, "b_statuses": list(statuses)}).scalar_one())


# -- outbound mail ------------------------------------------------------------------


def remove_bodies(engine: Engine, *, before: dt.datetime, now: dt.datetime, limit: int) -> tuple[int, int]:
    """Clear the render data of up to ``limit`` sent, failed or bounced
    mails created before ``before``, oldest first, in one transaction;
    returns (looked at, cleared)."""
    with connection(engine) as conn:
        ids = [r[0] for r in conn.execute(_BODY_DUE, {"b_before": before, "b_limit": limit})]
        if not ids:
            return 0, 0
        cleared = conn.execute(_CLEAR_BODY, {"b_ids": ids, "b_now": now}).rowcount
        return len(ids), int(cleared or 0)


def count_bodies(engine: Engine, *, before: dt.datetime) -> int:
    """How many mails ``remove_bodies`` would take (``--dry-run``)."""
    with read_connection(engine) as conn:
        return int(conn.execute(_BODY_COUNT, {"b_before": before}).scalar_one())
