"""``gateway serve``: the daemon. One asyncio loop runs the SMTP/LMTP
listener; pipeline workers process the spool continuously; a timer
re-queues rows whose worker died. SIGTERM/SIGINT stop accepting, let open
SMTP transactions finish, let the workers finish the message at hand, and
exit 0. Whatever is still queued is processed after the next start.
SIGHUP re-reads the configuration (routing, desk addresses, logging) without
dropping connections or queued work. Under systemd the daemon reports
READY/WATCHDOG/STATUS/STOPPING (``sdnotify``) and serves Prometheus
metrics (``metrics``).

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
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

# Imported here, not where they are used: an import inside the running
# loop blocks it for tens of milliseconds (jinja2, aiosmtplib, apscheduler).
from gateway import jobs, logging_setup
from gateway.children import die_with, gone_here
from gateway.domain import TemporaryFailure
from gateway.exits import CommandError
from gateway.ingress.smtp import Listener, listener_config
from gateway.instance import Instance
from gateway.metrics import Metrics
from gateway.outbound.sender import run_sender
from gateway.sdnotify import Notifier
from gateway.settings import Settings, load_settings
from gateway.store import read
from gateway.store.db import reading
from gateway.store.spool import Spool

if TYPE_CHECKING:
    from gateway import retention
    from gateway.pipeline.runner import Runner
    from gateway.services import Services
    from gateway.web.server import WebProcesses

log = logging.getLogger("gateway.daemon")

METRICS_LEASE = "metrics:database"  # the instance that exports the database's gauges
RECLAIM_EVERY = 60.0  # seconds between sweeps for rows of dead workers
IDLE_POLL = 2.0  # seconds a worker sleeps when the spool looked empty
RETRY_PAUSE = 2.0  # after temporary trouble (database down)
SHUTDOWN_GRACE = 30.0  # seconds open SMTP transactions get to finish
BUSY_WINDOW = 0.2  # the listener committed this recently: it is busy
MAX_DEFER = 5.0  # ... but processing never waits longer than this per batch
WORKER_NICE = 5
STATUS_EVERY = 30.0  # seconds between STATUS= lines to systemd
# Sections a SIGHUP cannot change in a running daemon: sockets, engines and
# worker processes are built from them once. Changes are logged, not applied.
RESTART_ONLY = ("database", "storage", "smtp", "imap", "workers", "metrics")


# -- inside a worker process ------------------------------------------------

_runner: Runner | None = None  # one per worker process, built by _init_worker
_generation = 0  # the daemon's configuration generation this worker runs with (SIGHUP)
_latencies: list[float] = []  # measured since the last batch result


def _init_worker(
    settings: Settings,
    make_runner: Callable[[Settings], Runner],
    daemon_pid: int | None = None,
    instance: str | None = None,
) -> None:
    """Worker process start: its own engine and Runner; ignore the signals
    the daemon handles for it; yield CPU to the listener; die with the
    daemon."""
    global _runner
    if daemon_pid is not None:
        die_with(daemon_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # reloads arrive with the next batch
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICE)
    if not logging_setup.is_configured_elsewhere():
        logging_setup.configure(settings.logging)
    _runner = make_runner(settings)
    if instance:
        # Its claims carry the instance's name: another instance gives them
        # back once this one's heartbeat stops (``_reclaim_loop``).
        _runner.worker = f"{instance}/{_runner.worker}"
    _runner.on_latency = _latencies.append


def _use_settings(generation: int, settings: Settings) -> None:
    """A reloaded configuration (SIGHUP) for the batches from now on: a new
    Runner on the same engine and blob store (database and storage need a
    restart anyway), and the new logging level and format."""
    global _runner, _generation
    from gateway.pipeline.runner import Runner

    assert _runner is not None, "worker not initialised"
    _runner = Runner(settings, _runner.spool, worker=_runner.worker)
    _runner.on_latency = _latencies.append
    _generation = generation
    if not logging_setup.is_configured_elsewhere():
        logging_setup.configure(settings.logging)


def _ready() -> bool:
    """A no-op task: returns once the worker process has started."""
    return _runner is not None


def _work(limit: int, generation: int = 0, settings: Settings | None = None) -> tuple[int, list[float]]:
    """Claim up to ``limit`` queued rows and process them; returns how many
    were claimed (0: the queue looked empty) and each processed message's
    latency in seconds (for the daemon's histogram). ``settings`` comes
    along once the daemon has reloaded its configuration."""
    if settings is not None and generation != _generation:
        _use_settings(generation, settings)
    assert _runner is not None, "worker not initialised"
    claimed = _runner.spool.claim(_runner.worker, limit)
    try:
        for _ in _runner.process(claimed):
            pass
    finally:
        latencies = _latencies[:]
        _latencies.clear()
    return len(claimed), latencies


# -- in the daemon --------------------------------------------------------


class Daemon:
    """Start and stop order of the daemon's parts."""

    def __init__(self, app: Services, config_path: str | None = None) -> None:
        self.app = app
        self.settings = app.settings
        # --- ops: systemd notifications, metrics, SIGHUP reload
        self.config_path = config_path  # None: $GATEWAY_CONFIG, as at start
        self.notifier = Notifier()
        self.metrics = Metrics(app.engine, exporter=lambda: self.instance.try_lease(METRICS_LEASE))
        self.generation = 0  # bumped by every applied reload
        self._reload_lock = asyncio.Lock()
        self._ops_tasks: set[asyncio.Task[Any]] = set()
        # --- end ops
        self.spool = app.spool
        self.web: WebProcesses | None = None  # the portal's processes, once started
        self.stopping = asyncio.Event()
        self.kick = asyncio.Event()  # set by the committer: new mail in the spool
        self.ready = asyncio.Event()  # set once the listener is bound
        self.instance = Instance(self.settings, app.engine)  # among others on one database
        n = self.settings.workers.parse_processes or os.cpu_count() or 1
        self.n_workers = n
        # spawn: a forked child would inherit the loop's threads' locks.
        self.pool = ProcessPoolExecutor(
            max_workers=n,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.settings, app.runner_factory, os.getpid(), self.instance.name),
        )
        self.listener = Listener(
            listener_config(self.settings), self.spool, on_commit=self._on_commit,
            on_result=self.metrics.count_smtp,
        )

    def _on_commit(self, ids: list[int]) -> None:
        self.kick.set()

    async def run(self, owns_process: bool = False) -> int:
        """Serve until a stop signal; the exit code. ``owns_process``: this
        daemon is the whole process (``gateway serve``), so once stopping
        its signals stay ignored until exit; embedded (tests), the previous
        handlers are restored instead."""
        loop = asyncio.get_running_loop()
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)  # ops
        self._start_watchdog()  # ops: pings during startup too (migrations may take a while)
        try:
            await asyncio.to_thread(self.app.ensure_schema)
            # Registered before anything takes work: a name clash with a
            # running instance stops this one here.
            await self.instance.start()
            await asyncio.to_thread(reclaim_dead_local, self.spool)
            # A full garbage collection walks every object with the GIL held,
            # whichever thread triggers it: with the startup heap (SQLAlchemy,
            # pydantic, ...) that stalls the loop for ~100 ms. Frozen objects
            # are never scanned again, so later collections stay short.
            # (Freezing is cheap; a gc.collect() first would itself stall.)
            gc.freeze()
            await self._start_workers()
            try:
                await self.listener.start()
            except OSError as exc:
                # The one failure an operator meets here (a second daemon, a
                # port below 1024, an address not on this host): say which.
                raise CommandError(
                    f"cannot listen on {self.settings.smtp.listen}: "
                    f"{os.strerror(exc.errno) if exc.errno else exc}"
                    " ([smtp] listen)"
                ) from None
            host, port = self.listener.address
            mode = "LMTP" if self.settings.smtp.lmtp else "SMTP"
            log.info("listening on %s:%s (%s)", host, port, mode)
            print(f"gateway: listening on {host}:{port}", file=sys.stderr, flush=True)
            web_watch = await self._start_web()  # --- the portal, in processes of its own
            self.ready.set()
            await self._ops_ready(f"{host}:{port}")  # ops: metrics, READY=1, STATUS=
            workers = [
                asyncio.create_task(self._worker_loop(i), name=f"worker-{i}") for i in range(self.n_workers)
            ]
            sweeper = asyncio.create_task(self._reclaim_loop(), name="reclaim")
            # --- IMAP pollers (gateway.jobs): a mailbox that is down retries
            # on its own and never delays the listener or the other mailboxes.
            scheduler = jobs.make_scheduler()
            scheduler.start()
            pollers = await jobs.start_imap(self.app, scheduler, on_commit=self._on_commit,
                                            instance=self.instance)
            jobs.start_housekeeping(self.app, scheduler)
            jobs.start_retention(self.app, scheduler, on_result=self._count_retention, instance=self.instance)
            # --- end IMAP
            # --- outbox sender: delivers what notify queued; ends between
            # two mails once stopping is set.
            sender = asyncio.create_task(
                run_sender(self.app, self.stopping, yield_to=self._ingress_first), name="outbox"
            )
            # --- end outbox
            await self.stopping.wait()
            # --- IMAP: stop fetching before the listener closes
            await jobs.stop_imap(pollers, scheduler)
            scheduler.shutdown(wait=False)
            # --- end IMAP
            self.notifier.send(STOPPING=1, STATUS="stopping: finishing open transactions")  # ops
            log.info("stopping: no new connections, finishing open transactions")
            await self.listener.stop(SHUTDOWN_GRACE)
            self.kick.set()
            sweeper.cancel()
            if web_watch is not None:
                web_watch.cancel()
            await asyncio.gather(*workers, sweeper, sender, return_exceptions=True)
            log.info("stopped")
            return 0
        finally:
            await self.instance.stop()  # its mailboxes' leases are free at once
            await self._ops_stop()  # ops
            if self.web is not None:
                await asyncio.to_thread(self.web.stop)
            await asyncio.to_thread(self.pool.shutdown, True, cancel_futures=True)
            # Stopping is under way and cannot be hurried: a second SIGTERM
            # (an impatient operator, a test harness, `pkill`) must not kill
            # the process with the default action while it finishes, and
            # removing the loop's handlers would restore exactly that default.
            # So the signals stay ignored until the process exits
            # (SIGKILL, e.g. systemd's TimeoutStopSec, still ends it).
            if owns_process:
                _ignore_signals(loop, list(previous))
            else:
                for sig, handler in previous.items():
                    loop.remove_signal_handler(sig)
                    signal.signal(sig, signal.SIG_DFL if handler is None else handler)

    async def _start_web(self) -> asyncio.Task[None] | None:
        """The portal's processes on ``[web] listen`` and a task that starts
        again the ones that die. A listen address that cannot be bound is
        an error in the log, not a reason to stop taking mail."""
        listen = self.settings.web.listen
        if not listen:
            return None
        from gateway.web.server import WebProcesses

        web = WebProcesses(self.settings)
        try:
            await asyncio.to_thread(web.start)
        except OSError as exc:
            log.error("web: cannot listen on %s: %s; the portal is not running", listen, exc.strerror or exc)
            return None
        self.web = web
        host, port = web.address
        log.info("web: listening on %s:%s (%s processes)", host, port, len(web.procs))
        print(f"gateway: web listening on {host}:{port}", file=sys.stderr, flush=True)

        async def watch() -> None:
            while True:
                await asyncio.sleep(1.0)
                web.check()

        return asyncio.create_task(watch(), name="web-watch")

    async def _start_workers(self) -> None:
        """Start the worker processes before listening: spawning them imports
        the whole pipeline, a CPU burst that should not meet the first
        clients (and "listening" should mean ready)."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self.pool, _ready) for _ in range(self.n_workers)))

    def request_stop(self, sig: signal.Signals | None = None) -> None:
        if self.stopping.is_set():
            log.info("received %s: already stopping", sig.name if sig else "stop request")
            return
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
                # ops: the settings travel along only after a reload.
                claimed, latencies = await loop.run_in_executor(
                    self.pool, _work, batch, self.generation, self.settings if self.generation else None
                )
                self.metrics.observe_latencies(latencies)
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

    # --- ops: systemd notify, watchdog, metrics, SIGHUP reload ---------------

    def _start_watchdog(self) -> None:
        interval = self.notifier.watchdog_interval()
        if interval is not None:
            self._ops_task(self._watchdog_loop(interval), "watchdog")

    async def _watchdog_loop(self, interval: float) -> None:
        """``WATCHDOG=1`` from the event loop itself: if the loop stalls (a
        blocking call, a deadlock), the pings stop and systemd restarts the
        service after ``WatchdogSec``."""
        while True:
            self.notifier.send(WATCHDOG=1)
            await asyncio.sleep(interval)

    async def _ops_ready(self, address: str) -> None:
        listen = self.settings.metrics.listen
        bound = await asyncio.to_thread(self.metrics.start, listen)
        if bound is not None:
            log.info("metrics on http://%s:%s/metrics", *bound)
        self.notifier.send(READY=1, STATUS=f"listening on {address}")
        if self.notifier.enabled:
            self._ops_task(self._status_loop(address), "sd-status")

    async def _status_loop(self, address: str) -> None:
        """A ``STATUS=`` line for ``systemctl status`` every STATUS_EVERY
        seconds: what is waiting, what went wrong."""
        while True:
            await asyncio.sleep(STATUS_EVERY)
            try:
                text = await asyncio.to_thread(self._status_text)
            except Exception as exc:  # noqa: BLE001 - a status line must not stop the daemon
                text = f"database unavailable ({type(exc).__name__})"
            self.notifier.send(STATUS=f"listening on {address}; {text}")

    def _status_text(self) -> str:
        with reading(self.app.engine) as session:
            st = read.status_json(session)
        spool, outbox = st["spool"], st["outbox"]
        oldest = spool["oldest_queued_age_seconds"]
        return (
            f"spool {spool['depth']}" + (f" (oldest {oldest:.0f}s)" if oldest is not None else "")
            + f", quarantined {st['quarantined']}"
            + f", outbox failed {outbox['failed']} retrying {outbox['retrying']}"
        )

    def _count_retention(self, result: retention.Result) -> None:
        # A run that left the database to another instance is not this one's last run.
        self.metrics.count_retention(result.removed(), None if result.skipped else time.time())

    async def _ops_stop(self) -> None:
        for task in self._ops_tasks:
            task.cancel()
        await asyncio.gather(*list(self._ops_tasks), return_exceptions=True)
        self._ops_tasks.clear()
        await asyncio.to_thread(self.metrics.stop)
        self.notifier.close()

    def request_reload(self) -> None:
        """SIGHUP: re-read the configuration in a task (the handler itself
        must not block)."""
        if not self.stopping.is_set():
            self._ops_task(self.reload(), "reload")

    def _ops_task(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._ops_tasks.add(task)
        task.add_done_callback(self._ops_tasks.discard)

    async def reload(self) -> bool:
        """Apply a re-read configuration without dropping connections or
        queued work: routing and desk addresses to the SMTP handler (open
        sessions included), all settings to the next worker batches,
        logging level and format at once. Templates need nothing: the
        renderer's jinja2 loader re-reads changed files by itself. An invalid
        file is rejected with one log line and the running configuration
        stays. Returns whether the new configuration was applied."""
        async with self._reload_lock:
            now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            self.notifier.send(RELOADING=1, MONOTONIC_USEC=now_usec)
            try:
                new = await asyncio.to_thread(load_settings, self.config_path)
                effective = self._apply(new)
            except Exception as exc:  # noqa: BLE001 - ConfigError, or anything else: keep running
                log.error("reload rejected, keeping the running configuration: %s", exc)
                self.notifier.send(READY=1, STATUS="reload rejected: invalid configuration")
                return False
            log.info(
                "reloaded configuration (generation %s): %s desk addresses",
                self.generation, len(effective.desk_addresses()),
            )
            self.notifier.send(READY=1, STATUS="configuration reloaded")
            self.kick.set()
            return True

    def _apply(self, new: Settings) -> Settings:
        old = self.settings
        fixed = [name for name in RESTART_ONLY if getattr(new, name) != getattr(old, name)]
        if fixed:
            names = ", ".join(f"[{n}]" for n in fixed)
            log.warning("reload: changes to %s need a restart; not applied", names)
        effective = new.model_copy(update={name: getattr(old, name) for name in RESTART_ONLY})
        # Build everything first, then switch: a failure leaves all as it was.
        config = listener_config(effective)
        if not logging_setup.is_configured_elsewhere():
            logging_setup.configure(effective.logging)
        self.listener.reload(config)
        self.settings = effective
        self.app.settings = effective  # the outbox sender and jobs read it from the app
        self.generation += 1
        return effective

    # --- end ops -----------------------------------------------------------

    async def _reclaim_loop(self) -> None:
        """Give back the spool rows of workers that died: this host's dead
        worker processes, instances whose heartbeat stopped (any host; their
        rows come back within ``[instance] lease_seconds`` and a third), and
        claims no live instance names that are older than
        ``claim_timeout_seconds``."""
        age = dt.timedelta(seconds=self.settings.workers.claim_timeout_seconds)
        alive_for = self.instance.lease_for
        while True:
            await asyncio.sleep(min(RECLAIM_EVERY, self.instance.every))
            try:
                n = await asyncio.to_thread(reclaim_dead_local, self.spool)
                of_dead, dead = await asyncio.to_thread(self.spool.reclaim_of_dead_instances, alive_for)
                n += of_dead
                n += await asyncio.to_thread(self.spool.reclaim_stale, age, alive_for)
            except TemporaryFailure as exc:
                log.warning("reclaim: temporary failure: %s", exc)
                continue
            for name in dead:
                log.warning("instance %s: no heartbeat for %ss; its work is taken over", name,
                            int(alive_for.total_seconds()))
            if n:
                log.warning("re-queued %s messages of workers that stopped", n)
                self.kick.set()


def reclaim_dead_local(spool: Spool) -> int:
    """Re-queue rows claimed by a worker process of this host that no longer
    exists (the daemon was killed). Runner names workers ``host:pid``; rows
    of other hosts wait for ``claim_timeout_seconds`` (reclaim_stale)."""
    node = os.uname().nodename
    return spool.reclaim_dead(lambda owner: _is_dead_local(owner, node))


def _is_dead_local(owner: str, node: str) -> bool:
    # "<instance>/<host>:<pid>" (a daemon's worker) or "<host>:<pid>" (ingest)
    host, _, pid = owner.rpartition("/")[2].rpartition(":")
    return pid.isdigit() and gone_here(host, int(pid), node=node)


def _ignore_signals(loop: asyncio.AbstractEventLoop, sigs: list[signal.Signals]) -> None:
    """Switch ``sigs`` from the loop's handlers straight to SIG_IGN.

    ``loop.remove_signal_handler`` would pass through SIG_DFL, and a SIGTERM
    landing in that moment kills the process (a test sending SIGTERM every
    2 ms caught it; the main thread can lose the GIL between two
    statements, so the moment is not that short). So: SIG_IGN first, then
    forget the loop's handlers so that ``loop.close()`` does not restore
    SIG_DFL either. ``_signal_handlers`` is asyncio's private table
    (UnixSelectorEventLoop); without it, loop.close() resets the signals
    at the very end, which is only the narrow old window again."""
    for sig in sigs:
        signal.signal(sig, signal.SIG_IGN)
    table = getattr(loop, "_signal_handlers", None)
    if isinstance(table, dict):
        for sig in sigs:
            table.pop(sig, None)
        if not table:
            signal.set_wakeup_fd(-1)


async def run(app: Services, config_path: str | None = None) -> int:
    """Run the daemon in the current loop until a stop signal; exit code."""
    return await Daemon(app, config_path).run(owns_process=True)


def serve(app: Services, config_path: str | None = None) -> int:
    """``gateway serve``: run the daemon; returns the exit code.
    ``config_path`` is the file SIGHUP re-reads (None: $GATEWAY_CONFIG)."""
    if not logging_setup.is_configured_elsewhere():
        logging_setup.configure(app.settings.logging)
    return asyncio.run(run(app, config_path))
