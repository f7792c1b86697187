"""``gateway ingest``: read messages from stdin, files, mboxes or Maildirs,
commit them durably to the spool in batches (group commit), then process
the queue. Exit codes follow sysexits, as an MTA's pipe transport expects:
0 accepted, 65 some message rejected as bad data, 75 temporary failure."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from gateway.domain import TemporaryFailure, normalize_address
from gateway.ingress.pipe import RawMessage, SourceError, iter_path, read_stream
from gateway.pipeline.runner import Runner, make_pool
from gateway.store.spool import SpoolItem

if TYPE_CHECKING:
    from gateway.services import Services

EX_OK, EX_DATAERR, EX_NOINPUT, EX_TEMPFAIL = 0, 65, 66, 75
log = logging.getLogger("gateway.ingest")
SPOOL_BATCH = 200  # messages per durable commit


def _messages(paths: Sequence[str], limit: int, stdin: BinaryIO) -> Iterator[RawMessage]:
    if not paths or list(paths) == ["-"]:
        yield read_stream(stdin, "stdin", limit)
        return
    for path in paths:
        if path == "-":
            yield read_stream(stdin, "stdin", limit)
        else:
            yield from iter_path(path, limit)


class _Spooler(threading.Thread):
    """Reads the sources and commits them to the spool in batches, while the
    caller's thread processes what is already spooled: reading and file
    creation overlap with the pipeline's database work."""

    def __init__(
        self, app: Services, paths: Sequence[str], recipient: str, err: TextIO, stdin: BinaryIO
    ) -> None:
        super().__init__(name="ingest-spooler", daemon=True)
        self.stdin = stdin
        self.spool = app.spool
        self.paths = paths
        self.recipient = recipient
        self.limit = app.settings.smtp.max_message_size
        self.err = err
        self.accepted = 0
        self.rejected = 0
        self.failure: SourceError | TemporaryFailure | None = None
        self.more = threading.Event()  # a batch was committed, or the end
        self.finished = threading.Event()

    def run(self) -> None:
        batch: list[SpoolItem] = []
        try:
            for msg in _messages(self.paths, self.limit, self.stdin):
                if msg.raw is None:
                    self.rejected += 1
                    print(f"gateway: rejected {msg.label}: {msg.error}", file=self.err)
                    continue
                batch.append(SpoolItem(raw=msg.raw, source="ingest", recipient=self.recipient))
                if len(batch) >= SPOOL_BATCH:
                    self._commit(batch)
                    batch = []
            self._commit(batch)
        except (SourceError, TemporaryFailure) as exc:
            self.failure = exc
        except Exception as exc:  # noqa: BLE001 - a bug: never "exit 0" for mail that was not committed
            log.debug("spooling failed", exc_info=True)  # GATEWAY_LOG_LEVEL=debug shows it
            self.failure = TemporaryFailure(f"internal error while spooling ({type(exc).__name__})")
        finally:
            self.finished.set()
            self.more.set()

    def _commit(self, batch: list[SpoolItem]) -> None:
        if batch:
            self.accepted += len(self.spool.put_many(batch))
            self.more.set()


def run_ingest(
    app: Services,
    paths: Sequence[str],
    recipient: str | None,
    progress: bool,
    err: TextIO | None = None,
    stdin: BinaryIO | None = None,
) -> int:
    """``stdin``: where a message on standard input is read from (default
    ``sys.stdin.buffer``; the bytes a failed hand-off already read)."""
    err = err or sys.stderr
    rcpt = normalize_address(recipient) if recipient else app.settings.desk.addresses[0]
    spooler = _Spooler(app, paths, rcpt, err, stdin or sys.stdin.buffer)
    spooler.start()
    stalled = _process_while_spooling(app, spooler, progress, err)
    spooler.join()
    if isinstance(spooler.failure, SourceError):
        print(f"gateway: {spooler.failure}", file=err)
        return EX_NOINPUT
    if isinstance(spooler.failure, TemporaryFailure):
        print(
            f"gateway: temporary failure: {spooler.failure} ({spooler.accepted} messages accepted before)",
            file=err,
        )
        return EX_TEMPFAIL
    if stalled is not None:
        # Accepted all the same: queued for the next run or the daemon.
        print(f"gateway: warning: messages accepted but not yet processed: {stalled}", file=err)
    return EX_DATAERR if spooler.rejected else EX_OK


def _process_while_spooling(
    app: Services, spooler: _Spooler, progress: bool, err: TextIO
) -> TemporaryFailure | None:
    """Process what is queued (this run's messages and any left over) until
    the spooler is done. The messages are already accepted: trouble here
    leaves them queued for the next run or the daemon, so it is returned
    for a warning (unless spooling failed too: then that is the one line)."""
    pool: ProcessPoolExecutor | None = None
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=0, unit="msg", file=err, leave=False)

    def make() -> ProcessPoolExecutor:
        nonlocal pool
        pool = pool or make_pool(app.settings)
        return pool

    def on_done(_id: int, _d: object) -> None:
        if bar is not None:
            bar.total = max(bar.total, spooler.accepted)
            bar.update(1)

    try:
        runner = Runner(app.settings, app.spool, pool_factory=make)
        while True:
            spooler.more.wait()
            spooler.more.clear()
            last_round = spooler.finished.is_set()
            runner.drain(on_done=on_done)
            if last_round:
                break
        return None
    except TemporaryFailure as exc:
        return exc
    finally:
        if bar is not None:
            bar.close()
        if pool is not None:
            pool.shutdown()
