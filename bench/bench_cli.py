"""Benchmark: how fast ``gateway`` commands start, against the bare
interpreter in the same run, and what that means for a Postfix pipe.

    python bench/bench_cli.py [--runs 15] [--pipe 500] [--gateway PATH]

Each figure is the median wall time of ``--runs`` runs, the commands
interleaved so that a busy moment of the machine hits all of them alike:

- ``bare``: ``python -c 'import email'`` with the interpreter that runs the
  gateway (the yardstick of the targets below);
- ``--help``: target within 3x bare (help needs no config, no database);
- ``ingest (daemon)``: one message on stdin while ``gateway serve`` runs
  (handed to it over its local socket); target within 8x bare;
- ``ingest (inline)``: the same with no daemon (spool and process in the
  command itself); ``ticket list``, ``check-config`` on SQLite.

Then ``--pipe`` corpus messages as one mbox through one ``gateway ingest``
(processed inline, a daemon running or not); and the same messages each
through its own ``gateway ingest``
process, four at a time (Postfix's ``maxproc 4`` of the README's pipe
transport), with a daemon running and without: messages per second until
every one is processed, and the daemon's dispositions.

``--gateway`` measures another installation's ``gateway`` executable (e.g. an
older version's virtualenv, for a before/after comparison)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from corpus import eml_files, make_corpus

MESSAGE = (
    b"From: Anna Berger <anna@bauwerk-ag.de>\nTo: servicedesk@xitrust.com\n"
    b"Subject: Drucker druckt nicht\nMessage-ID: <bench-cli-%d@bauwerk-ag.de>\n"
    b"Date: Mon, 30 Nov 2026 09:30:00 +0100\n\nHallo, der Drucker druckt nicht.\n"
)


class State:
    """A state directory with its config, and optionally a running daemon."""

    def __init__(self, base: Path, gateway: list[str]) -> None:
        self.dir = base
        self.gateway = gateway
        base.mkdir(parents=True, exist_ok=True)
        config = base / "gateway.toml"
        config.write_text(
            "[database]\nurl = \"sqlite:///var/gateway.db\"\n"
            "[smtp]\nlisten = \"127.0.0.1:0\"\n"
            "[metrics]\nlisten = \"\"\n"
        )
        self.env = {k: v for k, v in os.environ.items() if not k.upper().startswith("GATEWAY")}
        self.env["GATEWAY_CONFIG"] = str(config)
        self.daemon: subprocess.Popen[bytes] | None = None

    def run(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*self.gateway, *args], input=stdin, capture_output=True, cwd=self.dir, env=self.env, check=True
        )

    def start(self) -> None:
        log = open(self.dir / "serve.log", "wb")  # noqa: SIM115 - lives as long as the daemon
        self.daemon = subprocess.Popen([*self.gateway, "serve"], cwd=self.dir, env=self.env, stdout=log,
                                       stderr=log)
        deadline = time.monotonic() + 60
        while b"listening on" not in (self.dir / "serve.log").read_bytes():
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("gateway serve did not start:\n" + (self.dir / "serve.log").read_text())
            time.sleep(0.05)

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.terminate()
            self.daemon.wait(60)
            self.daemon = None

    def prepare(self, with_daemon: bool) -> None:
        """A migrated database, and the daemon running if asked for."""
        self.run("db", "upgrade")
        if with_daemon:
            self.start()

    def wait_processed(self, at_least: int = 0) -> dict[str, int]:
        """The mail log's statuses once nothing is queued or processing (and
        at least ``at_least`` mails are logged): with a daemon, processing
        goes on after the last `ingest` exited."""
        while True:
            counts = self.processed()
            busy = counts.get("queued", 0) + counts.get("processing", 0)
            if busy == 0 and sum(counts.values()) >= at_least:
                return counts
            time.sleep(0.05)

    def processed(self) -> dict[str, int]:
        rows = json.loads(self.run("mail", "list", "--json").stdout)
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        return counts


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def startup(gateway: list[str], runs: int, base: Path) -> dict[str, float]:
    bare = [sys.executable if gateway[0] == sys.executable else _python_of(gateway), "-c", "import email"]
    daemon_state = State(base / "daemon", gateway)
    inline_state = State(base / "inline", gateway)
    inline_state.run("db", "upgrade")
    daemon_state.start()
    n = iter(range(10**6))
    cases: dict[str, Callable[[], object]] = {
        "bare": lambda: subprocess.run(bare, check=True),
        "--help": lambda: daemon_state.run("--help"),
        "ingest (daemon)": lambda: daemon_state.run("ingest", stdin=MESSAGE % next(n)),
        "ingest (inline)": lambda: inline_state.run("ingest", stdin=MESSAGE % next(n)),
        "ticket list": lambda: inline_state.run("ticket", "list"),
        "check-config": lambda: inline_state.run("check-config"),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    try:
        for fn in cases.values():  # warm the page cache once
            fn()
        for _ in range(runs):
            for name, fn in cases.items():
                times[name].append(timed(fn))
    finally:
        daemon_state.stop()
    return {name: statistics.median(t) for name, t in times.items()}


def _python_of(gateway: list[str]) -> str:
    """The interpreter of a console script (its #! line)."""
    first = Path(gateway[0]).read_bytes().split(b"\n", 1)[0]
    return first[2:].decode().strip() if first.startswith(b"#!") else sys.executable


def pipe(
    gateway: list[str], files: list[Path], base: Path, with_daemon: bool
) -> tuple[float, dict[str, int]]:
    """Each file through its own `gateway ingest`, four at a time; seconds
    until all are processed, and the mail log's statuses."""
    state = State(base, gateway)
    state.prepare(with_daemon)

    def one(path: Path) -> int:
        with path.open("rb") as fh:
            return subprocess.run([*gateway, "ingest", "--recipient", "servicedesk@xitrust.com"], stdin=fh,
                                  cwd=state.dir, env=state.env, capture_output=True).returncode

    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(one, files))
        counts = state.wait_processed()
        elapsed = time.perf_counter() - start
    finally:
        state.stop()
    bad = [c for c in codes if c != 0]
    if bad:
        counts["exit!=0"] = len(bad)
    return elapsed, counts


def mbox_import(
    gateway: list[str], mbox: Path, n: int, base: Path, with_daemon: bool
) -> tuple[float, dict[str, int]]:
    """One `gateway ingest` of an mbox of ``n`` messages; seconds until
    every message is processed, and the mail log's statuses."""
    state = State(base, gateway)
    state.prepare(with_daemon)
    try:
        start = time.perf_counter()
        subprocess.run([*gateway, "ingest", "--no-progress", str(mbox)], cwd=state.dir, env=state.env,
                       capture_output=True, check=True)
        counts = state.wait_processed(at_least=n)
        return time.perf_counter() - start, counts
    finally:
        state.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--pipe", type=int, default=500, help="messages for the pipe figures (0: skip)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--gateway", help="a gateway executable (default: this interpreter's -m gateway)")
    ap.add_argument("--only", choices=["startup", "pipe", "mbox"], help="just one part")
    a = ap.parse_args()
    gateway = [a.gateway] if a.gateway else [str(Path(sys.executable).with_name("gateway"))]
    if not Path(gateway[0]).exists():
        gateway = [sys.executable, "-m", "gateway"]
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        base = Path(tmp)
        if a.only in (None, "startup"):
            medians = startup(gateway, a.runs, base / "startup")
            bare = medians["bare"]
            print(f"{'command':<18} {'median':>9} {'x bare':>7}  target")
            targets = {"--help": 3, "ingest (daemon)": 8}
            for name, value in medians.items():
                target = targets.get(name)
                met = target is not None and value <= target * bare
                verdict = "" if target is None else f"<= {target}x " + ("met" if met else "MISSED")
                print(f"{name:<18} {value * 1000:>7.1f}ms {value / bare:>6.1f}x  {verdict}")
        if a.pipe and a.only in (None, "mbox"):
            mbox = base / "corpus.mbox"
            make_corpus(a.pipe, a.seed, mbox=mbox)
            for with_daemon in (True, False):
                state_dir = base / f"mbox-{with_daemon}"
                elapsed, counts = mbox_import(gateway, mbox, a.pipe, state_dir, with_daemon)
                # Files are always processed inline (only stdin is handed over:
                # one commit per handed-over message was slower than inline's 200).
                label = "daemon running" if with_daemon else "no daemon"
                print(f"one ingest of a {a.pipe}-message mbox, {label}: {a.pipe / elapsed:.1f} msg/s "
                      f"({elapsed:.1f} s) {json.dumps(counts, sort_keys=True)}")
        if a.pipe and a.only in (None, "pipe"):
            files = eml_files(a.pipe, a.seed, base / "corpus")
            for with_daemon in (True, False):
                elapsed, counts = pipe(gateway, files, base / f"pipe-{with_daemon}", with_daemon)
                label = "with daemon (hand-off)" if with_daemon else "no daemon (inline)"
                print(f"pipe, {len(files)} messages, 4 at a time, {label}: {len(files) / elapsed:.1f} msg/s "
                      f"({elapsed:.1f} s) {json.dumps(counts, sort_keys=True)}")
                shutil.rmtree(base / f"pipe-{with_daemon}", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
