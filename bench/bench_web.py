"""SMTP latency with and without load on the portal, in one run: does page
work (templates, argon2 password checks, sessions in the database) slow
down the desk's SMTP listener? The portal runs in processes of its own
(``gateway serve`` starts them), so it should not.

One ``gateway serve`` (SQLite in a temp dir, portal on, 1 portal process);
rounds alternate: 32 SMTP connections send the corpus with the portal idle,
then again while 16 browser-like clients load pages as fast as they can
(the home page, the sign-in form, and sign-in attempts with a wrong
password, each an argon2 verification). Prints SMTP msg/s and p50/p99 per
round kind (medians over rounds) and the pages/s the portal served.

    python bench/bench_web.py [--n 1000] [--rounds 3] [--web-clients 16]
                              [--page-rate 30] [--no-sign-in]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

from bench_smtp import free_port, load_corpus, pct, run_client, start

CSRF = re.compile(rb'name="csrf_token" value="([^"]+)"')


def load_process(base: str, clients: int, seconds_file: str, sign_in: bool, rate: float) -> None:
    """The page load, in a process of its own: its threads must not share
    a GIL with the SMTP client whose latencies are measured. Runs until
    SIGTERM; writes the pages it got served to ``seconds_file``."""
    # Browsers are on other machines: this stand-in for them gets only the
    # CPU the server leaves (on a 2-core VM it would otherwise compete with
    # the very listener it is meant to disturb only through the server).
    os.nice(19)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    served = [0] * clients
    pause = clients / rate if rate else 0.0  # seconds between one client's pages
    threads = [threading.Thread(target=page_load, args=(base, stop, served, i, sign_in, pause))
               for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    Path(seconds_file).write_text(str(sum(served)))


def page_load(
    base: str, stop: threading.Event, served: list[int], n: int, sign_in: bool, pause: float
) -> None:
    """One browser: home, the sign-in form, a wrong sign-in (argon2), again;
    ``pause`` seconds between pages (0: as fast as the server answers)."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    count = 0
    while not stop.is_set():
        try:
            opener.open(base + "/", timeout=10).read()
            stop.wait(pause)
            form = opener.open(base + "/login", timeout=10).read()
            stop.wait(pause)
            if not sign_in:
                count += 2
                continue
            m = CSRF.search(form)
            data = urllib.parse.urlencode({
                "csrf_token": m.group(1).decode() if m else "", "email": f"bench{n}-{count}@example.org",
                "password": "not the password", "next": "/",
            }).encode()
            try:
                opener.open(base + "/login", data=data, timeout=10).read()
            except urllib.error.HTTPError as exc:  # 400: wrong password, as intended
                exc.read()
            count += 3
            stop.wait(pause)
        except OSError:
            time.sleep(0.05)
    served[n] = count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="messages per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--web-clients", type=int, default=16)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-sign-in", action="store_true", help="page views only (no argon2, no writes)")
    ap.add_argument("--page-rate", type=float, default=0.0,
                    help="pages per second over all web clients (0: as fast as the portal answers)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        msgs = load_corpus(args.n, args.seed, work)
        smtp_port, web_port = free_port(), free_port()
        env = dict(os.environ)
        env.update(
            GATEWAY__DATABASE__URL=f"sqlite:///{work / 'gateway.db'}",
            GATEWAY__STORAGE__BLOBS=str(work / "blobs"),
            GATEWAY__STORAGE__STATE_DIR=str(work),
            GATEWAY__OUTBOUND__MAILDIR=str(work / "sent"),
            GATEWAY__SMTP__LISTEN=f"127.0.0.1:{smtp_port}",
            GATEWAY__SMTP__MAX_CONNECTIONS_PER_IP=str(max(20, args.connections)),
            GATEWAY__WEB__LISTEN=f"127.0.0.1:{web_port}",
            GATEWAY__METRICS__LISTEN="",
            # Every sign-in attempt should reach argon2, not the rate limit.
            GATEWAY__SECURITY__MAX_LOGIN_ATTEMPTS_PER_HOUR="1000000",
            GATEWAY__SECURITY__MAX_CLIENT_REQUESTS_PER_HOUR="1000000",
            GATEWAY_LOG_LEVEL="WARNING",
        )
        gw = start([sys.executable, "-m", "gateway", "serve"], env, work / "gateway.log", work)
        base = f"http://127.0.0.1:{web_port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/login", timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the portal did not start") from None
                time.sleep(0.2)
        results: dict[str, list[tuple[float, float, float]]] = {"idle portal": [], "busy portal": []}
        pages: list[float] = []
        try:
            for r in range(args.rounds):
                for kind in ("idle portal", "busy portal"):
                    loader = None
                    count_file = work / f"pages-{r}"
                    if kind == "busy portal":
                        load_args = (base, args.web_clients, str(count_file), not args.no_sign_in,
                                     args.page_rate)
                        spawn = multiprocessing.get_context("spawn")
                        loader = spawn.Process(target=load_process, args=load_args)
                        loader.start()
                        time.sleep(1.0)  # the load is running before the mail starts
                    t0 = time.perf_counter()
                    secs, lat, errors = asyncio.run(run_client(smtp_port, msgs, args.connections))
                    if loader is not None:
                        assert loader.pid is not None
                        os.kill(loader.pid, signal.SIGTERM)
                        loader.join(60)
                        pages.append(int(count_file.read_text()) / (time.perf_counter() - t0 + 1.0))
                    if errors:
                        print(f"round {r + 1} {kind}: {len(errors)} errors, e.g. {errors[0]}")
                    rate, p50, p99 = len(lat) / secs, pct(lat, 0.5) * 1000, pct(lat, 0.99) * 1000
                    results[kind].append((rate, p50, p99))
                    print(f"[{r + 1}] {kind:12s} {rate:7.0f} msg/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms"
                          + (f"   portal {pages[-1]:.0f} pages/s" if loader is not None else ""))
        finally:
            gw.send_signal(signal.SIGTERM)
            code = gw.wait(60)
        print()
        for kind, rows in results.items():
            rate = statistics.median(r[0] for r in rows)
            p50 = statistics.median(r[1] for r in rows)
            p99 = statistics.median(r[2] for r in rows)
            print(f"{kind:12s} SMTP {rate:7.0f} msg/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms"
                  f"  (median of {len(rows)})")
        print(f"portal under load: {statistics.median(pages):.0f} pages/s"
              " (home, sign-in form, wrong sign-in)")
        print(f"gateway exit code: {code}; cpus {os.cpu_count()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
