"""The customer portal at scale, and SMTP latency with and without it, in
one run: how fast are a customer's request pages on a desk with history,
and does page work (templates, queries, sessions in the database) slow down
the desk's SMTP listener? The portal runs in processes of its own
(``gateway serve`` starts them), so it should not.

One ``gateway serve`` (SQLite in a temp dir, portal on, ``--web-processes``
portal processes) on a database first migrated (``gateway db upgrade``)
and then seeded by ``seed_desk.py``: ``--tickets`` tickets, ``--accounts``
accounts in organizations, comments, attachment rows; the ticket counter
continues after the seeded keys, so mail in the same run makes new tickets.

The load (``--load requests``, the default): ``--web-clients`` customers
(one per client; each sees a few hundred requests, their own and their
organization's) sign in (``POST /login`` with the form's CSRF token), then
load pages as fast as the portal answers (or ``--page-rate`` pages/s in
all), one page after the other on a keep-alive connection, in turn:

    /requests                     the default list (open, all I may see)
    /requests?status=all&page=3   paging deep into everything
    /requests?q=<word>            a search
    /requests?status=closed       the closed ones
    /requests/<KEY>               one of their requests
    /                             the home page

The clients are one asyncio process of their own (``--client-nice``, 19 as
the portal's browsers are on other machines: it gets only the CPU the
server leaves). Latency is from sending a request to the last byte of its
page. As fast as the portal answers, it is mostly waiting in line: with N
clients and a portal that serves S pages/s, a page takes about N / S (16
clients, 100 pages/s: 160 ms), so compare pages/s, or pace the clients
with ``--page-rate`` to see a page's own time.

``--load agents``: the clients are the seeded agents (each signed in more
than once) loading the queue (default, unassigned by priority, a search,
page 40 of everything) and ticket pages (``/agent/tickets/<KEY>``).

``--load sign-in`` is the earlier load instead: the home page, the sign-in
form and sign-in attempts with a wrong password (argon2 each).

Phases: first ``--portal-seconds`` of page load alone; then ``--rounds``
rounds that alternate 32 SMTP connections sending the corpus with the
portal idle and again with the page load running.

Prints the seeding time and what the measured customers see; p50/p99 and
count per page kind and pages/s, for the portal alone and while mail
arrives; SMTP msg/s and p50/p99 per round kind (medians over rounds); how
many tickets the mail made (numbered after the seeded ones).

The daemon and ``gateway db upgrade`` run the gateway of this checkout
(``PYTHONPATH``), whatever is installed in the virtualenv.

    python bench/bench_web.py                          # 10,000 tickets, 500 accounts: quick
    python bench/bench_web.py --tickets 100000 --accounts 5000
        [--n 1000] [--rounds 3] [--web-clients 16] [--web-processes 1]
        [--portal-seconds 15] [--page-rate 0] [--client-nice 19]
    python bench/bench_web.py --load sign-in [--no-sign-in]   # no seeding
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

from bench_smtp import free_port, load_corpus, pct, run_client, start
from corpus import ROOT

CSRF = re.compile(rb'name="csrf_token" value="([^"]+)"')
PAGE_KINDS = (
    ("list", "/requests"),
    ("list page 3", "/requests?status=all&page=3"),
    ("search", "/requests?q={word}"),
    ("closed", "/requests?status=closed"),
    ("detail", "/requests/{key}"),
    ("home", "/"),
)
# --load agents: the agents' queue and ticket pages (#15).
AGENT_PAGE_KINDS = (
    ("queue", "/agent"),
    ("queue unassigned by priority", "/agent?assignee=none&sort=priority"),
    ("queue search", "/agent?q={word}&status=all"),
    ("queue page 40", "/agent?status=all&page=40"),
    ("agent ticket", "/agent/tickets/{key}"),
)


# -- the customers' load: signed in, browsing their requests -----------------


class Browser:
    """One customer's browser: one keep-alive HTTP/1.1 connection and its
    cookies. Just enough HTTP for the portal's pages (Content-Length or
    chunked bodies, Set-Cookie name=value)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.cookies: dict[str, str] = {}
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def close(self) -> None:
        if self.conn is not None:
            self.conn[1].close()
            self.conn = None

    async def request(self, path: str, form: dict[str, str] | None = None) -> tuple[int, bytes]:
        body = urllib.parse.urlencode(form).encode() if form is not None else b""
        lines = [f"{'POST' if form is not None else 'GET'} {path} HTTP/1.1",
                 f"Host: {self.host}:{self.port}", "Accept-Language: de", "User-Agent: bench_web"]
        if self.cookies:
            lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        if form is not None:
            lines += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        for attempt in (1, 2):  # a keep-alive connection the server closed: once more
            if self.conn is None:
                self.conn = await asyncio.open_connection(self.host, self.port)
            reader, writer = self.conn
            try:
                writer.write(raw)
                return await self._response(reader)
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _response(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionError("closed")
        status = int(status_line.split()[1])
        length, chunked, close = 0, False, False
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif name == "connection":
                close = value.lower() == "close"
            elif name == "set-cookie":
                pair, _, attrs = value.partition(";")
                key, _, val = pair.partition("=")
                if "max-age=0" in attrs.lower().replace(" ", ""):
                    self.cookies.pop(key.strip(), None)
                else:
                    self.cookies[key.strip()] = val.strip().strip('"')
        if chunked:
            parts = []
            while size := int((await reader.readline()).split(b";")[0], 16):
                parts.append(await reader.readexactly(size))
                await reader.readline()
            await reader.readline()
            body = b"".join(parts)
        else:
            body = await reader.readexactly(length)
        if close:
            await self.close()
        return status, body


async def _customer(
    base: tuple[str, int], customer: dict[str, Any], password: str, words: list[str], pause: float,
    signed_in: asyncio.Barrier, stop: asyncio.Event, lat: dict[str, list[float]], errors: list[str],
    seed: int, kinds: list[tuple[str, str]],
) -> int:
    """Sign in, wait for the others, then browse until ``stop``; the pages
    it got."""
    rng = random.Random(seed)
    browser = Browser(*base)
    try:
        _, form = await browser.request("/login")
        m = CSRF.search(form)
        status, _ = await browser.request("/login", {
            "csrf_token": m.group(1).decode() if m else "", "email": customer["email"],
            "password": password, "next": "/requests",
        })
        if status != 303 or "gw_session" not in browser.cookies:
            raise SystemExit(f"sign-in of {customer['email']} failed: HTTP {status}")
        await signed_in.wait()
        pages = 0
        while not stop.is_set():
            for kind, pattern in kinds:
                path = pattern.format(word=rng.choice(words), key=rng.choice(customer["keys"]))
                t0 = time.perf_counter()
                try:
                    status, body = await browser.request(path)
                except (OSError, asyncio.IncompleteReadError) as exc:
                    errors.append(f"{path}: {exc!r}")
                    await asyncio.sleep(0.05)
                    continue
                lat[kind].append(time.perf_counter() - t0)
                pages += 1
                if status != 200 or (kind.endswith("detail") and path.rsplit("/", 1)[1].encode() not in body):
                    errors.append(f"{path}: HTTP {status}")
                if stop.is_set():
                    break
                if pause:
                    await asyncio.sleep(rng.uniform(0.5, 1.5) * pause)
        return pages
    finally:
        await browser.close()


def customers_process(base: tuple[str, int], plan_file: str, result_file: str, ready: Any,
                      client_nice: int, rate: float) -> None:
    """The customers' browsers, in a process of their own (so that they do
    not share a GIL with the SMTP client whose latencies are measured):
    sign in, set ``ready``, browse until SIGTERM; then write the latencies
    per page kind, the pages and the seconds browsed to ``result_file``."""
    os.nice(client_nice)
    plan = json.loads(Path(plan_file).read_text())
    customers = plan["customers"]
    pause = len(customers) / rate if rate else 0.0

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        kinds = [tuple(k) for k in plan["pages"]]
        lat: dict[str, list[float]] = {kind: [] for kind, _ in kinds}
        errors: list[str] = []
        signed_in = asyncio.Barrier(len(customers) + 1)
        tasks = [
            asyncio.create_task(_customer(base, c, plan["password"], plan["words"], pause, signed_in, stop,
                                          lat, errors, i, kinds))
            for i, c in enumerate(customers)
        ]
        await signed_in.wait()
        ready.set()
        t0 = time.perf_counter()
        pages = sum(await asyncio.gather(*tasks))
        return {"lat": lat, "pages": pages, "seconds": time.perf_counter() - t0, "errors": errors}

    Path(result_file).write_text(json.dumps(asyncio.run(main())))


class CustomerLoad:
    """One run of ``customers_process``: started, signed in, stopped, its figures."""

    def __init__(self, base: tuple[str, int], plan_file: Path, result_file: Path, args: argparse.Namespace):
        spawn = multiprocessing.get_context("spawn")
        self.ready = spawn.Event()
        self.result_file = result_file
        self.proc = spawn.Process(target=customers_process, args=(
            base, str(plan_file), str(result_file), self.ready, args.client_nice, args.page_rate))

    def start(self) -> None:
        self.proc.start()
        if not self.ready.wait(300):
            raise SystemExit("the customers did not sign in")

    def stop(self) -> dict[str, Any]:
        assert self.proc.pid is not None
        os.kill(self.proc.pid, signal.SIGTERM)
        self.proc.join(120)
        return dict(json.loads(self.result_file.read_text()))


# -- the earlier load: signing in, with a wrong password ------------------------


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


class SignInLoad:
    def __init__(self, base: str, count_file: Path, args: argparse.Namespace) -> None:
        spawn = multiprocessing.get_context("spawn")
        self.count_file = count_file
        self.proc = spawn.Process(target=load_process, args=(
            base, args.web_clients, str(count_file), not args.no_sign_in, args.page_rate))

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.proc.start()

    def stop(self) -> dict[str, Any]:
        assert self.proc.pid is not None
        os.kill(self.proc.pid, signal.SIGTERM)
        self.proc.join(60)
        pages = int(self.count_file.read_text())
        return {"lat": {}, "pages": pages, "seconds": time.perf_counter() - self.t0, "errors": []}


# -- the run ---------------------------------------------------------------------


def seed_store(work: Path, env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    """``gateway db upgrade`` as the daemon will see the database, then the
    seed; the plan the customers' process reads."""
    from seed_desk import PASSWORD, seed_database

    up = subprocess.run([sys.executable, "-m", "gateway", "db", "upgrade"], env=env, cwd=work,
                        capture_output=True, text=True)
    if up.returncode:
        raise SystemExit(f"gateway db upgrade failed:\n{up.stdout}{up.stderr}")
    done = seed_database(env["GATEWAY__DATABASE__URL"], tickets=args.tickets, accounts=args.accounts,
                         customers=args.web_clients)
    visible = sorted(c.visible for c in done.customers)
    print(f"seeded in {done.seconds:.1f} s: " + ", ".join(f"{v:,} {k}" for k, v in done.counts.items()))
    print(f"measured customers: {len(visible)}, each sees {visible[0]}..{visible[-1]} requests "
          f"(median {statistics.median(visible):.0f}), "
          f"{min(c.own for c in done.customers)}..{max(c.own for c in done.customers)} their own")
    if args.load == "agents":
        # As many agent sessions as clients (the seed has a few agents; each
        # signs in more than once, like an agent with two windows).
        rng = random.Random(args.seed)
        keys = [f"SD-{rng.randint(1, args.tickets)}" for _ in range(2000)]
        agents = [{"email": done.agents[i % len(done.agents)], "keys": keys} for i in range(args.web_clients)]
        return {"password": PASSWORD, "words": list(done.words), "pages": AGENT_PAGE_KINDS,
                "customers": agents}
    return {"password": PASSWORD, "words": list(done.words), "pages": PAGE_KINDS,
            "customers": [{"email": c.email, "keys": c.keys} for c in done.customers]}


def mail_tickets(db_url: str, seeded: int) -> str:
    """What the mail of this run made: tickets numbered after the seed."""
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            made = text("SELECT count(*), min(number), max(number) FROM ticket WHERE number > :n")
            n, low, high = conn.execute(made, {"n": seeded}).one()
            pending = conn.execute(text("SELECT count(*) FROM ticket WHERE number < 0")).scalar_one()
    finally:
        engine.dispose()
    span = f" (SD-{low} .. SD-{high})" if n else ""
    return f"tickets made from mail in this run: {n}{span}; unnumbered: {pending}"


def report(title: str, runs: list[dict[str, Any]]) -> None:
    pages = sum(r["pages"] for r in runs)
    secs = sum(r["seconds"] for r in runs)
    errors = [e for r in runs for e in r["errors"]]
    print(f"portal, {title}: {pages / secs:.0f} pages/s over {secs:.0f} s, errors {len(errors)}"
          + (f" (e.g. {errors[0]})" if errors else ""))
    everything: list[float] = []
    for kind, pattern in (*PAGE_KINDS, *AGENT_PAGE_KINDS):
        lat = [x for r in runs for x in r["lat"].get(kind, [])]
        if not lat:
            continue
        everything += lat
        print(f"  {pattern.format(word='<word>', key='<KEY>'):38s} n {len(lat):6d}   "
              f"p50 {pct(lat, 0.5) * 1000:6.1f} ms   p99 {pct(lat, 0.99) * 1000:6.1f} ms")
    if everything:
        print(f"  {'every page':38s} n {len(everything):6d}   p50 {pct(everything, 0.5) * 1000:6.1f} ms   "
              f"p99 {pct(everything, 0.99) * 1000:6.1f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="messages per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--web-clients", type=int, default=16)
    ap.add_argument("--web-processes", type=int, default=1, help="[web] processes of the gateway")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--load", choices=("requests", "agents", "sign-in"), default="requests")
    ap.add_argument("--tickets", type=int, default=10_000, help="tickets seeded (--load requests)")
    ap.add_argument("--accounts", type=int, default=500, help="accounts seeded (--load requests)")
    ap.add_argument("--portal-seconds", type=float, default=15.0, help="page load alone, before the rounds")
    ap.add_argument("--client-nice", type=int, default=19, help="niceness of the customers' process")
    ap.add_argument("--no-sign-in", action="store_true", help="--load sign-in: page views only")
    ap.add_argument("--page-rate", type=float, default=0.0,
                    help="pages per second over all web clients (0: as fast as the portal answers)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        msgs = load_corpus(args.n, args.seed, work)
        smtp_port, web_port = free_port(), free_port()
        db_url = f"sqlite:///{work / 'gateway.db'}"
        env = dict(os.environ)
        env.update(
            # The daemon runs this tree's gateway, whatever is installed.
            PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
            GATEWAY__DATABASE__URL=db_url,
            GATEWAY__STORAGE__BLOBS=str(work / "blobs"),
            GATEWAY__STORAGE__STATE_DIR=str(work),
            GATEWAY__OUTBOUND__MAILDIR=str(work / "sent"),
            GATEWAY__SMTP__LISTEN=f"127.0.0.1:{smtp_port}",
            GATEWAY__SMTP__MAX_CONNECTIONS_PER_IP=str(max(20, args.connections)),
            GATEWAY__WEB__LISTEN=f"127.0.0.1:{web_port}",
            GATEWAY__WEB__PROCESSES=str(args.web_processes),
            GATEWAY__METRICS__LISTEN="",
            # Every sign-in attempt should reach argon2, not the rate limit.
            GATEWAY__SECURITY__MAX_LOGIN_ATTEMPTS_PER_HOUR="1000000",
            GATEWAY__SECURITY__MAX_CLIENT_REQUESTS_PER_HOUR="1000000",
            GATEWAY_LOG_LEVEL="WARNING",
        )
        plan_file = work / "plan.json"
        if args.load in ("requests", "agents"):
            plan_file.write_text(json.dumps(seed_store(work, env, args)))
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

        def load(name: str) -> CustomerLoad | SignInLoad:
            if args.load in ("requests", "agents"):
                return CustomerLoad(("127.0.0.1", web_port), plan_file, work / f"{name}.json", args)
            return SignInLoad(base, work / f"{name}.count", args)

        results: dict[str, list[tuple[float, float, float]]] = {"idle portal": [], "busy portal": []}
        alone: list[dict[str, Any]] = []
        busy: list[dict[str, Any]] = []
        try:
            if args.portal_seconds > 0:
                first = load("alone")
                first.start()
                time.sleep(args.portal_seconds)
                alone.append(first.stop())
                report(f"{args.web_clients} clients, no mail", alone)
            for r in range(args.rounds):
                for kind in ("idle portal", "busy portal"):
                    loader: CustomerLoad | SignInLoad | None = None
                    if kind == "busy portal":
                        loader = load(f"round-{r}")
                        loader.start()
                        time.sleep(1.0)  # the load is running before the mail starts
                    secs, lat, errors = asyncio.run(run_client(smtp_port, msgs, args.connections))
                    if loader is not None:
                        busy.append(loader.stop())
                    if errors:
                        print(f"round {r + 1} {kind}: {len(errors)} errors, e.g. {errors[0]}")
                    rate, p50, p99 = len(lat) / secs, pct(lat, 0.5) * 1000, pct(lat, 0.99) * 1000
                    results[kind].append((rate, p50, p99))
                    portal = ""
                    if loader is not None:
                        portal = f"   portal {busy[-1]['pages'] / busy[-1]['seconds']:.0f} pages/s"
                    print(f"[{r + 1}] {kind:12s} {rate:7.0f} msg/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms"
                          + portal, flush=True)
        finally:
            gw.send_signal(signal.SIGTERM)
            code = gw.wait(60)
        print()
        if args.load in ("requests", "agents"):
            if alone:
                report(f"{args.web_clients} clients, no mail", alone)
            report(f"{args.web_clients} clients, while mail arrives (the busy rounds)", busy)
        else:
            print(f"portal under load: {statistics.median(r['pages'] / r['seconds'] for r in busy):.0f} "
                  "pages/s (home, sign-in form, wrong sign-in)")
        for kind, rows in results.items():
            rate = statistics.median(r[0] for r in rows)
            p50 = statistics.median(r[1] for r in rows)
            p99 = statistics.median(r[2] for r in rows)
            print(f"{kind:12s} SMTP {rate:7.0f} msg/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms"
                  f"  (median of {len(rows)})")
        if args.load in ("requests", "agents"):
            print(mail_tickets(db_url, args.tickets))
        print(f"gateway exit code: {code}; cpus {os.cpu_count()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
