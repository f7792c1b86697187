"""Where PostgreSQL processing waits: run ``bench_smtp.py`` (one round) on a
throwaway PostgreSQL 15 cluster and sample ``pg_stat_activity`` every 20 ms
meanwhile; print the processing rate, the backends' states and the most
frequent waits of active backends (wait event and statement).

    python bench/pg_waits.py                 # the default 2 workers
    python bench/pg_waits.py --workers 4

This is how the counter-row and account-insert waits were found (see the
runner's ``_create_accounts_ahead`` and ``numbering.number_pending``)."""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from pgcluster import PgCluster  # noqa: E402 - the tests' throwaway cluster

SAMPLE = """
SELECT coalesce(wait_event_type || ':' || wait_event, ''), state, left(query, 50)
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with PgCluster() as pg:
        url = pg.create_database()
        subprocess.run(
            [sys.executable, "-m", "gateway", "db", "upgrade"], cwd=ROOT, check=True,
            env={**env, "GATEWAY__DATABASE__URL": url},
        )
        states: collections.Counter[str] = collections.Counter()
        waits: collections.Counter[tuple[str, str]] = collections.Counter()
        stop = threading.Event()

        def sample() -> None:
            with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
                while not stop.is_set():
                    for event, state, query in conn.execute(SAMPLE):
                        states[state] += 1
                        if state == "active" and event and not event.startswith("Client"):
                            waits[(event, query)] += 1
                    time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            out = subprocess.run(
                [sys.executable, str(ROOT / "bench" / "bench_smtp.py"), "--rounds", "1", "--n", str(args.n),
                 "--db-url", url, "--set", f"GATEWAY__WORKERS__PARSE_PROCESSES={args.workers}"],
                cwd=ROOT, capture_output=True, text=True, env=env, check=True,
            )
        finally:
            stop.set()
            sampler.join()
    print("\n".join(line for line in out.stdout.splitlines() if "processing" in line or "ratio" in line))
    print("backend states (samples):", dict(states))
    print("waits of active backends (samples, event, statement):")
    for (event, query), count in waits.most_common(12):
        print(f"{count:6d}  {event:28s} {query}")


if __name__ == "__main__":
    main()
