"""Soak: many messages through one ``gateway serve`` and whether it stays
the same size. Sends ``--messages`` (default 200,000) distinct messages (the
corpus's, each with a Message-ID of its own, so none is a duplicate) over
``--connections`` SMTP connections, and samples the daemon's process tree:
resident memory, open files and threads of the daemon, at the start (after
a warm-up of ``--warmup`` messages), every ``--every`` messages and at the
end. Prints the samples and the growth from the first to the middle and to
the last; "flat" means within 10%.

    python bench/bench_soak.py                          # SQLite in a temp dir
    python bench/bench_soak.py --messages 50000 --db-url postgresql+psycopg://…
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_smtp import (
    _session,
    children,
    free_port,
    load_corpus,
    pct,
    proc_status,
    spool_left,
    start,
    tree_rss_kib,
)


def open_files(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def probed(probe: Path | None, pids: list[int]) -> dict[str, int]:
    """The memory probe's last figures (``--probe``), summed by role:
    ``d_`` the daemon, ``w_`` its workers."""
    if probe is None:
        return {}
    out: dict[str, int] = {}
    for pid in pids:
        try:
            last = json.loads((probe / f"{pid}.jsonl").read_text().splitlines()[-1])
        except (OSError, IndexError, ValueError):
            continue
        prefix = "d_" if last["role"] == "daemon" else "w_"
        for key in ("heap_used_kib", "heap_free_kib", "sqlite_kib", "py_blocks"):
            out[prefix + key] = out.get(prefix + key, 0) + int(last[key])
    return out


def sample(pid: int, sent: int, probe: Path | None = None) -> dict[str, int]:
    kids = children(pid)
    return {
        "sent": sent,
        "rss_tree_kib": tree_rss_kib(pid),
        "rss_daemon_kib": proc_status(pid, "VmRSS"),  # the rest is the worker processes'

        "open_files": open_files(pid) + sum(open_files(k) for k in kids),
        "threads": proc_status(pid, "Threads"),
        "processes": 1 + len(kids),
        **probed(probe, [pid, *kids]),
    }


_MID = re.compile(rb"(?im)^message-id:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*\r\n")


def unique(raw: bytes, n: int) -> bytes:
    """The message with a Message-ID of its own (a duplicate would be one
    effect, not a message)."""
    fresh = f"Message-ID: <soak-{n}@bench.example>\r\n".encode()
    body, count = _MID.subn(fresh, raw, count=1)
    return body if count else fresh + raw


async def send_all(port: int, corpus: list[bytes], total: int, conns: int, pid: int, warmup: int,
                   every: int, samples: list[dict[str, int]], errors: list[str],
                   latencies: list[float], probe: Path | None) -> float:
    t0 = time.perf_counter()
    # The queue is filled in slices: 200,000 messages held at once would be
    # the client's memory, not the daemon's.
    sent_total = 0
    next_sample = warmup
    while sent_total < total:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        chunk = min(every, total - sent_total)
        for i in range(sent_total, sent_total + chunk):
            queue.put_nowait(unique(corpus[i % len(corpus)], i))
        await asyncio.gather(*(_session(port, queue, latencies, errors) for _ in range(conns)))
        sent_total += chunk
        if sent_total >= next_sample:
            samples.append(sample(pid, sent_total, probe))
            next_sample = sent_total + every
            print(f"  {samples[-1]}", flush=True)
    return time.perf_counter() - t0


def growth(first: dict[str, int], later: dict[str, int], key: str) -> str:
    a, b = first[key], later[key]
    return f"{(b - a) / a * 100:+.1f}%" if a else f"{a} -> {b}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--corpus", type=int, default=2000, help="distinct corpus messages, sent in turn")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=10_000, help="messages before the first sample")
    ap.add_argument("--every", type=int, default=10_000, help="messages between samples")
    ap.add_argument("--db-url", default=None)
    ap.add_argument("--blobs", default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--probe", action="store_true",
                    help="also sample heap in use and free, SQLite's memory and Python's blocks per process "
                         "(bench/soak_probe)")
    ap.add_argument("--trace", type=int, default=0, metavar="FRAMES",
                    help="with --probe: tracemalloc with this many frames; each process writes where its "
                         "memory grew to <work>/probe/<pid>.trace.txt (slow; use with --keep)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    corpus = load_corpus(args.corpus, args.seed, work)
    db_url = args.db_url or f"sqlite:///{work / 'gateway.db'}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY")}
    env.update(
        GATEWAY__DATABASE__URL=db_url,
        GATEWAY__STORAGE__BLOBS=args.blobs or str(work / "blobs"),
        GATEWAY__OUTBOUND__MAILDIR=str(work / "sent"),
        GATEWAY__SMTP__LISTEN=f"127.0.0.1:{port}",
        GATEWAY__SMTP__MAX_CONNECTIONS_PER_IP=str(max(20, args.connections)),
        GATEWAY__WEB__LISTEN="",
        GATEWAY__METRICS__LISTEN="",
        GATEWAY_LOG_LEVEL="WARNING",
    )
    probe = work / "probe" if args.probe else None
    if probe is not None:
        probe.mkdir()
        path = [str(Path(__file__).parent / "soak_probe"), env.get("PYTHONPATH", "")]
        env.update(SOAK_PROBE_DIR=str(probe), PYTHONPATH=os.pathsep.join(path))
        if args.trace:
            env["SOAK_PROBE_TRACE"] = str(args.trace)
    if not db_url.startswith("sqlite"):
        subprocess.run([sys.executable, "-m", "gateway", "db", "upgrade"], env=env, check=True, cwd=work)
    gw = start([sys.executable, "-m", "gateway", "serve"], env, work / "gateway.log", work)
    samples: list[dict[str, int]] = []
    errors: list[str] = []
    latencies: list[float] = []
    try:
        print(f"soak: {args.messages} messages, {args.connections} connections, {db_url.split(':')[0]}")
        secs = asyncio.run(send_all(port, corpus, args.messages, args.connections, gw.pid, args.warmup,
                                    args.every, samples, errors, latencies, probe))
        accepted_at = time.perf_counter()
        while spool_left(db_url):
            time.sleep(0.5)
        time.sleep(6)  # the probe's next figures
        samples.append(sample(gw.pid, args.messages, probe))
        drained = secs + (time.perf_counter() - accepted_at)
    finally:
        gw.send_signal(signal.SIGTERM)
        code = gw.wait(120)
    first, middle, last = samples[0], samples[len(samples) // 2], samples[-1]
    print(f"\naccepted {args.messages - len(errors)} of {args.messages} in {secs:.0f} s "
          f"({args.messages / secs:.0f} msg/s, SMTP p50 {pct(latencies, 0.50) * 1000:.1f} ms, "
          f"p99 {pct(latencies, 0.99) * 1000:.1f} ms); all processed after {drained:.0f} s; exit {code}")
    for key in [k for k in first if k != "sent"]:
        print(f"{key:13} first {first[key]:>8}  middle {middle[key]:>8} ({growth(first, middle, key)})  "
              f"last {last[key]:>8} ({growth(first, last, key)})")
    # Threads and files come and go with asyncio's thread pool (bounded):
    # a leak shows as a later half that goes above the first half's peak.
    half = max(1, len(samples) // 2)
    early, late = samples[:half], samples[half:] or samples[-1:]
    bounded = all(max(s[k] for s in late) <= max(s[k] for s in early) + 2 for k in ("threads", "open_files"))
    flat = abs(last["rss_tree_kib"] - first["rss_tree_kib"]) <= 0.1 * first["rss_tree_kib"] and bounded
    print("flat" if flat else "NOT flat",
          "(rss within 10% of the first sample; threads and open files of the later half within 2 of "
          "the first half's peak)")
    if errors:
        print(f"{len(errors)} errors, e.g. {errors[:3]}")
    if not args.keep:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    else:
        print(f"work directory: {work}")
    return 0 if flat and not errors and code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
