"""The spool: durable put (raw bytes to the blob store, a queued row in
``inbound_mail``, one commit for a whole batch), claiming rows for workers
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite),
finishing, and re-queueing for reprocessing. Ingress calls ``put`` and answers
"OK" only after it returned."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, func, select, update
from sqlmodel import Session

from gateway.domain import MailStatus
from gateway.store.blobs import DatabaseBlobStore, FileBlobStore
from gateway.store.db import transaction
from gateway.store.models import InboundMail, utcnow


@dataclass(frozen=True)
class SpoolItem:
    """One accepted message and its envelope."""

    raw: bytes
    source: str  # smtp, lmtp, imap, ingest
    envelope_from: str | None = None
    recipient: str | None = None
    trusted: bool = False


class Spool:
    def __init__(self, engine: Engine, blobs: FileBlobStore | DatabaseBlobStore) -> None:
        self.engine = engine
        self.blobs = blobs

    def put_many(self, items: Sequence[SpoolItem]) -> list[int]:
        """Store all items durably in one transaction (group commit) and
        return their spool ids. Raises TemporaryFailure when the disk or the
        database is in trouble; then nothing of the batch was accepted."""
        if not items:
            return []
        # Blob files are fsynced inside put(); the row commit makes them
        # reachable. transaction() maps disk-full and database trouble to
        # TemporaryFailure, so nothing of the batch counts as accepted then.
        with transaction(self.engine) as session, self.blobs.group():
            rows = []
            for item in items:
                digest = self.blobs.put(session, item.raw)
                row = InboundMail(
                    source=item.source,
                    envelope_from=item.envelope_from,
                    recipient=item.recipient,
                    trusted=item.trusted,
                    raw_sha256=digest,
                    raw_size=len(item.raw),
                    status=MailStatus.queued,
                )
                session.add(row)
                rows.append(row)
            session.flush()
            return [r.id for r in rows if r.id is not None]

    def put(self, item: SpoolItem) -> int:
        return self.put_many([item])[0]

    def claim(self, worker: str, limit: int, ids: Sequence[int] | None = None) -> list[int]:
        """Mark up to ``limit`` queued rows (oldest first) as ``processing`` for
        ``worker`` and return their ids. Safe with several workers and
        processes: PostgreSQL skips rows another transaction has locked;
        SQLite serialises writers with BEGIN IMMEDIATE."""
        with transaction(self.engine) as session:
            pick = (
                select(InboundMail.id)
                .where(InboundMail.status == MailStatus.queued)
                .order_by(InboundMail.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            if ids is not None:
                pick = pick.where(InboundMail.id.in_(list(ids)))  # type: ignore[union-attr]
            chosen = [r[0] for r in session.execute(pick)]
            if not chosen:
                return []
            session.execute(
                update(InboundMail)
                .where(InboundMail.id.in_(chosen))  # type: ignore[union-attr]
                .values(
                    status=MailStatus.processing,
                    claimed_by=worker,
                    claimed_at=utcnow(),
                    attempts=InboundMail.attempts + 1,
                )
            )
            return sorted(chosen)

    def release(self, ids: Sequence[int]) -> None:
        """Put claimed rows back in the queue (transient trouble)."""
        if not ids:
            return
        with transaction(self.engine) as session:
            session.execute(
                update(InboundMail)
                .where(InboundMail.id.in_(list(ids)))  # type: ignore[union-attr]
                .where(InboundMail.status == MailStatus.processing)
                .values(status=MailStatus.queued, claimed_by=None, claimed_at=None)
            )

    def reclaim_stale(self, older_than: dt.timedelta) -> int:
        """Re-queue rows whose worker died while processing them."""
        cutoff = utcnow() - older_than
        with transaction(self.engine) as session:
            result = session.execute(
                update(InboundMail)
                .where(InboundMail.status == MailStatus.processing)
                .where(InboundMail.claimed_at < cutoff)  # type: ignore[operator]
                .values(status=MailStatus.queued, claimed_by=None, claimed_at=None)
            )
            return int(getattr(result, "rowcount", 0) or 0)

    def requeue(self, ids: Sequence[int]) -> list[int]:
        """Queue finished or quarantined mails again (``mail reprocess``);
        returns the ids that exist."""
        with transaction(self.engine) as session:
            found = [
                r[0]
                for r in session.execute(
                    select(InboundMail.id).where(InboundMail.id.in_(list(ids)))  # type: ignore[union-attr]
                )
            ]
            if found:
                session.execute(
                    update(InboundMail)
                    .where(InboundMail.id.in_(found))  # type: ignore[union-attr]
                    .values(status=MailStatus.queued, claimed_by=None, claimed_at=None, error=None)
                )
            return sorted(found)

    def depth(self) -> int:
        with Session(self.engine) as session:
            return int(
                session.execute(
                    select(func.count()).where(
                        InboundMail.status.in_([MailStatus.queued, MailStatus.processing])  # type: ignore[attr-defined]
                    )
                ).scalar_one()
            )

    def raw(self, session: Session, mail: InboundMail) -> bytes:
        return self.blobs.get(session, mail.raw_sha256)
