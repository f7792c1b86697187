"""SMTP ingress benchmark: 32 concurrent connections send a realistic corpus
to ``gateway serve`` (durable group commit, pipeline workers running) and,
in the same run, to a bare aiosmtpd server that answers 250 and stores
nothing: the ceiling of this machine for this client.

Prints accepted messages/s, p50/p99 latency from the end of DATA to the
reply, the server's CPU per message, messages/s end to end (until the
spool is empty), the server's peak RSS, and the ratio to the bare server.
Bare and gateway runs alternate for ``--rounds`` rounds (each gateway round
on fresh state) and the medians are compared: on this 2-core VM one run of
the bare server alone varies between 1,200 and 2,500 msg/s.

    python bench/bench_smtp.py                      # SQLite in a temp dir
    python bench/bench_smtp.py --db-url postgresql+psycopg://…
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from corpus import eml_files

DESK = "servicedesk@xitrust.com"

BARE_SERVER = r"""
import asyncio, sys
from aiosmtpd.smtp import SMTP
class H:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"
async def main():
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(lambda: SMTP(H(), hostname="bench", data_size_limit=26214400,
                                                enable_SMTPUTF8=True), "127.0.0.1", int(sys.argv[1]))
    print("listening on", flush=True, file=sys.stderr)
    await asyncio.Event().wait()
import logging; logging.getLogger("mail.log").setLevel(logging.WARNING)
asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load_corpus(n: int, seed: int, workdir: Path) -> list[bytes]:
    # On the wire lines end in CRLF; dot-stuff once here, not in the timed loop.
    msgs = []
    for p in eml_files(n, seed, workdir / "corpus"):
        raw = re.sub(rb"\r?\n", b"\r\n", p.read_bytes())
        raw = re.sub(rb"(?m)^\.", b"..", raw)
        if not raw.endswith(b"\r\n"):
            raw += b"\r\n"
        msgs.append(raw)
    return msgs


# -- the client -----------------------------------------------------------


async def _reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        if line[3:4] != b"-":
            return line


async def _session(port: int, queue: asyncio.Queue[bytes], latencies: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await _reply(reader)
        writer.write(b"EHLO bench.example\r\n")
        await _reply(reader)
        while True:
            try:
                raw = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            # Pipelining-free, like most MTAs without PIPELINING: one command, one reply.
            for cmd in (b"MAIL FROM:<sender@example.net>\r\n", f"RCPT TO:<{DESK}>\r\n".encode(), b"DATA\r\n"):
                writer.write(cmd)
                await _reply(reader)
            writer.write(raw + b".\r\n")
            await writer.drain()
            t0 = time.perf_counter()
            reply = await _reply(reader)
            latencies.append(time.perf_counter() - t0)
            if not reply.startswith(b"250"):
                errors.append(reply.decode(errors="replace").strip())
        writer.write(b"QUIT\r\n")
        await _reply(reader)
    finally:
        writer.close()


async def run_client(
    ports: int | list[int], msgs: list[bytes], conns: int
) -> tuple[float, list[float], list[str]]:
    """Send ``msgs`` over ``conns`` connections; with several ``ports`` (one
    per instance) the connections are spread over them round robin, as MX
    records of equal preference spread an MTA's. Seconds, each message's
    latency, the errors."""
    targets = [ports] if isinstance(ports, int) else ports
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for m in msgs:
        queue.put_nowait(m)
    latencies: list[float] = []
    errors: list[str] = []
    t0 = time.perf_counter()
    sessions = (_session(targets[i % len(targets)], queue, latencies, errors) for i in range(conns))
    await asyncio.gather(*sessions)
    return time.perf_counter() - t0, latencies, errors


# -- servers ----------------------------------------------------------------


def start(argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as err:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 60
    while b"listening on" not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"server did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return proc


def proc_status(pid: int, key: str) -> int:
    """A number of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``, ``Threads``):
    0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def tree_rss_kib(pid: int) -> int:
    """RSS of the daemon and its worker processes."""
    return sum(proc_status(p, "VmRSS") for p in [pid, *children(pid)])


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU time of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_since(pid: int, start: tuple[float, float]) -> tuple[float, float]:
    user, system = cpu_seconds(pid)
    return user - start[0], system - start[1]


def peak_rss_kib(pid: int) -> int:
    return proc_status(pid, "VmHWM")


def spool_left(db_url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT count(*) FROM inbound_mail WHERE status IN ('queued', 'processing')")
                ).scalar_one()
            )
    finally:
        engine.dispose()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Round:
    """One client run against one server."""

    rate: float
    latencies: list[float]
    errors: list[str]
    cpu: tuple[float, float]  # user, system seconds of the server process
    e2e_secs: float = 0.0  # gateway: until the spool was empty
    drain_rate: float = 0.0  # gateway: messages/s the workers processed after the burst
    rss_tree_kib: int = 0
    peak_main_kib: int = 0
    exit_code: int = 0


def run_bare(msgs: list[bytes], conns: int, work: Path, env: dict[str, str]) -> Round:
    """The ceiling: bare aiosmtpd, nothing stored."""
    port = free_port()
    bare = start([sys.executable, "-c", BARE_SERVER, str(port)], env, work / "bare.log", work)
    try:
        cpu0 = cpu_seconds(bare.pid)
        secs, lat, err = asyncio.run(run_client(port, msgs, conns))
        cpu = cpu_since(bare.pid, cpu0)
    finally:
        bare.send_signal(signal.SIGTERM)
        bare.wait(10)
    return Round(len(lat) / secs, lat, err, cpu)


def run_gateway(msgs: list[bytes], args: argparse.Namespace, work: Path, base_env: dict[str, str]) -> Round:
    """``gateway serve`` on its own state in ``work``: accept, then wait
    until the workers have emptied the spool."""
    work.mkdir(parents=True, exist_ok=True)
    db_url = args.db_url or f"sqlite:///{work / 'gateway.db'}"
    port = free_port()
    env = dict(base_env)
    env.update(
        GATEWAY__DATABASE__URL=db_url,
        GATEWAY__STORAGE__BLOBS=args.blobs or str(work / "blobs"),
        GATEWAY__OUTBOUND__MAILDIR=str(work / "sent"),
        GATEWAY__SMTP__LISTEN=f"127.0.0.1:{port}",
        # All connections come from 127.0.0.1 (default per-IP limit: 20).
        GATEWAY__SMTP__MAX_CONNECTIONS_PER_IP=str(max(20, args.connections)),
        GATEWAY_LOG_LEVEL="WARNING",
    )
    env.update(kv.split("=", 1) for kv in args.set)
    if not db_url.startswith("sqlite"):
        subprocess.run([sys.executable, "-m", "gateway", "db", "upgrade"], env=env, check=True, cwd=work)
    gw = start([sys.executable, "-m", "gateway", "serve"], env, work / "gateway.log", work)
    try:
        t0 = time.perf_counter()
        cpu0 = cpu_seconds(gw.pid)
        secs, lat, err = asyncio.run(run_client(port, msgs, args.connections))
        cpu = cpu_since(gw.pid, cpu0)
        rss_tree = tree_rss_kib(gw.pid)
        t_accepted, left_then = time.perf_counter(), spool_left(db_url)
        while spool_left(db_url):
            rss_tree = max(rss_tree, tree_rss_kib(gw.pid))
            time.sleep(0.1)
        e2e = time.perf_counter() - t0
        drain = left_then / max(1e-9, time.perf_counter() - t_accepted)
        peak_main = peak_rss_kib(gw.pid)
    finally:
        gw.send_signal(signal.SIGTERM)
        code = gw.wait(60)
    return Round(len(lat) / secs, lat, err, cpu, e2e, drain, rss_tree, peak_main, code)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument(
        "--rounds", type=int, default=3,
        help="bare and gateway runs, alternating; medians are reported (this VM is noisy)",
    )
    ap.add_argument("--db-url", default=None, help="default: a fresh SQLite per round in the work directory")
    ap.add_argument("--blobs", default=None, help='blob store: a directory (default) or "database"')
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra gateway setting, e.g. GATEWAY__WORKERS__PARSE_PROCESSES=1",
    )
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-smtp-"))
    msgs = load_corpus(args.n, args.seed, work)
    size = sum(len(m) for m in msgs)
    print(
        f"corpus: {len(msgs)} messages, {size / len(msgs) / 1024:.1f} KiB average, "
        f"{args.connections} connections, {os.cpu_count()} CPUs, {args.rounds} rounds"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}

    def row(name: str, r: Round) -> None:
        per = [c / max(1, len(r.latencies)) * 1e6 for c in r.cpu]
        print(
            f"{name:<22} {r.rate:8.0f} msg/s   p50 {pct(r.latencies, 0.5) * 1000:6.1f} ms   "
            f"p99 {pct(r.latencies, 0.99) * 1000:6.1f} ms   errors {len(r.errors)}   "
            f"server CPU {per[0]:4.0f}+{per[1]:4.0f} us/msg (user+system)",
            flush=True,
        )

    bares: list[Round] = []
    gateways: list[Round] = []
    for i in range(args.rounds):
        bares.append(run_bare(msgs, args.connections, work, env))
        row(f"[{i + 1}] bare aiosmtpd", bares[-1])
        gateways.append(run_gateway(msgs, args, work / f"round-{i + 1}", env))
        row(f"[{i + 1}] gateway", gateways[-1])

    bare_rate = statistics.median(r.rate for r in bares)
    gw_rate = statistics.median(r.rate for r in gateways)
    bare_lat = [x for r in bares for x in r.latencies]
    gw_lat = [x for r in gateways for x in r.latencies]
    e2e = statistics.median(len(msgs) / r.e2e_secs for r in gateways)
    print(f"\nmedians of {args.rounds} rounds; latency percentiles over all rounds' messages")
    print(
        f"bare aiosmtpd (250)    {bare_rate:8.0f} msg/s   p50 {pct(bare_lat, 0.5) * 1000:6.1f} ms   "
        f"p99 {pct(bare_lat, 0.99) * 1000:6.1f} ms"
    )
    print(
        f"gateway (durable)      {gw_rate:8.0f} msg/s   p50 {pct(gw_lat, 0.5) * 1000:6.1f} ms   "
        f"p99 {pct(gw_lat, 0.99) * 1000:6.1f} ms"
    )
    drain = statistics.median(r.drain_rate for r in gateways)
    print(f"gateway end to end     {e2e:8.0f} msg/s   (first message sent until the spool was empty)")
    print(f"gateway processing     {drain:8.0f} msg/s   (the workers emptying the spool after the burst)")
    print(
        f"gateway peak RSS       {max(r.peak_main_kib for r in gateways) / 1024:8.1f} MiB daemon, "
        f"{max(r.rss_tree_kib for r in gateways) / 1024:.1f} MiB with workers"
    )
    ratios = [g.rate / b.rate for b, g in zip(bares, gateways, strict=True)]
    db = (args.db_url or "sqlite").split(":")[0]
    print(
        f"accepted ratio         {gw_rate / bare_rate:8.0%} of the bare server   "
        f"(per round {', '.join(f'{x:.0%}' for x in ratios)}; db: {db})"
    )
    print(f"gateway exit codes     {sorted({r.exit_code for r in gateways})}")
    errors = [e for r in bares + gateways for e in r.errors]
    if errors or any(r.exit_code for r in gateways):
        print("errors:", errors[:5])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
