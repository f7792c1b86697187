"""``gateway ingest``: read messages from stdin, files, mboxes or Maildirs,
commit them durably to the spool in batches (group commit), then process
the queue. Exit codes follow sysexits, as an MTA's pipe transport expects:
0 accepted, 65 some message rejected as bad data, 75 temporary failure."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, TextIO

from gateway.domain import TemporaryFailure, normalize_address
from gateway.ingress.pipe import RawMessage, SourceError, iter_path, read_stream
from gateway.ingress.spool import Spool, SpoolItem
from gateway.pipeline.runner import Runner, make_pool

if TYPE_CHECKING:
    from gateway.app import App

EX_OK, EX_DATAERR, EX_NOINPUT, EX_TEMPFAIL = 0, 65, 66, 75
SPOOL_BATCH = 200  # messages per durable commit


def _messages(paths: Sequence[str], limit: int) -> Iterator[RawMessage]:
    if not paths or list(paths) == ["-"]:
        yield read_stream(sys.stdin.buffer, "stdin", limit)
        return
    for path in paths:
        if path == "-":
            yield read_stream(sys.stdin.buffer, "stdin", limit)
        else:
            yield from iter_path(path, limit)


def run_ingest(
    app: App, paths: Sequence[str], recipient: str | None, progress: bool, err: TextIO | None = None
) -> int:
    err = err or sys.stderr
    settings = app.settings
    limit = settings.smtp.max_message_size
    rcpt = normalize_address(recipient) if recipient else settings.desk.addresses[0]
    spool = Spool(app.engine, app.blobs)
    rejected = 0
    accepted = 0
    batch: list[SpoolItem] = []
    try:
        for msg in _messages(paths, limit):
            if msg.raw is None:
                rejected += 1
                print(f"gateway: rejected {msg.label}: {msg.error}", file=err)
                continue
            batch.append(SpoolItem(raw=msg.raw, source="ingest", recipient=rcpt))
            if len(batch) >= SPOOL_BATCH:
                accepted += len(spool.put_many(batch))
                batch = []
        accepted += len(spool.put_many(batch))
    except SourceError as exc:
        print(f"gateway: {exc}", file=err)
        return EX_NOINPUT
    except TemporaryFailure as exc:
        print(f"gateway: temporary failure: {exc} ({accepted} messages accepted before)", file=err)
        return EX_TEMPFAIL
    _process_queue(app, accepted, progress, err)
    return EX_DATAERR if rejected else EX_OK


def _process_queue(app: App, expected: int, progress: bool, err: TextIO) -> None:
    """Process what is queued (this run's messages and any left over). The
    messages are already accepted: trouble here leaves them queued for the
    next run or the daemon, so it is a warning, not a failure."""
    pool = make_pool(app.settings) if expected >= 64 else None
    bar = None
    if progress and expected > 1:
        from tqdm import tqdm

        bar = tqdm(total=expected, unit="msg", file=err, leave=False)
    try:
        runner = Runner(app.settings, app.engine, app.blobs, pool=pool)
        runner.drain(on_done=(lambda _i, _d: bar.update(1)) if bar is not None else None)
    except TemporaryFailure as exc:
        print(f"gateway: warning: messages accepted but not yet processed: {exc}", file=err)
    finally:
        if bar is not None:
            bar.close()
        if pool is not None:
            pool.shutdown()
