"""Run the pipeline over spooled mail: claim rows, parse them (CPU-bound, so
in a process pool when there are many: ``parsing``), then run the stages
(``stages``) for each message in spool order, a batch per transaction, and
record the disposition (mail answering mail another worker has not finished goes
last, after that worker: ``Runner._answering``). ``Ignore`` ends
a message as ignored, ``Quarantine`` and any unexpected exception shunt it
to the quarantine with the reason (Mailman's shunt queue),
``TemporaryFailure`` puts it back in the queue."""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from gateway.desk.operations import Desk
from gateway.domain import Disposition, MailStatus, Quarantine, TemporaryFailure
from gateway.pipeline.identify import create_accounts_ahead, new_sender
from gateway.pipeline.parsing import Parsed, parse_job, parse_job_star
from gateway.pipeline.screen import is_spam, screen
from gateway.pipeline.stages import Stages
from gateway.pipeline.thread import candidate_ids
from gateway.settings import LimitsSettings, Settings
from gateway.store import numbering, repo
from gateway.store.db import connection, is_conflict, is_transient, read_connection, temporary_failures
from gateway.store.models import as_utc
from gateway.store.spool import Job, Spool

log = logging.getLogger("gateway.pipeline")

POOL_THRESHOLD = 16  # fewer messages than this are parsed in-process
MAX_RETRIES = 3
ANCESTOR_WAIT = 10.0  # seconds a batch waits for the mail it answers (see _wait_for_ancestors)
CONFLICT_RETRIES = 10  # deadlocked batches tried again (with jitter) before giving up


class _SlowPath(Exception):
    """A message of an optimistic batch failed: redo it with savepoints."""


# A processed message: its job, what parsing gave, its outcome, its error.
_Result = tuple[Job, Parsed, Disposition, "str | None"]


class Runner:
    """Processes spooled mail; one per worker. Several runners (threads or
    processes) may share a database: claiming keeps them apart."""

    def __init__(
        self,
        settings: Settings,
        spool: Spool,
        worker: str | None = None,
        pool: Executor | None = None,
        pool_factory: Callable[[], Executor] | None = None,
    ) -> None:
        self.settings = settings
        self.spool = spool
        self.engine = spool.engine
        self.blobs = spool.blobs
        self.worker = worker or f"{os.uname().nodename}:{os.getpid()}"
        # Called with each message's seconds from spool to result (the
        # daemon's latency histogram); None: nobody measures.
        self.on_latency: Callable[[float], None] | None = None
        self.pool = pool
        self.pool_factory = pool_factory  # makes a pool the first time one pays off
        self.stages = Stages.configured(settings, Desk(settings, self.blobs))
        self.accounts_ahead = self.engine.dialect.name == "postgresql"  # see _create_accounts_ahead

    # -- driving ----------------------------------------------------------
    def drain(
        self, on_done: Callable[[int, Disposition], None] | None = None, ids: list[int] | None = None
    ) -> collections.Counter[str]:
        """Process queued mail until none is left (or only ``ids``)."""
        counts: collections.Counter[str] = collections.Counter()
        while True:
            claimed = self.spool.claim(self.worker, self.settings.workers.claim_size, ids)
            if not claimed:
                return counts
            # Only ``ids`` (``mail reprocess``): mail they answer that waits in
            # the queue is never claimed here, so nothing goes back to wait for it.
            for mail_id, disposition in self.process(claimed, requeue_answers=ids is None):
                counts[disposition.status] += 1
                if on_done:
                    on_done(mail_id, disposition)

    def process(self, claimed: list[int], requeue_answers: bool = True) -> Iterator[tuple[int, Disposition]]:
        """Parse (possibly in parallel) and apply claimed rows in order.
        ``requeue_answers``: mail answering mail that waits in the queue goes
        back there (see ``_answering``)."""
        jobs = self.spool.load(claimed)
        limits = self.settings.limits
        parsed: Iterable[Parsed]
        if self.pool is None and self.pool_factory is not None and len(jobs) >= POOL_THRESHOLD:
            self.pool = self.pool_factory()
        if self.pool is not None and len(jobs) >= POOL_THRESHOLD:
            parsed = self.pool.map(parse_job_star, ((self._raw_ref(j), limits) for j in jobs), chunksize=16)
        else:
            parsed = (self._parse_here(j, limits) for j in jobs)
        done: set[int] = set()
        pairs = zip(jobs, parsed, strict=True)
        size = self.settings.workers.batch_size
        try:
            while chunk := list(itertools.islice(pairs, size)):
                for mail_id, disposition in self._batch(chunk, requeue_answers):
                    done.add(mail_id)
                    yield mail_id, disposition
        finally:
            # Rows not reached (temporary failure, interrupted) go back.
            self.spool.release([i for i in claimed if i not in done])

    def _raw_ref(self, job: Job) -> bytes | str:
        if job.raw_inline is not None:
            return job.raw_inline
        path = self.blobs.file_path(job.raw_sha256)
        if path is not None:
            return path
        with read_connection(self.engine) as conn:
            return self.blobs.get(conn, job.raw_sha256)

    def _parse_here(self, job: Job, limits: LimitsSettings) -> Parsed:
        if job.raw_inline is not None:
            return parse_job(job.raw_inline, limits)
        with read_connection(self.engine) as conn:
            return parse_job(self.blobs.get(conn, job.raw_sha256), limits)

    # -- one batch, one message ------------------------------------------
    def _batch(
        self, chunk: list[tuple[Job, Parsed]], requeue_answers: bool = True
    ) -> list[tuple[int, Disposition]]:
        """Process a chunk of claimed mail. Mail that answers mail another
        worker is still processing goes in a second transaction, after the
        rest and after a wait for that worker; mail answering mail that is
        back in the queue goes back there too (``_answering``)."""
        self._store_inline_raw(chunk)
        processing, queued = self._unfinished_ancestors(chunk)
        behind = self._answering(chunk, queued) if requeue_answers else set()
        if behind:
            # Not done: ``process`` gives them back to the queue, where the
            # mail they answer comes first (claims take the oldest first).
            log.info("spool rows %s answer mail still queued (%s): back to the queue after it",
                     sorted(behind)[:10], sorted(queued.values())[:10])
            chunk = [c for c in chunk if c[0].id not in behind]
        later = self._answering(chunk, processing)
        out = self._commit([c for c in chunk if c[0].id not in later])
        rest = [c for c in chunk if c[0].id in later]
        if rest:
            self._wait_for_ancestors(rest)
            # The worker it waited for may have died: its mail is back in the queue.
            back = self._answering(rest, self._unfinished_ancestors(rest)[1]) if requeue_answers else set()
            out += self._commit([c for c in rest if c[0].id not in back])
        return out

    def _commit(self, chunk: list[tuple[Job, Parsed]]) -> list[tuple[int, Disposition]]:
        """Group commit: one transaction (one fsync) for the batch.

        Optimistic first: no savepoints, since almost every message goes
        through (savepoints cost two statements a message, ~15% of the work).
        If any message fails, that attempt is rolled back whole and the batch
        runs again with a savepoint per message, so one message's failure
        undoes only its own effect. Attachment files are synced together
        before the commit."""
        if not chunk:
            return []
        if self.accounts_ahead:
            self._create_accounts_ahead(chunk)
        careful = False
        for attempt in itertools.count(1):
            try:
                out = self._transaction(chunk, careful=careful)
                break
            except _SlowPath:
                careful = True
            except TemporaryFailure as exc:
                # Two PostgreSQL workers can deadlock on the rows they both
                # touch (ticket counter, a new account): the database kills
                # one transaction; do that batch again, carefully.
                if not is_conflict(exc.__cause__) or attempt >= CONFLICT_RETRIES:
                    raise
                careful = True
                time.sleep(random.uniform(0.01, 0.05) * attempt)
        for (job, parsed), (_, disposition) in zip(chunk, out, strict=True):
            self._log(job, parsed, disposition)
        return out

    def _store_inline_raw(self, chunk: list[tuple[Job, Parsed]]) -> None:
        """Write the batch's inline raw bytes to the blob files (synced
        together) before the transaction, which then only finds them there:
        the database write lock is not held while files are created."""
        if not self.blobs.holds_files:
            return
        with temporary_failures(), self.blobs.group():
            for job, _ in chunk:
                if job.raw_inline is not None:
                    self.blobs.put(None, job.raw_inline)

    def _answering(self, chunk: list[tuple[Job, Parsed]], held: dict[str, int]) -> set[int]:
        """Spool ids of the batch's mail that answers mail in ``held``
        (``{Message-ID: spool id}``, lower spool ids than the answer) and,
        transitively, mail of this batch answering such mail.

        Two uses: mail answering mail another worker is processing goes in
        a second transaction, after a wait for that worker
        (``_wait_for_ancestors``); mail answering mail that still waits in
        the queue goes back to the queue. The second happens only when mail
        was given back to the queue after this batch was claimed (claims
        take the oldest first): a dead instance's or worker's rows, while
        the replies to them were already claimed elsewhere. Processed now,
        a reply would not see the ticket its mail is about to create."""
        if not held:
            return set()
        found: set[int] = set()
        held = dict(held)
        for job, parsed in chunk:  # in spool order
            if parsed.mail is None:
                continue
            if any(held.get(mid, job.id) < job.id for mid in candidate_ids(parsed.mail)):
                found.add(job.id)
                if parsed.message_id:
                    held.setdefault(parsed.message_id, job.id)
        return found

    def _unfinished_ancestors(self, chunk: list[tuple[Job, Parsed]]) -> tuple[dict[str, int], dict[str, int]]:
        """Message-IDs this batch's mail answers whose mail, not in this
        batch, has a lower spool id and is not processed yet: being
        processed by another worker, and waiting in the queue; each
        ``{Message-ID: spool id}``. One query for both."""
        own = {job.id for job, _ in chunk}
        latest: dict[str, int] = {}  # referenced Message-ID -> highest spool id referring to it
        for job, parsed in chunk:
            if parsed.mail is not None:
                for mid in candidate_ids(parsed.mail):
                    latest[mid] = max(latest.get(mid, 0), job.id)
        if not latest:
            return {}, {}
        with read_connection(self.engine) as conn:
            rows = repo.in_flight(conn, list(latest))
        processing: dict[str, int] = {}
        queued: dict[str, int] = {}
        for i, mid, status in rows:
            if i not in own and i < latest[mid]:
                (queued if status == str(MailStatus.queued) else processing)[mid] = i
        return processing, queued

    def _wait_for_ancestors(self, chunk: list[tuple[Job, Parsed]]) -> None:
        """Wait (outside any transaction) while another worker is still
        processing a message that this mail answers.

        Why: with several workers, a reply can be claimed by one worker
        while the mail it answers sits in another worker's open batch. It
        would not see that ticket and would become a ticket of its own
        (measured: 48 of the corpus's 750 replies on PostgreSQL, 34 on
        SQLite, with two workers draining a backlog). Only rows with a
        lower spool id are waited for, so two workers never wait for each
        other in a circle. The wait is bounded by ``ANCESTOR_WAIT``: a
        worker that died holding a row must not stall the others."""
        deadline = time.monotonic() + ANCESTOR_WAIT
        while busy := self._unfinished_ancestors(chunk)[0]:
            if time.monotonic() > deadline:
                rows = sorted(busy.values())[:10]
                log.warning("still in flight after %ss, going on: spool rows %s", ANCESTOR_WAIT, rows)
                return
            time.sleep(0.02)

    def _create_accounts_ahead(self, chunk: list[tuple[Job, Parsed]]) -> None:
        """PostgreSQL: create the batch's new senders' accounts in a short
        transaction of their own before the batch.

        Why: in the batch transaction, a new account's row stays uncommitted
        until the whole batch commits, and another worker whose batch has
        mail from the same new sender waits for it (a unique-key wait:
        sampled, 409 of 440 waits with two workers), then fails and redoes
        its batch the slow way. Same rules as ``identify``: only mail that
        passes the screen (robots never create accounts) and only under the
        ``create`` policy. If the batch then fails, the account stays, an
        ``unverified`` account known from mail, as it would be after a retry.
        SQLite has a single writer, so there is nothing to win there and the
        extra commit (an fsync) would only cost."""
        senders: dict[str, tuple[str, str, str]] = {}
        for job, parsed in chunk:
            mail = parsed.mail
            if mail is None:
                continue
            if is_spam(mail) or screen(
                mail, desk_addresses=self.stages.desk_addresses, envelope_from=job.envelope_from
            ) is not None:
                continue
            sender = new_sender(mail, self.settings)
            if sender is not None:
                senders.setdefault(sender[0], sender)
        if senders:
            with connection(self.engine) as conn:
                create_accounts_ahead(conn, list(senders.values()), self.settings)

    def _transaction(self, chunk: list[tuple[Job, Parsed]], careful: bool) -> list[tuple[int, Disposition]]:
        """One attempt of ``_commit``: the whole chunk in one transaction."""
        results: list[_Result] = []
        with connection(self.engine) as conn, self.blobs.group():
            for job, parsed in chunk:
                disposition, error = self._message(conn, job, parsed, careful)
                results.append((job, parsed, disposition, error))
            # New tickets get their numbers last: the counter row's lock is
            # then held for the commit only (see store/numbering.py).
            numbering.number_pending(conn, self.stages.ticket_prefix)
            results = self._with_real_keys(conn, results)
            self._finish(conn, results)
        return [(job.id, disposition) for job, _, disposition, _ in results]

    def _message(
        self, conn: Connection, job: Job, parsed: Parsed, careful: bool
    ) -> tuple[Disposition, str | None]:
        """One message through the stages; its disposition and error.
        ``careful``: under a savepoint, so that its failure undoes only its
        own effect and ends it in the quarantine (the shunt). Otherwise any
        failure raises ``_SlowPath``: the batch is redone carefully."""
        if not careful:
            if parsed.mail is None:
                return _quarantined(parsed.error or "unparseable")
            try:
                return self.stages.run(conn, job, parsed), None
            except Exception as exc:
                if is_transient(exc):
                    raise
                raise _SlowPath from exc
        for attempt in range(MAX_RETRIES):
            savepoint = conn.begin_nested()
            try:
                disposition = self.stages.run(conn, job, parsed)
                savepoint.commit()
                return disposition, None
            except IntegrityError:
                # A concurrent worker created the same account / processed a
                # copy of this message: start over, the lookups now see it.
                savepoint.rollback()
                if attempt == MAX_RETRIES - 1:
                    return _quarantined("conflicting concurrent update")
            except Quarantine as q:
                savepoint.rollback()
                return _quarantined(q.reason)
            except Exception as exc:
                savepoint.rollback()
                if is_transient(exc):
                    raise
                log.exception(
                    "spool=%s message_id=%s: pipeline error", job.id, parsed.message_id,
                    extra={"spool": job.id, "message_id": parsed.message_id},
                )
                return _quarantined(f"internal error: {type(exc).__name__}")
        raise AssertionError("unreachable")

    # -- bookkeeping -----------------------------------------------------
    @staticmethod
    def _with_real_keys(conn: Connection, results: list[_Result]) -> list[_Result]:
        """Dispositions that name a new ticket by its placeholder key, with
        its real one (read back: tickets may have been numbered early, see
        thread._candidates)."""
        stale = {
            d.ticket_id
            for _, _, d, _ in results
            if d.ticket_id is not None and d.key and numbering.is_placeholder_key(d.key)
        }
        if not stale:
            return results
        keys = numbering.ticket_keys(conn, stale)
        return [
            (j, p, d.with_key(keys[d.ticket_id]) if d.ticket_id in keys else d, e) for j, p, d, e in results
        ]

    def _finish(self, conn: Connection, results: list[_Result]) -> None:
        """Record each message's result in its spool row, all in one
        statement."""
        rows = []
        for job, parsed, disposition, error in results:
            if job.raw_inline is not None:
                # Out of the spool row into the blob store, in this
                # transaction (a file is synced with the batch's
                # blobs.group() before the commit): a processed mail's bytes
                # live where every reader (reprocess, ``mail show --raw``,
                # backups) looks for them.
                self.blobs.put(conn, job.raw_inline)
            rows.append({
                "b_id": job.id,
                "raw_inline": None,
                "status": str(disposition.status),
                "disposition": disposition.text[:500],
                "ticket_id": disposition.ticket_id,
                "error": error,
                "message_id": parsed.message_id[:998] if parsed.message_id else None,
                "from_addr": parsed.from_addr[:320] if parsed.from_addr else None,
                "subject": parsed.subject[:998] if parsed.subject else None,
            })
        repo.finish_mails(conn, rows)

    def _log(self, job: Job, parsed: Parsed, disposition: Disposition) -> None:
        # -- ops: structured fields for JSON logs, latency for the metrics --
        latency = (
            round((dt.datetime.now(dt.UTC) - as_utc(job.received_at)).total_seconds(), 3)
            if job.received_at is not None
            else None
        )
        if latency is not None and self.on_latency is not None:
            self.on_latency(latency)
        level = logging.WARNING if disposition.status == MailStatus.quarantined else logging.INFO
        extra = {"spool": job.id, "message_id": parsed.message_id, "status": str(disposition.status),
                 "latency_seconds": latency}
        log.log(level, "spool=%s message_id=%s: %s", job.id, parsed.message_id, disposition.text, extra=extra)
        # -- end ops --


def _quarantined(reason: str) -> tuple[Disposition, str]:
    return Disposition.quarantined(reason), reason


def make_pool(settings: Settings) -> ProcessPoolExecutor:
    n = settings.workers.parse_processes or os.cpu_count() or 1
    return ProcessPoolExecutor(max_workers=n)

