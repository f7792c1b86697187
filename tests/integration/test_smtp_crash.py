"""``gateway serve`` as a real process: SIGKILL while clients send 1,000
messages, restart, and check that every acknowledged message has exactly
one effect and that retrying the unacknowledged ones creates no second
effect. Also: SIGTERM lets an open SMTP transaction finish and exits 0.
On SQLite and PostgreSQL."""

from __future__ import annotations

import random
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from netutil import free_port
from sqlalchemy import create_engine, text

from gateway.app import App
from gateway.settings import Settings
from tests.corpus.generate import generate
from tests.gatewayproc import child_env

DESK = "servicedesk@xitrust.com"


class Server:
    """``python -m gateway serve`` configured through the environment."""

    def __init__(self, db_url: str, tmp_path: Path) -> None:
        self.port = free_port()
        self.tmp_path = tmp_path
        self.env = child_env()
        self.env.update(
            GATEWAY__DATABASE__URL=db_url,
            GATEWAY__STORAGE__BLOBS=str(tmp_path / "blobs"),
            GATEWAY__OUTBOUND__MAILDIR=str(tmp_path / "sent"),
            GATEWAY__SMTP__LISTEN=f"127.0.0.1:{self.port}",
            GATEWAY__WEB__LISTEN="",
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.log = self.tmp_path / f"serve-{self.starts}.log"
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve"], env=self.env, cwd=self.tmp_path,
                stdout=subprocess.DEVNULL, stderr=err,
            )
        deadline = time.monotonic() + 60
        while b"listening on 127.0.0.1:" not in self.log.read_bytes():
            assert self.proc.poll() is None, f"serve exited: {self.log.read_text()}"
            assert time.monotonic() < deadline, f"serve not ready: {self.log.read_text()}"
            time.sleep(0.05)

    def workers(self) -> list[int]:
        """Pids of the daemon's child processes (its pipeline workers)."""
        assert self.proc is not None
        pid = self.proc.pid
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.signal(signal.SIGTERM)
        return self.wait(60)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


@pytest.fixture
def server(db_url: str, tmp_path: Path, clean_env: None) -> Iterator[Server]:
    settings = Settings(database={"url": db_url}, storage={"blobs": str(tmp_path / "blobs")})
    app = App(settings)
    app.db_upgrade()  # PostgreSQL needs it; `serve` migrates SQLite itself
    app.engine.dispose()
    srv = Server(db_url, tmp_path)
    try:
        yield srv
    finally:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait(10)


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, bytes]]:
    """(Message-ID, raw bytes) of 1,000 realistic messages (tests/corpus)."""
    out = []
    for eml, _ in generate(1000, 2):
        raw = re.sub(rb"\r?\n", b"\r\n", eml)  # on the wire, lines end in CRLF
        mid = next(
            line.split(b":", 1)[1].strip().decode()
            for line in raw.split(b"\n")
            if line.lower().startswith(b"message-id:")
        )
        out.append((mid, raw))
    assert len(out) == 1000 and len({m for m, _ in out}) == 1000
    return out


def send_all(
    port: int,
    messages: list[tuple[str, bytes]],
    connections: int,
    acked: set[str],
    stop_after: int | None = None,
    on_threshold: threading.Event | None = None,
) -> list[str]:
    """Send over several connections; record the Message-IDs answered 250.
    A connection that breaks (the server was killed) ends its thread; a
    refusal is an error (returned)."""
    lock = threading.Lock()
    errors: list[str] = []

    def worker(chunk: list[tuple[str, bytes]]) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
                for mid, raw in chunk:
                    c.sendmail("sender@example.net", [DESK], raw)
                    with lock:
                        acked.add(mid)
                        if stop_after is not None and on_threshold and len(acked) >= stop_after:
                            on_threshold.set()
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code != 421:
                errors.append(repr(exc))
        except (smtplib.SMTPServerDisconnected, OSError):
            pass  # killed: the rest of the chunk is unacknowledged
        finally:
            if on_threshold is not None:
                with lock:
                    done[0] += 1
                    if done[0] == connections:
                        on_threshold.set()  # everyone stopped: do not wait for nothing

    done = [0]

    threads = [threading.Thread(target=worker, args=(messages[i::connections],)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return errors


def wait_processed(db_url: str, timeout: float = 300) -> None:
    engine = create_engine(db_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            with engine.connect() as conn:
                left = conn.execute(
                    text("SELECT count(*) FROM inbound_mail WHERE status IN ('queued', 'processing')")
                ).scalar_one()
            if left == 0:
                return
            assert time.monotonic() < deadline, f"{left} messages still unprocessed"
            time.sleep(0.5)
    finally:
        engine.dispose()


def effects(db_url: str) -> tuple[Counter[str], list[tuple[str, str, str]]]:
    """Effects per Message-ID (a ticket, a comment or an ignored entry that
    is not a duplicate), and every row for diagnostics."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = [
                (str(r[0]), str(r[1]), str(r[2]))
                for r in conn.execute(text("SELECT message_id, status, disposition FROM inbound_mail"))
            ]
    finally:
        engine.dispose()
    counts: Counter[str] = Counter(
        mid for mid, status, disp in rows
        if status in ("done", "ignored") and not disp.startswith("ignored: duplicate")
    )
    return counts, rows


def test_sigkill_while_receiving_loses_nothing_and_duplicates_nothing(
    server: Server, corpus: list[tuple[str, bytes]], db_url: str
) -> None:
    server.start()
    acked: set[str] = set()
    threshold = threading.Event()
    kill_at = random.Random(7).randint(300, 600)
    errors: list[str] = []
    sender = threading.Thread(
        target=lambda: errors.extend(send_all(server.port, corpus, 8, acked, kill_at, threshold))
    )
    sender.start()
    assert threshold.wait(120)
    assert len(acked) >= kill_at, f"only {len(acked)} messages acknowledged"
    workers = server.workers()
    assert workers, "no worker processes"
    server.signal(signal.SIGKILL)
    server.wait(30)
    # The workers die with the daemon (they ignore SIGTERM, and idle they
    # would otherwise live on with their database connections).
    deadline = time.monotonic() + 10
    while (alive := [p for p in workers if Path(f"/proc/{p}").exists() and not _zombie(p)]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert alive == [], "worker processes outlived the killed daemon"
    sender.join(120)
    first_acked = set(acked)
    assert errors == []
    assert kill_at <= len(first_acked) < len(corpus), "the kill came too late to test anything"

    # Restart: the queued rows (and those a killed worker held) are processed.
    server.start()
    wait_processed(db_url)
    counts, rows = effects(db_url)
    assert not [r for r in rows if r[1] == "quarantined"], "quarantined messages"
    wrong = {mid: counts[mid] for mid in first_acked if counts[mid] != 1}
    assert not wrong, f"acknowledged messages without exactly one effect: {list(wrong.items())[:5]}"

    # The client retries what was not acknowledged (some of it may have been
    # committed just before the kill): still one effect per message.
    retry = [(mid, raw) for mid, raw in corpus if mid not in first_acked]
    retried: set[str] = set()
    assert send_all(server.port, retry, 4, retried) == []
    assert len(retried) == len(retry)
    wait_processed(db_url)
    counts, rows = effects(db_url)
    wrong = {mid: counts[mid] for mid, _ in corpus if counts[mid] != 1}
    assert not wrong, f"messages without exactly one effect: {list(wrong.items())[:5]}"
    assert server.stop() == 0


def test_sigterm_finishes_open_transaction_then_exits_0(server: Server, db_url: str) -> None:
    server.start()
    raw = (
        b"From: anna@bauwerk-ag.de\r\nTo: servicedesk@xitrust.com\r\nSubject: Bitte um Hilfe\r\n"
        b"Message-ID: <sigterm-1@bauwerk-ag.de>\r\n\r\nDer Export bricht ab.\r\n"
    )
    c = smtplib.SMTP("127.0.0.1", server.port, timeout=30)
    c.ehlo("mx")
    assert c.mail("anna@bauwerk-ag.de")[0] == 250
    assert c.rcpt(DESK)[0] == 250
    idle = smtplib.SMTP("127.0.0.1", server.port, timeout=30)  # no transaction: closed at once
    server.signal(signal.SIGTERM)
    # no longer accepting (how soon depends on the machine's load: poll)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
        except OSError:
            break
        assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
        time.sleep(0.1)
    assert c.data(raw)[0] == 250  # the open transaction completes
    try:
        code = idle.noop()[0]  # the 421 the server sent before closing
    except smtplib.SMTPServerDisconnected:
        code = 421
    assert code == 421
    c.close()
    idle.close()
    assert server.wait(60) == 0
    log = server.log.read_text()
    assert "Traceback" not in log
    # Restart: whatever was still queued gets processed.
    server.start()
    wait_processed(db_url)
    counts, _ = effects(db_url)
    assert counts["<sigterm-1@bauwerk-ag.de>"] == 1
    assert server.stop() == 0


def test_repeated_sigterm_while_stopping_still_exits_0(server: Server, db_url: str) -> None:
    """An impatient operator (or a harness) sends SIGTERM again and again:
    the daemon keeps stopping in order and exits 0, never dies of the
    signal's default action halfway through (a second SIGTERM used to land
    after the loop's handlers were removed and kill it with -15)."""
    server.start()
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as c:
        c.sendmail("anna@bauwerk-ag.de", [DESK], b"Subject: x\r\nMessage-ID: <again@b.de>\r\n\r\nHallo\r\n")
    assert server.proc is not None
    deadline = time.monotonic() + 60
    sent = 0
    while server.proc.poll() is None:
        server.signal(signal.SIGTERM)
        sent += 1
        assert time.monotonic() < deadline, "still running a minute after SIGTERM"
        time.sleep(0.002)
    assert sent > 1
    assert server.proc.returncode == 0, server.log.read_text()[-2000:]
    assert "Traceback" not in server.log.read_text()
    server.start()  # and nothing it accepted is lost
    wait_processed(db_url)
    counts, _ = effects(db_url)
    assert counts["<again@b.de>"] == 1
    assert server.stop() == 0
