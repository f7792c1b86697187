"""Run the pipeline over spooled mail: claim rows, parse them (CPU-bound, so
in a process pool when there are many), then run the stages for each
message in its own transaction, in spool order, and record the
disposition. ``Ignore`` ends a message as ignored, ``Quarantine`` and any
unexpected exception shunt it to the quarantine with the reason (Mailman's
shunt queue), ``TemporaryFailure`` puts it back in the queue."""

from __future__ import annotations

import collections
import email.parser
import email.policy
import email.utils
import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from gateway.domain import (
    Disposition,
    Ignore,
    MailStatus,
    ParsedMail,
    PipelineSignal,
    Quarantine,
    TemporaryFailure,
    normalize_address,
    normalize_message_id,
)
from gateway.ingress.spool import Spool
from gateway.pipeline import apply, notify
from gateway.pipeline.fields import extract_fields
from gateway.pipeline.identify import identify
from gateway.pipeline.parse import parse_mail
from gateway.pipeline.screen import screen
from gateway.pipeline.thread import find_ticket
from gateway.pipeline.trust import authenticated_by
from gateway.settings import LimitsSettings, Settings
from gateway.store.blobs import DatabaseBlobStore, FileBlobStore
from gateway.store.db import transaction
from gateway.store.models import Account, InboundMail, OutboundMail, ProcessedKey, utcnow

log = logging.getLogger("gateway.pipeline")

POOL_THRESHOLD = 16  # fewer messages than this are parsed in-process
MAX_RETRIES = 3


@dataclass
class Parsed:
    """What the parse step hands to the database step."""

    mail: ParsedMail | None
    error: str | None
    dedup_key: str
    message_id: str | None
    from_addr: str | None
    subject: str | None


def dedup_key(raw: bytes, message_id: str | None, from_addr: str | None) -> str:
    """Same Message-ID, sender and content (the body after the header block;
    trace headers differ between two deliveries of the same message)."""
    split = raw.find(b"\r\n\r\n")
    split = raw.find(b"\n\n") if split < 0 else split
    body = raw[split:] if split >= 0 else b""
    h = hashlib.sha256()
    h.update((message_id or "").encode("utf-8", "replace") + b"\0")
    h.update((from_addr or "").encode("utf-8", "replace") + b"\0")
    h.update(body)
    return h.hexdigest()


def _header_peek(raw: bytes) -> tuple[str | None, str | None, str | None]:
    """Message-ID, From and Subject from the header block only, for the mail
    log of a message the full parser could not read."""
    try:
        head = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw[:65536])
        mid = head.get("Message-ID")
        frm = email.utils.parseaddr(str(head.get("From", "")))[1]
        subject = str(head.get("Subject", ""))[:998]
        return (normalize_message_id(str(mid)) if mid else None, normalize_address(frm) or None, subject)
    except Exception:  # noqa: BLE001 - a header we cannot read is no reason to fail
        return None, None, None


def parse_job(raw: bytes, limits: LimitsSettings) -> Parsed:
    """Parse one raw message; runs in a worker process. Never raises."""
    try:
        mail = parse_mail(raw, limits)
    except Quarantine as q:
        mid, frm, subject = _header_peek(raw)
        return Parsed(None, q.reason, dedup_key(raw, mid, frm), mid, frm, subject)
    except Exception as exc:  # noqa: BLE001 - any parser failure quarantines
        mid, frm, subject = _header_peek(raw)
        reason = f"parser error: {type(exc).__name__}"
        return Parsed(None, reason, dedup_key(raw, mid, frm), mid, frm, subject)
    return Parsed(
        mail, None, dedup_key(raw, mail.message_id, mail.from_addr), mail.message_id, mail.from_addr, mail.subject
    )


def _parse_job_star(args: tuple[bytes, LimitsSettings]) -> Parsed:
    return parse_job(*args)


@dataclass
class Job:
    """A claimed spool row with what the stages need from it."""

    id: int
    raw: bytes
    recipient: str | None
    envelope_from: str | None
    trusted: bool


class Runner:
    """Processes spooled mail; one per worker. Several runners (threads or
    processes) may share a database: claiming keeps them apart."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        blobs: FileBlobStore | DatabaseBlobStore,
        worker: str | None = None,
        pool: Executor | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.blobs = blobs
        self.spool = Spool(engine, blobs)
        self.worker = worker or f"{os.uname().nodename}:{os.getpid()}"
        self.pool = pool
        self.desk_addresses = settings.desk_addresses()

    # -- driving ----------------------------------------------------------
    def drain(
        self, on_done: Callable[[int, Disposition], None] | None = None, ids: list[int] | None = None
    ) -> collections.Counter[str]:
        """Process queued mail until none is left (or only ``ids``)."""
        counts: collections.Counter[str] = collections.Counter()
        batch = self.settings.workers.batch_size
        while True:
            claimed = self.spool.claim(self.worker, batch * 4, ids)
            if not claimed:
                return counts
            for mail_id, disposition in self.process(claimed):
                counts[disposition.status] += 1
                if on_done:
                    on_done(mail_id, disposition)

    def process(self, claimed: list[int]) -> Iterator[tuple[int, Disposition]]:
        """Parse (possibly in parallel) and apply claimed rows in order."""
        jobs = self._load(claimed)
        limits = self.settings.limits
        parsed: Iterable[Parsed]
        if self.pool is not None and len(jobs) >= POOL_THRESHOLD:
            parsed = self.pool.map(_parse_job_star, ((j.raw, limits) for j in jobs), chunksize=8)
        else:
            parsed = (parse_job(j.raw, limits) for j in jobs)
        done: list[int] = []
        try:
            for job, result in zip(jobs, parsed, strict=True):
                disposition = self._process_one(job, result)
                done.append(job.id)
                yield job.id, disposition
        finally:
            # Rows not reached (temporary failure, interrupted) go back.
            self.spool.release([i for i in claimed if i not in set(done)])

    def _load(self, ids: list[int]) -> list[Job]:
        with Session(self.engine) as session:
            rows = session.execute(
                select(InboundMail).where(InboundMail.id.in_(ids)).order_by(InboundMail.id)  # type: ignore[union-attr]
            ).scalars()
            return [
                Job(r.id, self.blobs.get(session, r.raw_sha256), r.recipient, r.envelope_from, r.trusted)  # type: ignore[arg-type]
                for r in rows
            ]

    # -- one message -----------------------------------------------------
    def _process_one(self, job: Job, parsed: Parsed) -> Disposition:
        for attempt in range(MAX_RETRIES):
            try:
                with transaction(self.engine) as session:
                    disposition = self._apply(session, job, parsed)
                    self._finish(session, job.id, parsed, disposition, None)
                self._log(job, parsed, disposition)
                return disposition
            except TemporaryFailure:
                raise
            except IntegrityError:
                # A concurrent worker created the same account / processed a
                # copy of this message: start over, the lookups now see it.
                if attempt == MAX_RETRIES - 1:
                    return self._quarantine(job, parsed, "conflicting concurrent update")
            except Quarantine as q:
                return self._quarantine(job, parsed, q.reason)
            except Exception as exc:  # noqa: BLE001 - shunt, keep the daemon running
                log.exception("spool=%s message_id=%s: pipeline error", job.id, parsed.message_id)
                return self._quarantine(job, parsed, f"internal error: {type(exc).__name__}")
        raise AssertionError("unreachable")

    def _apply(self, session: Session, job: Job, parsed: Parsed) -> Disposition:
        if parsed.mail is None:
            raise Quarantine(parsed.error or "unparseable")
        mail = parsed.mail
        try:
            return self._stages(session, job, mail, parsed.dedup_key)
        except Ignore as ig:
            return Disposition.ignored(ig.reason)

    def _stages(self, session: Session, job: Job, mail: ParsedMail, key: str) -> Disposition:
        settings = self.settings
        earlier = session.get(ProcessedKey, key)
        if earlier is not None and earlier.inbound_mail_id != job.id:
            raise Ignore(f"duplicate of mail {earlier.inbound_mail_id}")
        reason = screen(mail, desk_addresses=self.desk_addresses, envelope_from=job.envelope_from)
        if reason is not None:
            if reason == "bounce":
                self._record_bounce(session, mail)
            raise Ignore(reason)
        trusted = job.trusted or authenticated_by(mail, settings.security.trusted_authserv_id)
        sender = identify(session, mail, settings, trusted)
        match = find_ticket(session, mail, sender, settings.desk.ticket_prefix)
        if match.ticket is None:
            extracted = extract_fields(mail)
            applied = apply.create_ticket(
                session,
                settings,
                self.blobs,
                mail,
                sender,
                settings.request_type_for(job.recipient),
                extracted,
                job.id,
                linked_key=match.closed_predecessor.key if match.closed_predecessor else None,
            )
            notify.notify_created(session, settings, applied, sender.account, job.id)
            disposition = Disposition.created(applied.ticket.key, applied.ticket.id)  # type: ignore[arg-type]
        else:
            applied = apply.add_comment(session, settings, self.blobs, mail, sender, match.ticket, job.id)
            notify.notify_commented(session, settings, applied, sender.account, job.id)
            disposition = Disposition.commented(applied.ticket.key, applied.ticket.id)  # type: ignore[arg-type]
        if earlier is None:
            session.add(ProcessedKey(key=key, inbound_mail_id=job.id))
        return disposition

    def _record_bounce(self, session: Session, mail: ParsedMail) -> None:
        """A DSN marks the outbound mail and the failed addresses bounced."""
        report = mail.report
        if report is None:
            return
        now = utcnow()
        if report.original_message_id:
            session.execute(
                update(OutboundMail)
                .where(OutboundMail.message_id == report.original_message_id)  # type: ignore[arg-type]
                .values(status="bounced", last_error=f"bounced: {report.status or 'failed'}")
            )
        for address in report.failed_recipients:
            session.execute(
                update(Account)
                .where(Account.email == normalize_address(address))  # type: ignore[arg-type]
                .values(bounced_at=now)
            )

    # -- bookkeeping -----------------------------------------------------
    def _finish(
        self, session: Session, mail_id: int, parsed: Parsed, disposition: Disposition, error: str | None
    ) -> None:
        session.execute(
            update(InboundMail)
            .where(InboundMail.id == mail_id)  # type: ignore[arg-type]
            .values(
                status=disposition.status,
                disposition=disposition.text[:500],
                ticket_id=disposition.ticket_id,
                error=error,
                message_id=(parsed.message_id or None) and parsed.message_id[:998],  # type: ignore[index]
                from_addr=(parsed.from_addr or None) and parsed.from_addr[:320],  # type: ignore[index]
                subject=(parsed.subject or None) and parsed.subject[:998],  # type: ignore[index]
                processed_at=utcnow(),
                claimed_by=None,
            )
        )

    def _quarantine(self, job: Job, parsed: Parsed, reason: str) -> Disposition:
        disposition = Disposition.quarantined(reason)
        with transaction(self.engine) as session:
            self._finish(session, job.id, parsed, disposition, reason)
        self._log(job, parsed, disposition)
        return disposition

    def _log(self, job: Job, parsed: Parsed, disposition: Disposition) -> None:
        level = logging.WARNING if disposition.status == MailStatus.quarantined else logging.INFO
        log.log(level, "spool=%s message_id=%s: %s", job.id, parsed.message_id, disposition.text)


def make_pool(settings: Settings) -> ProcessPoolExecutor:
    n = settings.workers.parse_processes or os.cpu_count() or 1
    return ProcessPoolExecutor(max_workers=n)


__all__ = ["Runner", "make_pool", "parse_job", "dedup_key", "PipelineSignal"]
