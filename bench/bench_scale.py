"""Scale-out: 1, 2 and 3 ``gateway serve`` instances on one PostgreSQL (a
throwaway cluster, as the tests start it), the same corpus spread over
their SMTP listeners by the client's connections (round robin, as MX
records of equal preference do). For each count: accepted messages/s, SMTP
p50/p99 (end of DATA to the reply), messages/s end to end (until the spool
is empty) and a correctness check (every message one row, none left,
no message with two effects).

On this 2-core VM more instances cannot be faster (they share the cores
and the database); the figures are for the record, the check is the point.

    python bench/bench_scale.py --messages 3000 --instances 1 2 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# after bench/ (sys.path[0]): ``corpus`` is bench/corpus.py, not the tests/corpus package
sys.path[1:1] = [str(ROOT), str(ROOT / "tests")]

from bench_smtp import free_port, load_corpus, pct, run_client, start  # noqa: E402
from pgcluster import PgCluster  # noqa: E402 - the tests' throwaway cluster
from sqlalchemy import create_engine, text  # noqa: E402


def run(n: int, msgs: list[bytes], url: str, work: Path, conns: int) -> dict[str, float | int | str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY")}
    env.update(GATEWAY__DATABASE__URL=url, GATEWAY__STORAGE__BLOBS="database", GATEWAY__WEB__LISTEN="",
               GATEWAY__METRICS__LISTEN="", GATEWAY_LOG_LEVEL="WARNING",
               GATEWAY__SMTP__MAX_CONNECTIONS_PER_IP=str(max(20, conns)),
               GATEWAY__WORKERS__PARSE_PROCESSES="1")
    subprocess.run([sys.executable, "-m", "gateway", "db", "upgrade"], env=env, check=True, cwd=work,
                   capture_output=True)
    procs, ports = [], []
    try:
        for i in range(n):
            state = work / f"mx-{i + 1}"
            state.mkdir()
            port = free_port()
            own = dict(env, GATEWAY__SMTP__LISTEN=f"127.0.0.1:{port}", GATEWAY__INSTANCE__NAME=f"mx-{i + 1}",
                       GATEWAY__OUTBOUND__MAILDIR=str(state / "sent"))
            procs.append(start([sys.executable, "-m", "gateway", "serve"], own, state / "gateway.log", state))
            ports.append(port)
        engine = create_engine(url)
        t0 = time.perf_counter()
        secs, lat, errors = asyncio.run(run_client(ports, msgs, conns))
        waiting = text("SELECT count(*) FROM inbound_mail WHERE status IN ('queued', 'processing')")
        with engine.connect() as conn:
            while conn.execute(waiting).scalar_one():
                conn.commit()
                time.sleep(0.1)
            e2e = time.perf_counter() - t0
            rows = conn.execute(text("SELECT count(*) FROM inbound_mail")).scalar_one()
            twice = conn.execute(text(
                "SELECT count(*) FROM (SELECT message_id FROM inbound_mail WHERE status = 'done' "
                "AND ticket_id IS NOT NULL AND message_id IS NOT NULL GROUP BY message_id "
                "HAVING count(*) > 1) d")).scalar_one()
        engine.dispose()
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(120) for p in procs]
    ok = rows == len(msgs) and twice == 0 and not errors and codes == [0] * n
    return {"instances": n, "accepted_per_s": len(lat) / secs, "p50_ms": pct(lat, 0.5) * 1000,
            "p99_ms": pct(lat, 0.99) * 1000, "e2e_per_s": len(msgs) / e2e,
            "check": "ok" if ok else f"FAILED rows={rows} twice={twice} errors={len(errors)} exits={codes}"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--instances", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--connections", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=1, help="rounds per instance count (medians printed)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    msgs = load_corpus(args.messages, args.seed, work)
    results = []
    with PgCluster() as pg:
        for n in args.instances:
            rounds = []
            for r in range(args.rounds):
                run_dir = work / f"n{n}-r{r}"
                run_dir.mkdir()
                rounds.append(run(n, msgs, pg.create_database(), run_dir, args.connections))
                print(f"  {rounds[-1]}", flush=True)
            med = {k: statistics.median(float(x[k]) for x in rounds)
                   for k in ("accepted_per_s", "p50_ms", "p99_ms", "e2e_per_s")}
            checks = {str(x["check"]) for x in rounds}
            results.append((n, med, "ok" if checks == {"ok"} else "; ".join(sorted(checks))))
    print(f"\n{args.messages} corpus messages, {args.connections} connections spread over the instances, "
          "PostgreSQL 15, blobs in the database")
    print(f"{'instances':>9} {'accepted/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'e2e/s':>7}  check")
    for n, med, check in results:
        print(f"{n:>9} {med['accepted_per_s']:>10.0f} {med['p50_ms']:>7.1f} {med['p99_ms']:>7.1f} "
              f"{med['e2e_per_s']:>7.0f}  {check}")
    return 0 if all(check == "ok" for *_, check in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
