"""``gateway serve``: the daemon. One asyncio loop runs the SMTP/LMTP
listener; pipeline workers process the spool continuously; a timer
re-queues rows whose worker died. SIGTERM/SIGINT stop accepting, let open
SMTP transactions finish, let the workers finish the message at hand, and
exit 0. Whatever is still queued is processed after the next start.

Pipeline workers are processes, not threads: the pipeline is CPU-bound
Python (parsing, ORM), and a busy thread would hold the GIL against the
loop and slow every SMTP reply (the listener's latency is what the
sending MTA sees). They run at a lower CPU priority for the same reason,
and ignore SIGINT/SIGTERM: the daemon tells them when to stop, so a Ctrl-C
or a ``systemctl stop`` never interrupts a message half-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlmodel import col

from gateway.domain import MailStatus, TemporaryFailure
from gateway.ingress.smtp import Listener, listener_config
from gateway.ingress.spool import Spool
from gateway.settings import Settings
from gateway.store.db import transaction
from gateway.store.models import InboundMail

if TYPE_CHECKING:
    from gateway.app import App
    from gateway.pipeline.runner import Runner

log = logging.getLogger("gateway.daemon")

RECLAIM_EVERY = 60.0  # seconds between sweeps for rows of dead workers
IDLE_POLL = 2.0  # seconds a worker sleeps when the spool looked empty
RETRY_PAUSE = 2.0  # after temporary trouble (database down)
SHUTDOWN_GRACE = 30.0  # seconds open SMTP transactions get to finish
BUSY_WINDOW = 0.2  # the listener committed this recently: it is busy
MAX_DEFER = 5.0  # ... but processing never waits longer than this per batch
WORKER_NICE = 5


# -- inside a worker process ------------------------------------------------

_runner: Runner | None = None  # one per worker process, built by _init_worker


def _init_worker(settings: Settings) -> None:
    """Worker process start: its own engine and Runner; ignore the signals
    the daemon handles for it; yield CPU to the listener."""
    global _runner
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICE)
    if not logging.getLogger().handlers:
        _configure_logging()
    from gateway.app import App

    _runner = App(settings).runner()


def _ready() -> bool:
    """A no-op task: returns once the worker process has started."""
    return _runner is not None


def _work(limit: int) -> int:
    """Claim up to ``limit`` queued rows and process them; returns how many
    were claimed (0: the queue looked empty)."""
    assert _runner is not None, "worker not initialised"
    claimed = _runner.spool.claim(_runner.worker, limit)
    for _ in _runner.process(claimed):
        pass
    return len(claimed)


# -- in the daemon --------------------------------------------------------


class Daemon:
    """Start and stop order of the daemon's parts."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.settings = app.settings
        self.spool = Spool(app.engine, app.blobs)
        self.stopping = asyncio.Event()
        self.kick = asyncio.Event()  # set by the committer: new mail in the spool
        self.ready = asyncio.Event()  # set once the listener is bound
        n = self.settings.workers.parse_processes or os.cpu_count() or 1
        self.n_workers = n
        # spawn: a forked child would inherit the loop's threads' locks.
        self.pool = ProcessPoolExecutor(
            max_workers=n,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.settings,),
        )
        self.listener = Listener(listener_config(self.settings), self.spool, on_commit=self._on_commit)

    def _on_commit(self, ids: list[int]) -> None:
        self.kick.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig)
        try:
            await asyncio.to_thread(self.app.ensure_schema)
            await asyncio.to_thread(reclaim_dead_local, self.app)
            # A full garbage collection walks every object with the GIL held,
            # whichever thread triggers it: with the startup heap (SQLAlchemy,
            # pydantic, ...) that stalls the loop for ~100 ms. Frozen objects
            # are never scanned again, so later collections stay short.
            # (Freezing is cheap; a gc.collect() first would itself stall.)
            gc.freeze()
            await self._start_workers()
            await self.listener.start()
            host, port = self.listener.address
            mode = "LMTP" if self.settings.smtp.lmtp else "SMTP"
            log.info("listening on %s:%s (%s)", host, port, mode)
            print(f"gateway: listening on {host}:{port}", file=sys.stderr, flush=True)
            self.ready.set()
            workers = [
                asyncio.create_task(self._worker_loop(i), name=f"worker-{i}") for i in range(self.n_workers)
            ]
            sweeper = asyncio.create_task(self._reclaim_loop(), name="reclaim")
            # --- IMAP pollers (gateway.jobs): a mailbox that is down retries
            # on its own and never delays the listener or the other mailboxes.
            from gateway import jobs

            scheduler = jobs.make_scheduler()
            scheduler.start()
            pollers = await jobs.start_imap(self.app, scheduler, on_commit=self._on_commit)
            # --- end IMAP
            await self.stopping.wait()
            # --- IMAP: stop fetching before the listener closes
            await jobs.stop_imap(pollers, scheduler)
            scheduler.shutdown(wait=False)
            # --- end IMAP
            log.info("stopping: no new connections, finishing open transactions")
            await self.listener.stop(SHUTDOWN_GRACE)
            self.kick.set()
            sweeper.cancel()
            await asyncio.gather(*workers, sweeper, return_exceptions=True)
            log.info("stopped")
            return 0
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await asyncio.to_thread(self.pool.shutdown, True, cancel_futures=True)

    async def _start_workers(self) -> None:
        """Start the worker processes before listening: spawning them imports
        the whole pipeline, a CPU burst that should not meet the first
        clients (and "listening" should mean ready)."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self.pool, _ready) for _ in range(self.n_workers)))

    def request_stop(self, sig: signal.Signals | None = None) -> None:
        if not self.stopping.is_set():
            log.info("received %s", sig.name if sig else "stop request")
            self.stopping.set()
            self.kick.set()

    async def _worker_loop(self, index: int) -> None:
        """Keep one worker process busy while there is mail; between
        batches, sleep until the committer kicks or IDLE_POLL passes (mail
        may also arrive through another daemon or ``gateway ingest``)."""
        loop = asyncio.get_running_loop()
        batch = self.settings.workers.batch_size
        while not self.stopping.is_set():
            await self._ingress_first()
            self.kick.clear()
            try:
                claimed = await loop.run_in_executor(self.pool, _work, batch)
            except TemporaryFailure as exc:
                log.warning("worker %s: temporary failure: %s", index, exc)
                await self._sleep(RETRY_PAUSE)
                continue
            except Exception:
                # A bug outside a message's own processing (which the Runner
                # quarantines): keep the daemon alive, try again shortly.
                log.exception("worker %s: error", index)
                await self._sleep(RETRY_PAUSE)
                continue
            if claimed == 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.kick.wait(), IDLE_POLL)

    async def _ingress_first(self) -> None:
        """Accepting comes first: the sending MTA waits for our reply, the
        pipeline can catch up later. While mail is pouring in, a worker
        defers its next batch (up to MAX_DEFER, so a steady stream never
        starves processing); on SQLite this also keeps the workers' write
        transactions from queueing the committer behind the busy lock."""
        loop = asyncio.get_running_loop()
        committer = self.listener.committer
        deadline = loop.time() + MAX_DEFER
        while (
            not self.stopping.is_set()
            and loop.time() - committer.last_commit < BUSY_WINDOW
            and loop.time() < deadline
        ):
            await asyncio.sleep(BUSY_WINDOW / 2)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def _reclaim_loop(self) -> None:
        age = dt.timedelta(seconds=self.settings.workers.claim_timeout_seconds)
        while True:
            await asyncio.sleep(RECLAIM_EVERY)
            try:
                n = await asyncio.to_thread(self.spool.reclaim_stale, age)
                n += await asyncio.to_thread(reclaim_dead_local, self.app)
            except TemporaryFailure as exc:
                log.warning("reclaim: temporary failure: %s", exc)
                continue
            if n:
                log.warning("re-queued %s messages of workers that stopped", n)
                self.kick.set()


def reclaim_dead_local(app: App) -> int:
    """Re-queue rows claimed by a worker process of this host that no longer
    exists (the daemon was killed). Runner names workers ``host:pid``; rows
    of other hosts wait for ``claim_timeout_seconds`` (reclaim_stale)."""
    node = os.uname().nodename
    with transaction(app.engine) as session:
        owners = {
            r[0]
            for r in session.execute(
                select(col(InboundMail.claimed_by))
                .where(col(InboundMail.status) == MailStatus.processing)
                .distinct()
            )
            if r[0]
        }
        dead = [o for o in owners if _is_dead_local(o, node)]
        if not dead:
            return 0
        result = session.execute(
            update(InboundMail)
            .where(col(InboundMail.status) == MailStatus.processing)
            .where(col(InboundMail.claimed_by).in_(dead))
            .values(status=MailStatus.queued, claimed_by=None, claimed_at=None)
        )
        return int(getattr(result, "rowcount", 0) or 0)


def _is_dead_local(owner: str, node: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != node or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # exists, owned by someone else
    return False


def _configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("GATEWAY_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aiosmtpd logs every command at INFO: far too chatty (and slow) for a daemon.
    logging.getLogger("mail.log").setLevel(logging.WARNING)


async def run(app: App) -> int:
    """Run the daemon in the current loop until a stop signal; exit code."""
    return await Daemon(app).run()


def serve(app: App) -> int:
    """``gateway serve``: run the daemon; returns the exit code."""
    if not logging.getLogger().handlers:
        _configure_logging()
    return asyncio.run(run(app))
