"""Scheduled work of ``gateway serve`` on APScheduler's AsyncIOScheduler: one
IMAP poll job per ``[[imap]]`` mailbox (or a long-running IDLE task where
the mailbox asks for IDLE and the server offers it), housekeeping of the
portal's tables, and retention (daily). The spool's
``reclaim_stale`` sweep is the daemon's own loop. Every job runs on the daemon's event loop; the
blocking parts (database) run in threads inside the jobs."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from gateway import retention
from gateway.ingress.imap import Poller

if TYPE_CHECKING:
    from gateway.instance import Instance
    from gateway.services import Services

log = logging.getLogger("gateway.jobs")


def make_scheduler() -> AsyncIOScheduler:
    """A scheduler on the running loop, UTC, jobs never piling up: a poll
    still running when its next turn comes is skipped (max_instances=1) and
    missed turns collapse into one (coalesce)."""
    # APScheduler logs two INFO lines per job run: every poll, every mailbox.
    logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
    return AsyncIOScheduler(
        event_loop=asyncio.get_running_loop(),
        timezone=dt.UTC,
        job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 30},
    )


async def start_imap(
    app: Services,
    scheduler: AsyncIOScheduler,
    on_commit: Callable[[list[int]], None] | None = None,
    instance: Instance | None = None,
) -> list[Poller]:
    """Start reading every configured mailbox; returns the pollers (pass
    them to ``stop_imap``). Never waits for a server: a mailbox that is
    down or misconfigured retries on its own and disturbs nothing else.
    ``on_commit(ids)`` is called after each spool commit (wake the workers)."""
    # aioimaplib logs every unsolicited response at INFO.
    logging.getLogger("aioimaplib.aioimaplib").setLevel(logging.WARNING)
    settings = app.settings
    spool = app.spool
    pollers: list[Poller] = []
    for cfg in settings.imap:
        poller = Poller(cfg, spool, max_message_size=settings.smtp.max_message_size, on_commit=on_commit,
                        instance=instance)
        pollers.append(poller)
        if cfg.idle:
            poller.task = asyncio.create_task(
                _idle_or_poll(poller, scheduler), name=f"imap-idle {poller.key}"
            )
        else:
            _schedule_poll(poller, scheduler)
        log.info("imap %s: started (%s)", poller.key, "idle" if cfg.idle else f"every {cfg.poll_seconds}s")
    return pollers


def _schedule_poll(poller: Poller, scheduler: AsyncIOScheduler) -> None:
    scheduler.add_job(
        poller.poll,
        "interval",
        seconds=poller.cfg.poll_seconds,
        id=f"imap:{poller.key}",
        name=f"imap poll {poller.key}",
        next_run_time=dt.datetime.now(dt.UTC),  # first poll now, not after one interval
        replace_existing=True,
    )


async def _idle_or_poll(poller: Poller, scheduler: AsyncIOScheduler) -> None:
    """IDLE for as long as the server offers it; fall back to polling."""
    if not await poller.run_idle():
        _schedule_poll(poller, scheduler)


async def stop_imap(pollers: list[Poller], scheduler: AsyncIOScheduler) -> None:
    """Stop polling and IDLE, log out. Mail fetched but not yet committed
    is simply fetched again after the next start."""
    for poller in pollers:
        with contextlib.suppress(Exception):
            scheduler.remove_job(f"imap:{poller.key}")
    tasks = [p.task for p in pollers if p.task is not None]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(p.close() for p in pollers), return_exceptions=True)


HOUSEKEEPING_MINUTES = 15


def start_housekeeping(app: Services, scheduler: AsyncIOScheduler) -> None:
    """Every quarter hour: forget expired portal sessions and rate-limit
    counters whose hour has passed (sessions stop working at their expiry
    anyway; this keeps the tables small)."""

    async def prune() -> None:
        from gateway.store import web
        from gateway.store.db import connection

        def run() -> tuple[int, int]:
            with connection(app.engine) as conn:
                return web.delete_expired_sessions(conn), web.delete_stale_limits(conn, dt.timedelta(hours=1))

        try:
            sessions, limits = await asyncio.to_thread(run)
        except Exception as exc:  # noqa: BLE001 - the next run tries again
            log.warning("housekeeping: %s", exc)
            return
        if sessions or limits:
            log.info("housekeeping: %s expired sessions, %s rate-limit counters removed", sessions, limits)

    scheduler.add_job(prune, "interval", minutes=HOUSEKEEPING_MINUTES, id="housekeeping", name="housekeeping",
                      replace_existing=True)


RETENTION_HOURS = 24
# The first run comes this soon after the start (a daemon restarted more
# often than daily still runs it), once the listener and workers are up.
RETENTION_FIRST_DELAY = dt.timedelta(seconds=5)


RETENTION_LEASE = "retention"  # the instance holding it does the database's part


async def retention_turn(app: Services, instance: Instance | None) -> retention.Result:
    """One retention run. Among instances on one database, the holder of
    the ``retention`` lease (it keeps it while its heartbeat goes on) does
    the database's part, so the daily run happens once, not once per
    instance; every instance sweeps its own Maildir. The run itself also
    takes retention's database lock: a ``gateway retention run`` by hand
    never overlaps it."""
    ours = instance is None or await instance.acquire(RETENTION_LEASE)
    return await asyncio.to_thread(
        functools.partial(retention.run, app.engine, app.blobs, app.settings, database=ours)
    )


def start_retention(
    app: Services,
    scheduler: AsyncIOScheduler,
    on_result: Callable[[retention.Result], None] | None = None,
    instance: Instance | None = None,
) -> None:
    """Daily, and once shortly after the start: remove the mail bytes
    ``[retention]`` no longer keeps (``gateway.retention``; ``retention_turn``
    says which instance does what), one line in the log per run. The
    settings are read at each run: a reload (SIGHUP) applies to the next.
    ``on_result`` sees each run's Result (the metrics)."""

    async def sweep() -> None:
        try:
            result = await retention_turn(app, instance)
        except Exception as exc:  # noqa: BLE001 - the next run tries again
            log.warning("retention: %s", exc)
            return
        log.info("%s", result.summary())
        if on_result is not None:
            on_result(result)

    scheduler.add_job(sweep, "interval", hours=RETENTION_HOURS, id="retention", name="retention",
                      next_run_time=dt.datetime.now(dt.UTC) + RETENTION_FIRST_DELAY, replace_existing=True)
