"""Benchmark: drain a 2,000-message IMAP mailbox. The project's corpus is
APPENDed into a throwaway Dovecot (tests/dovecot.py), then one Poller reads
it into a fresh SQLite spool (UID FETCH in batches, one commit per batch,
\\Seen + MOVE after each commit) and the pipeline turns the spool into
tickets. Prints messages per second for the IMAP drain alone and for drain
plus pipeline, and the peak RSS of this process.

    python bench/bench_imap.py [--n 2000] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# after bench/ (sys.path[0]): ``corpus`` is bench/corpus.py, not the tests/corpus package
sys.path[1:1] = [str(ROOT), str(ROOT / "tests")]

from corpus import eml_files  # noqa: E402
from dovecot import USER, Dovecot  # noqa: E402

from gateway.app import App  # noqa: E402
from gateway.ingress.imap import Poller  # noqa: E402
from gateway.pipeline.runner import Runner, make_pool  # noqa: E402
from gateway.settings import DatabaseSettings, ImapSettings, OutboundSettings, Settings, StorageSettings  # noqa: E402
from gateway.store.spool import Spool  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-imap-") as tmp:
        work = Path(tmp)
        raws = [p.read_bytes() for p in eml_files(args.n, args.seed, work / "corpus")]
        server = Dovecot()
        try:
            server.start()
            t0 = time.perf_counter()
            server.append(raws)
            append_s = time.perf_counter() - t0
            settings = Settings(
                database=DatabaseSettings(url=f"sqlite:///{work / 'gateway.db'}"),
                storage=StorageSettings(blobs=str(work / "blobs")),
                outbound=OutboundSettings(maildir=str(work / "sent")),
            )
            app = App(settings)
            app.db_upgrade()
            cfg = ImapSettings(
                host="127.0.0.1", port=server.port, tls="none", username=USER,
                password_file=str(server.password_file), idle=False,
            )  # fmt: skip
            poller = Poller(
                cfg, Spool(app.engine, app.blobs), max_message_size=settings.smtp.max_message_size
            )

            async def drain() -> int:
                try:
                    return await poller.poll()
                finally:
                    await poller.close()

            t0 = time.perf_counter()
            spooled = asyncio.run(drain())
            imap_s = time.perf_counter() - t0
            left = len(server.messages("INBOX"))
            pool = make_pool(settings)
            try:
                t0 = time.perf_counter()
                counts = Runner(settings, app.spool, pool=pool).drain()
                pipe_s = time.perf_counter() - t0
            finally:
                pool.shutdown()
        finally:
            server.cleanup()

    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"messages: {len(raws)} appended in {append_s:.1f}s; spooled {spooled}, left in INBOX {left}")
    print(f"imap drain: {imap_s:.2f}s = {spooled / imap_s:.0f} messages/s")
    outcome = {str(k): v for k, v in counts.items()}
    print(f"pipeline:   {pipe_s:.2f}s = {sum(counts.values()) / pipe_s:.0f} messages/s  {outcome}")
    print(f"imap drain + pipeline: {spooled / (imap_s + pipe_s):.0f} messages/s")
    print(f"peak RSS (this process): {rss_mb:.0f} MB")
    return 0 if spooled == len(raws) and left == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
