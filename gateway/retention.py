"""Retention ([retention] in the config): the mail bytes the desk no longer
needs are removed once they are old enough; what is left says what they
were. Run daily by ``gateway serve`` (``jobs.start_retention``) and by hand
with ``gateway retention run``.

- Raw mail of processed mail (``done``, ``ignored``) ``raw_mail_days`` after
  its processing. Queued mail and mail being processed are never touched;
  quarantined mail waits for an operator (``quarantine_days``, 0 by
  default: until it is reprocessed, after which ``raw_mail_days`` applies).
  The mail log's row stays (sender, subject, Message-ID, what became of it)
  and says when its bytes went; the ticket keeps its text and files.
- Outbound mail that is sent, failed or bounced, ``outbox_days`` after it
  was queued: its render data (the row stays for the outbox list and for
  matching late bounces; it can no longer be sent again), and its copy in
  ``outbound.maildir`` when the Maildir is the transport.

The database's part runs on one instance at a time (a PostgreSQL advisory
lock; among daemons, the holder of the ``retention`` lease: ``jobs``); the
Maildir is each instance's own directory, so every instance sweeps it."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from gateway.domain import MailStatus
from gateway.settings import Settings
from gateway.store import retention as store
from gateway.store.blobs import BlobStore
from gateway.store.models import as_utc, utcnow

log = logging.getLogger("gateway.retention")

BATCH = 500  # rows per transaction: a first run over a large store holds no lock for long
PROCESSED = (MailStatus.done.value, MailStatus.ignored.value)
DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Result:
    """One run: how much went (or, dry, would go) under which settings."""

    raw_mail_days: int
    quarantine_days: int
    outbox_days: int
    raw_mails: int = 0
    quarantined: int = 0
    outbox_bodies: int = 0
    maildir_copies: int | None = None  # None: not swept (the Maildir is not the transport)
    dry_run: bool = False
    skipped: bool = False  # another instance does the database's part (its lease, or its run under way)

    def summary(self) -> str:
        """The run's log line (and the command's output)."""
        head = "retention (dry run)" if self.dry_run else "retention"
        verb = "would remove" if self.dry_run else "removed"
        swept = self.maildir_copies is not None
        copies = f"{self.maildir_copies} sent copies in the Maildir" if swept else ""
        if self.skipped:
            text = f"{head}: another instance takes care of the database"
            return text + (f"; {verb} {copies}" if copies else "")
        removed, kept = [], []
        for count, what, days, key in (
            (self.raw_mails, "raw mails", self.raw_mail_days, "raw_mail_days"),
            (self.quarantined, "quarantined raw mails", self.quarantine_days, "quarantine_days"),
            (self.outbox_bodies, "outbox bodies", self.outbox_days, "outbox_days"),
        ):
            if days:
                removed.append(f"{count} {what} older than {days} days")
            elif key != "quarantine_days":  # kept by default: not worth a word every day
                kept.append(f"{what} ({key} = 0)")
        if copies:
            removed.append(copies)
        text = f"{head}: {verb} " + (", ".join(removed) or "nothing")
        return text + (f"; kept: {', '.join(kept)}" if kept else "")

    def removed(self) -> dict[str, int]:
        """Counts by kind (the metrics' label)."""
        return {"raw_mail": self.raw_mails + self.quarantined, "outbox_body": self.outbox_bodies,
                "maildir_copy": self.maildir_copies or 0}


def run(
    engine: Engine, blobs: BlobStore, settings: Settings, *, now: dt.datetime | None = None,
    dry_run: bool = False, batch: int = BATCH, database: bool = True,
) -> Result:
    """Remove (``dry_run``: count) what is due at ``now``; the Result.
    ``database`` False: only this instance's Maildir (another instance
    does the database's part)."""
    now = now or utcnow()
    cfg = settings.retention
    copies = None
    if settings.outbound.transport == "maildir" and cfg.outbox_days:
        maildir = Path(settings.outbound.maildir).expanduser()
        copies = expire_maildir(maildir, now - cfg.outbox_days * DAY, dry_run)
    raw = quarantined = bodies = 0
    with store.exclusive(engine) if database else contextlib.nullcontext(False) as mine:
        if mine and cfg.raw_mail_days:
            raw = _raw(engine, blobs, PROCESSED, now - cfg.raw_mail_days * DAY, now, dry_run, batch)
        if mine and cfg.quarantine_days:
            quarantined = _raw(engine, blobs, (MailStatus.quarantined.value,),
                               now - cfg.quarantine_days * DAY, now, dry_run, batch)
        if mine and cfg.outbox_days:
            bodies = _bodies(engine, now - cfg.outbox_days * DAY, now, dry_run, batch)
    return Result(cfg.raw_mail_days, cfg.quarantine_days, cfg.outbox_days, raw_mails=raw,
                  quarantined=quarantined, outbox_bodies=bodies, maildir_copies=copies, dry_run=dry_run,
                  skipped=not mine)


def _raw(
    engine: Engine, blobs: BlobStore, statuses: tuple[str, ...], before: dt.datetime, now: dt.datetime,
    dry_run: bool, batch: int,
) -> int:
    if dry_run:
        return store.count_raw(engine, statuses=statuses, before=before)
    removed = 0
    after = store.raw_start()
    while True:
        done = store.remove_raw(engine, blobs, statuses=statuses, before=before, now=now, limit=batch,
                                after=after)
        removed += done.removed
        if done.seen < batch:
            return removed
        after = done.after


def _bodies(engine: Engine, before: dt.datetime, now: dt.datetime, dry_run: bool, batch: int) -> int:
    if dry_run:
        return store.count_bodies(engine, before=before)
    removed = 0
    while True:
        seen, cleared = store.remove_bodies(engine, before=before, now=now, limit=batch)
        removed += cleared
        if seen < batch:
            return removed


def expire_maildir(path: Path, before: dt.datetime, dry_run: bool = False) -> int:
    """Remove (``dry_run``: count) the Maildir's mails (``new/`` and
    ``cur/``: delivered ones) written before ``before``; how many. A file
    another sweep removed first is not counted."""
    cutoff = before.timestamp()
    count = 0
    for sub in ("new", "cur"):
        try:
            entries = list(os.scandir(path / sub))
        except FileNotFoundError:
            continue
        for entry in entries:
            try:
                if not entry.is_file(follow_symlinks=False) or entry.stat().st_mtime >= cutoff:
                    continue
                if not dry_run:
                    os.unlink(entry.path)
            except FileNotFoundError:
                continue
            count += 1
    return count


def removed_note(processed_at: dt.datetime | None, removed_at: dt.datetime) -> str:
    """What the mail log says of a mail whose raw bytes are gone."""
    removed_at = as_utc(removed_at)
    when = removed_at.strftime("%Y-%m-%d")
    if processed_at is None:
        return f"removed by retention on {when} ([retention] raw_mail_days)"
    days = (removed_at - as_utc(processed_at)).days
    return f"removed by retention on {when}, {days} days after processing ([retention] raw_mail_days)"
