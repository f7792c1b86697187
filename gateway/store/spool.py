"""The spool (persistence of accepted mail): durable put (raw bytes to the blob store, a queued row in
``inbound_mail``, one commit for a whole batch), claiming rows for workers
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite),
finishing, and re-queueing for reprocessing. Ingress calls ``put`` and answers
"OK" only after it returned."""

from __future__ import annotations

import datetime as dt
import errno
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, bindparam, exists, func, insert, select, update

from gateway.domain import MailStatus, TemporaryFailure
from gateway.store import instances
from gateway.store.blobs import BlobStore, sha256_hex
from gateway.store.db import connection, is_transient, read_connection
from gateway.store.instances import INSTANCE
from gateway.store.models import utcnow
from gateway.store.repo import ERASED_RAW, MAIL
from gateway.store.shapes import chunks, padded


@dataclass(frozen=True)
class SpoolItem:
    """One accepted message and its envelope."""

    raw: bytes
    source: str  # smtp, lmtp, imap, ingest
    envelope_from: str | None = None
    recipient: str | None = None
    trusted: bool = False


@dataclass(frozen=True)
class Job:
    """A claimed spool row with what the pipeline needs from it."""

    id: int
    raw_sha256: str
    recipient: str | None
    envelope_from: str | None
    trusted: bool
    received_at: dt.datetime | None = None  # for the latency measurement (ops)
    raw_inline: bytes | None = None  # still in its spool row (Spool.inline_max)


DEFAULT_INLINE_MAX = 262_144  # bytes; the default of storage.spool_inline_max


class RawMailRemoved(LookupError):
    """The mail's raw bytes were removed by retention (``store/retention.py``);
    its row, the mail log's entry, stays."""

    def __init__(self, mail_id: int, processed_at: dt.datetime | None, removed_at: dt.datetime) -> None:
        super().__init__(f"the raw message of mail {mail_id} was removed by retention")
        self.mail_id = mail_id
        self.processed_at = processed_at
        self.removed_at = removed_at


class RawMailErased(LookupError):
    """The mail's raw bytes were erased with its sender's personal data
    (``gateway account erase``); its row stays, its address replaced."""

    def __init__(self, mail_id: int) -> None:
        super().__init__(f"the raw message of mail {mail_id} was erased with its sender's data")
        self.mail_id = mail_id


# Ids come back unordered and are sorted: both databases number the rows of
# one INSERT in the order given (SQLite: max(rowid)+1 under the write lock,
# PostgreSQL: nextval per row), and the INSERTs of a batch's chunks
# (``shapes.chunks``) run in order in one transaction, so the sorted ids
# line up with the items.
# (sort_by_parameter_order would add a sentinel column: ~30% more CPU here.)
_INSERT_RETURNING_ID = insert(MAIL).returning(MAIL.c.id)
# The Message-ID header in the header block (folded or not). A cheap scan at
# intake, so that a worker can see which message another worker is still
# processing (Runner._wait_for_ancestors); the parser's value replaces it.
_MESSAGE_ID = re.compile(
    rb"^message-id:[ \t]*(?:\r?\n[ \t]+)?(<[^<>\s]{1,990}>)", re.IGNORECASE | re.MULTILINE
)
_HEADER_SCAN = 65536
_LOAD_JOBS = (
    select(
        MAIL.c.id, MAIL.c.raw_sha256, MAIL.c.recipient, MAIL.c.envelope_from, MAIL.c.trusted,
        MAIL.c.received_at, MAIL.c.raw_inline,
    )
    .where(MAIL.c.id.in_(bindparam("b_ids", expanding=True)))
    .order_by(MAIL.c.id)
)
_STATES = select(MAIL.c.id, MAIL.c.status, MAIL.c.disposition).where(
    MAIL.c.id.in_(bindparam("b_ids", expanding=True))
)
_CLAIMERS = select(MAIL.c.claimed_by).where(MAIL.c.status == str(MailStatus.processing)).distinct()
_UNCLAIM_OF = (
    update(MAIL)
    .where(MAIL.c.status == str(MailStatus.processing))
    .where(MAIL.c.claimed_by.in_(bindparam("b_owners", expanding=True)))
    .values(status=str(MailStatus.queued), claimed_by=None, claimed_at=None)
)


def quick_message_id(raw: bytes) -> str | None:
    """The message's Message-ID from a scan of its header block, or None."""
    end = raw.find(b"\r\n\r\n", 0, _HEADER_SCAN)
    if end < 0:
        end = raw.find(b"\n\n", 0, _HEADER_SCAN)
    m = _MESSAGE_ID.search(raw, 0, end if end >= 0 else _HEADER_SCAN)
    return m.group(1).decode("ascii", "replace") if m else None


class Spool:
    def __init__(
        self,
        engine: Engine,
        blobs: BlobStore,
        inline_max: int = DEFAULT_INLINE_MAX,
    ) -> None:
        self.engine = engine
        self.blobs = blobs
        # Messages up to this size wait inside their row (``raw_inline``):
        # a batch of them is one commit, where file blobs cost a file
        # creation and its sync per message. Larger ones, and everything
        # when the blobs live in the database anyway, go to the blob store.
        self.inline_max = inline_max if blobs.holds_files else 0

    def put_many(self, items: Sequence[SpoolItem]) -> list[int]:
        """Store all items durably in one transaction (group commit) and
        return their spool ids. Raises TemporaryFailure when the disk or the
        database is in trouble; then nothing of the batch was accepted."""
        return self.put_many_with(items, None)

    def put_many_with(
        self, items: Sequence[SpoolItem], on_conn: Callable[[Connection], None] | None
    ) -> list[int]:
        """``put_many``, and run ``on_conn`` in the same transaction after the
        rows are inserted: the IMAP poller writes its cursor there, so the
        spool rows and "fetched up to UID n" commit together or not at all.
        With no items, only ``on_conn`` runs (in a transaction of its own)."""
        if not items:
            if on_conn is not None:
                with connection(self.engine) as conn:
                    on_conn(conn)
            return []
        inline = [len(item.raw) <= self.inline_max for item in items]
        # Large messages' files are written and synced before the
        # transaction, so the database write lock is held only for the row
        # inserts; a crash in between leaves an unreferenced blob, never a
        # row without bytes. transaction() maps disk-full and database
        # trouble to TemporaryFailure: then nothing of the batch counts as
        # accepted.
        digests: list[str | None] = [
            sha256_hex(item.raw) if small else None for item, small in zip(items, inline, strict=True)
        ]
        if self.blobs.holds_files and not all(inline):
            try:
                with self.blobs.group():
                    for i, item in enumerate(items):
                        if not inline[i]:
                            digests[i] = self.blobs.put(None, item.raw)
            except OSError as exc:
                if is_transient(exc):
                    raise TemporaryFailure(
                        "disk full" if exc.errno == errno.ENOSPC else "storage error"
                    ) from exc
                raise
        now = utcnow()
        with connection(self.engine) as conn:
            for i, item in enumerate(items):
                if digests[i] is None:  # DatabaseBlobStore: with the rows
                    digests[i] = self.blobs.put(conn, item.raw)
            rows = [
                {
                    "received_at": now,
                    "source": item.source,
                    "envelope_from": item.envelope_from,
                    "recipient": item.recipient,
                    "trusted": item.trusted,
                    "raw_sha256": digest,
                    "raw_size": len(item.raw),
                    "raw_inline": item.raw if small else None,
                    "message_id": quick_message_id(item.raw),
                    "status": str(MailStatus.queued),
                    "attempts": 0,
                }
                for item, digest, small in zip(items, digests, inline, strict=True)
            ]
            ids = sorted(
                int(r[0]) for chunk in chunks(rows) for r in conn.execute(_INSERT_RETURNING_ID, list(chunk))
            )
            if on_conn is not None:
                on_conn(conn)
            return ids

    def read_raw(self, mail_id: int) -> bytes:
        """A spooled mail's bytes, wherever they wait: inside its row while
        queued, in the blob store once processed. KeyError if missing,
        RawMailRemoved if retention removed them, RawMailErased if an
        erasure did."""
        with read_connection(self.engine) as conn:
            row = conn.execute(
                select(MAIL.c.raw_inline, MAIL.c.raw_sha256, MAIL.c.processed_at, MAIL.c.raw_removed_at)
                .where(MAIL.c.id == mail_id)
            ).first()
            if row is None:
                raise KeyError(mail_id)
            if row.raw_removed_at is not None:
                raise RawMailRemoved(mail_id, row.processed_at, row.raw_removed_at)
            if row[0] is None and row.raw_sha256 == ERASED_RAW:
                raise RawMailErased(mail_id)
            return bytes(row[0]) if row[0] is not None else self.blobs.get(conn, row[1])

    def put(self, item: SpoolItem) -> int:
        return self.put_many([item])[0]

    def claim(self, worker: str, limit: int, ids: Sequence[int] | None = None) -> list[int]:
        """Mark up to ``limit`` queued rows (oldest first) as ``processing`` for
        ``worker`` and return their ids. Safe with several workers and
        processes: PostgreSQL skips rows another transaction has locked;
        SQLite serialises writers with BEGIN IMMEDIATE."""
        with connection(self.engine) as conn:
            pick = (
                select(MAIL.c.id)
                .where(MAIL.c.status == str(MailStatus.queued))
                .order_by(MAIL.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            if ids is not None:
                pick = pick.where(MAIL.c.id.in_(padded(ids)))
            chosen = [r[0] for r in conn.execute(pick)]
            if not chosen:
                return []
            conn.execute(
                update(MAIL)
                .where(MAIL.c.id.in_(padded(chosen)))
                .values(
                    status=str(MailStatus.processing),
                    claimed_by=worker,
                    claimed_at=utcnow(),
                    attempts=MAIL.c.attempts + 1,
                )
            )
            return sorted(chosen)

    def release(self, ids: Sequence[int]) -> None:
        """Put claimed rows back in the queue (transient trouble)."""
        if not ids:
            return
        with connection(self.engine) as conn:
            conn.execute(
                update(MAIL)
                .where(MAIL.c.id.in_(padded(ids)))
                .where(MAIL.c.status == str(MailStatus.processing))
                .values(status=str(MailStatus.queued), claimed_by=None, claimed_at=None)
            )

    def reclaim_stale(self, older_than: dt.timedelta, alive_for: dt.timedelta | None = None) -> int:
        """Re-queue rows claimed longer than ``older_than`` ago whose worker
        is not a live instance's: rows of an instance whose heartbeat is
        younger than ``alive_for`` are its, however long they take (a dead
        instance's rows go sooner: ``reclaim_of_dead_instances``). This is
        for claims no instance names (``gateway ingest`` run by hand)."""
        now = utcnow()
        stmt = (
            update(MAIL)
            .where(MAIL.c.status == str(MailStatus.processing))
            .where(MAIL.c.claimed_at < now - older_than)
        )
        if alive_for is not None:
            stmt = stmt.where(~exists().where(
                INSTANCE.c.heartbeat_at >= now - alive_for,
                func.substr(MAIL.c.claimed_by, 1, func.length(INSTANCE.c.name) + 1) == INSTANCE.c.name + "/",
            ))
        stmt = stmt.values(status=str(MailStatus.queued), claimed_by=None, claimed_at=None)
        with connection(self.engine) as conn:
            return len(conn.execute(stmt.returning(MAIL.c.id)).all())

    def reclaim_of_dead_instances(self, alive_for: dt.timedelta) -> tuple[int, list[str]]:
        """Re-queue the rows claimed by the workers of instances whose
        heartbeat stopped more than ``alive_for`` ago, and forget those
        instances; (rows re-queued, the instances' names)."""
        now = utcnow()
        with connection(self.engine) as conn:
            dead = instances.dead_instances(conn, now, alive_for)
            if not dead:
                return 0, []
            n = 0
            for name in dead:
                n += int(conn.execute(
                    update(MAIL)
                    .where(MAIL.c.status == str(MailStatus.processing))
                    .where(func.substr(MAIL.c.claimed_by, 1, len(name) + 1) == name + "/")
                    .values(status=str(MailStatus.queued), claimed_by=None, claimed_at=None)
                ).rowcount or 0)
            instances.forget(conn, dead)
            return n, dead

    def load(self, ids: Sequence[int]) -> list[Job]:
        """The claimed rows ``ids``, in spool order."""
        with read_connection(self.engine) as conn:
            return [Job(*r) for r in conn.execute(_LOAD_JOBS, {"b_ids": padded(ids)})]

    def states(self, ids: Sequence[int]) -> dict[int, tuple[str, str | None]]:
        """Status and disposition of the mails ``ids`` that exist."""
        with read_connection(self.engine) as conn:
            return {r.id: (r.status, r.disposition) for r in conn.execute(_STATES, {"b_ids": padded(ids)})}

    def reclaim_dead(self, is_dead: Callable[[str], bool]) -> int:
        """Re-queue the rows claimed by workers that ``is_dead`` says no
        longer exist (named ``host:pid``: the daemon knows which processes
        of its own host are gone); how many."""
        with connection(self.engine) as conn:
            owners = [r[0] for r in conn.execute(_CLAIMERS) if r[0]]
            dead = [o for o in owners if is_dead(o)]
            if not dead:
                return 0
            return int(conn.execute(_UNCLAIM_OF, {"b_owners": padded(dead)}).rowcount or 0)

    def requeue(self, ids: Sequence[int]) -> list[int]:
        """Queue finished or quarantined mails again (``mail reprocess``);
        returns the ids that exist and still have their raw bytes (retention
        may have removed them: such mail cannot be processed again)."""
        with connection(self.engine) as conn:
            found = [
                r[0]
                for r in conn.execute(
                    select(MAIL.c.id).where(MAIL.c.id.in_(list(ids))).where(MAIL.c.raw_removed_at.is_(None))
                    .with_for_update()  # PostgreSQL: not while retention is removing its bytes
                )
            ]
            if found:
                conn.execute(
                    update(MAIL)
                    .where(MAIL.c.id.in_(found))
                    .values(status=str(MailStatus.queued), claimed_by=None, claimed_at=None, error=None)
                )
            return sorted(found)
