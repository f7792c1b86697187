"""Benchmark: ``gateway ingest`` of the project's corpus into a fresh SQLite
store, end to end (process start, spool with durable commits, parse,
thread, apply, notify). Prints messages per second and peak RSS.

    python bench/bench_ingest.py [--n 2000] [--seed 1] [--runs 3]

Target on the 2-core reference machine: >= 500 messages/s."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from corpus import make_corpus


def run_once(mbox: Path, workdir: Path) -> tuple[float, int, dict[str, int]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY")}
    env.update(
        GATEWAY__DATABASE__URL=f"sqlite:///{workdir}/gateway.db",
        GATEWAY__STORAGE__BLOBS=str(workdir / "blobs"),
        GATEWAY__OUTBOUND__MAILDIR=str(workdir / "sent"),
    )
    wrapper = (
        "import resource, subprocess, sys\n"
        "rc = subprocess.run(sys.argv[1:]).returncode\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(rc)\n"
    )
    start = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            wrapper,
            sys.executable,
            "-m",
            "gateway",
            "ingest",
            "--no-progress",
            str(mbox),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.perf_counter() - start
    peak_kib = int(out.stdout.strip().splitlines()[-1])
    log = subprocess.run(
        [sys.executable, "-m", "gateway", "mail", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    counts: dict[str, int] = {}
    for row in json.loads(log.stdout):
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return elapsed, peak_kib, counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        base = Path(tmp)
        mbox = base / "corpus.mbox"
        make_corpus(a.n, a.seed, mbox=mbox)
        rates, peaks = [], []
        for i in range(a.runs):
            workdir = base / f"run{i}"
            workdir.mkdir()
            elapsed, peak_kib, counts = run_once(mbox, workdir)
            rate = a.n / elapsed
            rates.append(rate)
            peaks.append(peak_kib)
            print(
                f"run {i + 1}: {a.n} messages in {elapsed:.2f} s = {rate:.0f} msg/s, "
                f"peak RSS {peak_kib / 1024:.0f} MiB, dispositions {counts}"
            )
        print(
            f"ingest: median {statistics.median(rates):.0f} msg/s (best {max(rates):.0f}), "
            f"peak RSS {max(peaks) / 1024:.0f} MiB, cpus {os.cpu_count()}, "
            f"load before {os.getloadavg()[0]:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
