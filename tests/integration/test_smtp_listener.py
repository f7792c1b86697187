"""The SMTP/LMTP listener over real sockets on 127.0.0.1, with real clients
(smtplib, swaks, raw sockets for what clients refuse to send), on SQLite and
PostgreSQL: recipient policy, size, durability and 451 on trouble, LMTP,
STARTTLS, connection limits, timeouts, the two aiosmtpd CVEs, and an event
loop that is never blocked."""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from listeners import ThreadedListener
from loopwatch import LoopWatch
from privileges import require_tool
from sqlmodel import Session, select
from tlsutil import self_signed_cert

from gateway.app import App
from gateway.store.db import make_engine
from gateway.store.models import InboundMail
from gateway.store.spool import Spool

DESK = "servicedesk@xitrust.com"
ALIAS = "support-tech@xitrust.com"


def message(n: int = 1, body: str = "Hallo, der Drucker druckt nicht.") -> bytes:
    return (
        f"From: Anna Berger <anna@bauwerk-ag.de>\r\nTo: {DESK}\r\nSubject: Problem {n}\r\n"
        f"Message-ID: <listener-{n}@bauwerk-ag.de>\r\nDate: Fri, 27 Nov 2026 09:30:00 +0100\r\n"
        f"\r\n{body}\r\n"
    ).encode()


class RunningListener(ThreadedListener):
    """The production Listener in its own loop thread, with the desk
    address and the alias routed."""

    def __init__(self, app: App, **kw: Any) -> None:
        super().__init__(app, routing={DESK: "other", ALIAS: "technical_support"}, **kw)


@pytest.fixture
def listener(app: App) -> Iterator[RunningListener]:
    with RunningListener(app) as running:
        yield running


def spooled(app: App) -> list[InboundMail]:
    with Session(app.engine) as s:
        return list(s.exec(select(InboundMail).order_by(InboundMail.id)))  # type: ignore[arg-type]


def raw_of(app: App, row: InboundMail) -> bytes:
    assert row.id is not None
    return Spool(app.engine, app.blobs).read_raw(row.id)


class Raw:
    """A line-oriented raw SMTP client for what smtplib will not send."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self) -> bytes:
        """A whole (multi-line) reply; its lines joined by \\n."""
        lines = [self.line()]
        while lines[-1][3:4] == b"-":
            lines.append(self.line())
        return b"\n".join(lines)

    def cmd(self, data: bytes) -> bytes:
        self.send(data + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.sock.close()

    @classmethod
    @contextlib.contextmanager
    def greeted(cls, host: str, port: int) -> Iterator[Raw]:
        """Connected, greeting read, EHLO done; closed afterwards."""
        c = cls(host, port)
        try:
            c.reply()
            c.cmd(b"EHLO mx")
            yield c
        finally:
            c.close()


# -- acceptance and recipients -------------------------------------------------


def test_accepts_desk_mail_durably_with_smtplib(app: App, listener: RunningListener) -> None:
    raw = message()
    with listener.client() as c:
        c.ehlo("mx.example.net")
        refused = c.sendmail("anna@bauwerk-ag.de", [DESK], raw)
        assert refused == {}
    rows = spooled(app)
    assert len(rows) == 1
    row = rows[0]
    assert (row.source, row.status, row.envelope_from, row.recipient) == (
        "smtp", "queued", "anna@bauwerk-ag.de", DESK,
    )
    assert raw_of(app, row) == raw  # byte for byte, CRLF kept


def test_recipients_case_insensitive_alias_wins_and_no_relay(app: App, listener: RunningListener) -> None:
    with listener.client() as c:
        c.ehlo("mx.example.net")
        assert c.mail("anna@bauwerk-ag.de")[0] == 250
        assert c.rcpt("ServiceDesk@XiTrust.COM")[0] == 250
        assert c.rcpt(ALIAS.upper())[0] == 250
        code, text = c.rcpt("victim@example.org")
        assert (code, text[:5]) == (550, b"5.1.1")
        code, text = c.rcpt("servicedesk@xitrust.com.evil.example")
        assert code == 550
        assert c.data(message())[0] == 250
    (row,) = spooled(app)
    assert row.recipient == ALIAS  # the routing alias picks the request type


def test_nul_in_the_message_id_is_accepted_on_every_backend(app: App, listener: RunningListener) -> None:
    """Issue #10.5: on PostgreSQL this was a 451 forever (a text column
    cannot hold NUL), and it failed every message committed with it."""
    raw = message().replace(b"Message-ID: <", b"Message-ID: <nul\x00")
    assert b"\x00" in raw
    with listener.client() as c:
        assert c.sendmail("anna@bauwerk-ag.de", [DESK], raw) == {}
    (row,) = spooled(app)
    assert row.message_id is not None and "\x00" not in row.message_id
    assert raw_of(app, row) == raw  # the raw bytes are kept as they came


def test_sub_addresses_of_desk_addresses_are_the_desk(app: App, listener: RunningListener) -> None:
    with listener.client() as c:
        c.ehlo("mx.example.net")
        assert c.mail("anna@bauwerk-ag.de")[0] == 250
        assert c.rcpt("servicedesk+sd-12@xitrust.com")[0] == 250
        assert c.rcpt("support-tech+x@XiTrust.com")[0] == 250
        assert c.rcpt("+x@xitrust.com")[0] == 550
        assert c.rcpt("servicedesk+x@evil.example")[0] == 550
        assert c.data(message())[0] == 250
    (row,) = spooled(app)
    assert row.recipient == "support-tech+x@xitrust.com"  # routed by its alias


def test_relay_attempt_with_only_foreign_recipients_is_refused(app: App, listener: RunningListener) -> None:
    with listener.client() as c, pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
        c.sendmail("spammer@example.com", ["victim@example.org"], message())
    assert exc.value.recipients["victim@example.org"][0] == 550
    assert spooled(app) == []


def test_too_many_recipients_452(app: App) -> None:
    with RunningListener(app, max_recipients=2) as running, running.client() as c:
        c.ehlo("mx")
        c.mail("anna@bauwerk-ag.de")
        assert c.rcpt(DESK)[0] == 250
        assert c.rcpt(ALIAS)[0] == 250
        assert c.rcpt(DESK)[0] == 452
        assert c.data(message())[0] == 250
    assert len(spooled(app)) == 1


def test_null_sender_is_accepted_for_bounces(app: App, listener: RunningListener) -> None:
    with listener.client() as c:
        c.sendmail("<>", [DESK], message())
    (row,) = spooled(app)
    assert row.envelope_from == "<>"


def test_swaks_real_client(app: App, listener: RunningListener) -> None:
    swaks = require_tool("swaks")
    base = [swaks, "--server", f"{listener.host}:{listener.port}", "--from", "kai@bauwerk-ag.de",
            "--header", "Subject: via swaks", "--body", "Grüße aus dem Test", "--timeout", "10"]
    ok = subprocess.run([*base, "--to", DESK], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "<-  250 2.0.0 OK: queued" in ok.stdout
    bad = subprocess.run([*base, "--to", "root@example.org"], capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0
    assert "550 5.1.1" in bad.stdout
    assert len(spooled(app)) == 1


# -- size ------------------------------------------------------------------------


def test_size_announced_and_enforced_connection_stays_usable(app: App) -> None:
    with RunningListener(app, max_message_size=10_000) as running, running.client() as c:
        code, text = c.ehlo("mx")
        assert code == 250 and b"SIZE 10000" in text
        assert c.has_extn("size")
        # Announced size too big: refused at MAIL.
        assert c.mail("anna@bauwerk-ag.de", ["SIZE=20000"])[0] == 552
        c.rset()
        # Not announced, but too much data: refused after DATA.
        assert c.mail("anna@bauwerk-ag.de")[0] == 250
        assert c.rcpt(DESK)[0] == 250
        code, _ = c.data(message(1, "x" * 900 + ("\r\n" + "y" * 900) * 20))
        assert code == 552
        # The same connection goes on.
        assert c.noop()[0] == 250
        assert c.sendmail("anna@bauwerk-ag.de", [DESK], message(2)) == {}
    assert [r.id for r in spooled(app)] and len(spooled(app)) == 1


# -- durability and trouble ------------------------------------------------------


def test_database_trouble_is_451_generic_and_retry_works(app: App, tmp_path: Path) -> None:
    """SQLite: another process holds the write lock (database locked).
    PostgreSQL: the configured server is not there (database down). Both
    are real failures, not mocks."""
    url = app.settings.database.url
    lock: sqlite3.Connection | None = None
    if url.startswith("sqlite"):
        engine = make_engine(url, busy_timeout_ms=200)
        lock = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead_port = s.getsockname()[1]
        engine = make_engine(f"postgresql+psycopg://nobody@127.0.0.1:{dead_port}/gateway")
    try:
        with RunningListener(app, engine=engine) as running, running.client() as c:
            c.ehlo("mx")
            c.mail("anna@bauwerk-ag.de")
            c.rcpt(DESK)
            code, text = c.data(message())
            assert code == 451
            assert text == b"4.3.0 Temporary failure, please try again later"  # no internals
            if lock is not None:
                lock.execute("ROLLBACK")
                lock.close()
                lock = None
                # The session is reset and usable: the client's retry is accepted.
                assert c.sendmail("anna@bauwerk-ag.de", [DESK], message()) == {}
                assert len(spooled(app)) == 1
            else:
                assert c.noop()[0] == 250
    finally:
        if lock is not None:
            lock.close()
        engine.dispose()


def test_group_commit_batches_concurrent_sessions(app: App, listener: RunningListener) -> None:
    n_conn, per_conn = 16, 8

    def send(k: int) -> None:
        with listener.client() as c:
            for i in range(per_conn):
                assert c.sendmail("anna@bauwerk-ag.de", [DESK], message(k * 100 + i)) == {}

    threads = [threading.Thread(target=send, args=(k,)) for k in range(n_conn)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    committer = listener.listener.committer
    assert committer.committed == n_conn * per_conn == len(spooled(app))
    assert committer.batches < committer.committed  # several messages per commit


# -- LMTP ---------------------------------------------------------------------


def test_lmtp_replies_per_recipient(app: App) -> None:
    with RunningListener(app, lmtp=True) as running:
        c = Raw(running.host, running.port)
        try:
            assert c.reply().startswith(b"220")
            assert c.cmd(b"EHLO mx").startswith(b"500")  # LMTP speaks LHLO only
            assert b"SIZE" in c.cmd(b"LHLO mx.example.net")
            assert c.cmd(b"MAIL FROM:<anna@bauwerk-ag.de>").startswith(b"250")
            assert c.cmd(b"RCPT TO:<servicedesk@xitrust.com>").startswith(b"250")
            assert c.cmd(b"RCPT TO:<nobody@xitrust.com>").startswith(b"550 5.1.1")
            assert c.cmd(b"RCPT TO:<Support-Tech@xitrust.com>").startswith(b"250")
            assert c.cmd(b"DATA").startswith(b"354")
            c.send(message() + b".\r\n")
            # One reply per accepted recipient, then the session goes on.
            assert c.line() == b"250 2.0.0 OK: queued"
            assert c.line() == b"250 2.0.0 OK: queued"
            assert c.cmd(b"NOOP").startswith(b"250")
            assert c.cmd(b"QUIT").startswith(b"221")
        finally:
            c.close()
    (row,) = spooled(app)
    assert (row.source, row.recipient) == ("lmtp", ALIAS)


# -- TLS ----------------------------------------------------------------------


def client_tls(cert: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cert)
    ctx.check_hostname = False
    return ctx


def test_starttls_then_mail(app: App, tmp_path: Path) -> None:
    cert, key = map(str, self_signed_cert(tmp_path))
    with RunningListener(app, tls_cert=cert, tls_key=key) as running, running.client() as c:
        c.ehlo("mx")
        assert c.has_extn("starttls")
        assert c.starttls(context=client_tls(cert))[0] == 220
        c.ehlo("mx")
        assert not c.has_extn("starttls")
        # No AUTH offered (nobody logs in to the desk), and none accepted.
        assert not c.has_extn("auth"), c.esmtp_features
        assert c.docmd("AUTH", "PLAIN AGFub24AeA==")[0] == 504
        assert c.sendmail("anna@bauwerk-ag.de", [DESK], message()) == {}
    assert len(spooled(app)) == 1


def test_starttls_command_injection_is_not_executed(app: App, tmp_path: Path) -> None:
    """CVE-2024-34083: commands pipelined after STARTTLS in the same
    plaintext packet must be discarded, not run inside the TLS session."""
    cert, key = map(str, self_signed_cert(tmp_path))
    with RunningListener(app, tls_cert=cert, tls_key=key) as running:
        c = Raw(running.host, running.port)
        try:
            c.reply()
            c.cmd(b"EHLO mx")
            c.send(b"STARTTLS\r\nNOOP\r\nMAIL FROM:<injected@evil.example>\r\n")
            assert c.line().startswith(b"220")
            tls = client_tls(cert).wrap_socket(c.sock, server_hostname="localhost")
            tls.settimeout(0.7)
            with pytest.raises(TimeoutError):
                leaked = tls.recv(4096)  # a reply to the injected NOOP would be here
                pytest.fail(f"server answered injected commands: {leaked!r}")
            tls.settimeout(10)
            c.sock, c.buf = tls, b""
            assert c.cmd(b"EHLO mx").startswith(b"250")
            # Accepted: no injected MAIL FROM is pending ("503 nested MAIL").
            assert c.cmd(b"MAIL FROM:<anna@bauwerk-ag.de>").startswith(b"250")
            assert c.cmd(b"QUIT").startswith(b"221")
            tls.close()
        finally:
            c.close()
    assert spooled(app) == []


# -- SMTP smuggling (CVE-2024-27305) ---------------------------------------------


@pytest.mark.parametrize("fake_end", [b"\n.\r\n", b"\r.\n", b"\r\n.\n", b"\n.\n"])
def test_smuggling_bare_lf_cr_dot_does_not_end_data(
    app: App, listener: RunningListener, fake_end: bytes
) -> None:
    smuggled = (
        b"MAIL FROM:<ceo@xitrust.com>\r\nRCPT TO:<servicedesk@xitrust.com>\r\nDATA\r\n"
        b"From: ceo@xitrust.com\r\nSubject: smuggled\r\n\r\nSMUGGLED\r\n"
    )
    body = message().rstrip(b"\r\n") + fake_end + smuggled + b".\r\n"
    with Raw.greeted(listener.host, listener.port) as c:
        assert c.cmd(b"MAIL FROM:<anna@bauwerk-ag.de>").startswith(b"250")
        assert c.cmd(b"RCPT TO:<servicedesk@xitrust.com>").startswith(b"250")
        assert c.cmd(b"DATA").startswith(b"354")
        c.send(body)
        assert c.reply().startswith(b"250")  # one message, one reply
        assert c.cmd(b"QUIT").startswith(b"221")
    rows = spooled(app)
    assert len(rows) == 1, "the message was split in two"
    assert b"SMUGGLED" in raw_of(app, rows[0])


def test_malformed_addresses_get_a_permanent_answer_and_the_session_goes_on(
    app: App, listener: RunningListener
) -> None:
    """``MAIL FROM:<`` makes the stdlib address parser raise IndexError:
    stock aiosmtpd turns that into a session error (ours would say 451, and
    the client would retry forever). It is a malformed address: 553, and
    the next transaction on the same connection works."""
    with Raw.greeted(listener.host, listener.port) as c:
        assert c.cmd(b"MAIL FROM:<").startswith(b"553")
        assert c.cmd(b"MAIL FROM:<anna@bauwerk-ag.de>").startswith(b"250")
        assert c.cmd(b"RCPT TO:<").startswith(b"553")
        assert c.cmd(b"RCPT TO:<servicedesk@xitrust.com>").startswith(b"250")
        assert c.cmd(b"DATA").startswith(b"354")
        c.send(message() + b".\r\n")
        assert c.reply().startswith(b"250")
    assert len(spooled(app)) == 1


# -- connection limits and timeouts ----------------------------------------------


def test_connection_limits_global_and_per_ip(app: App) -> None:
    with RunningListener(app, max_connections=3, max_connections_per_ip=2) as running:
        a, b = running.client(), running.client()
        with pytest.raises(smtplib.SMTPConnectError) as exc:
            running.client()
        assert exc.value.smtp_code == 421
        # 127.0.0.2 is another client IP: the per-IP limit does not apply,
        # the global one does.
        other = smtplib.SMTP(timeout=10, source_address=("127.0.0.2", 0))
        assert other.connect(running.host, running.port)[0] == 220
        with pytest.raises(smtplib.SMTPConnectError):
            smtplib.SMTP(running.host, running.port, timeout=10, source_address=("127.0.0.3", 0))
        a.quit()
        time.sleep(0.2)
        c = running.client()  # a slot is free again
        assert c.sendmail("anna@bauwerk-ag.de", [DESK], message()) == {}
        for s in (b, other, c):
            s.quit()


def test_command_and_data_timeouts_close_the_session(app: App) -> None:
    with RunningListener(app, command_timeout=0.5, data_timeout=1.0) as running:
        idle = Raw(running.host, running.port)
        idle.reply()
        time.sleep(1.0)
        with pytest.raises((ConnectionError, OSError)):
            idle.cmd(b"NOOP")
            idle.cmd(b"NOOP")
        idle.close()

        slow = Raw(running.host, running.port)
        slow.reply()
        slow.cmd(b"EHLO mx")
        slow.cmd(b"MAIL FROM:<anna@bauwerk-ag.de>")
        slow.cmd(b"RCPT TO:<servicedesk@xitrust.com>")
        assert slow.cmd(b"DATA").startswith(b"354")
        t0 = time.monotonic()
        with pytest.raises((ConnectionError, OSError)):
            for _ in range(10):  # a dribbling client: a line every 0.3 s
                slow.send(b"Subject: slow\r\n")
                time.sleep(0.3)
            slow.line()
        assert time.monotonic() - t0 < 3.5
        slow.close()
    assert spooled(app) == []


def test_junk_commands_without_a_message_end_the_session(app: App) -> None:
    """Issue #10.8: a client sending NOOP every few seconds passes every idle
    timeout; after the junk limit it gets 421. A delivered message resets
    the count (a busy MTA's RSET between messages is fine)."""
    with RunningListener(app, junk_command_limit=5) as running, Raw.greeted(running.host, running.port) as c:
        for _ in range(4):
            assert c.cmd(b"NOOP").startswith(b"250")
        assert c.cmd(b"MAIL FROM:<anna@bauwerk-ag.de>").startswith(b"250")
        assert c.cmd(b"RCPT TO:<servicedesk@xitrust.com>").startswith(b"250")
        assert c.cmd(b"DATA").startswith(b"354")
        assert c.cmd(message() + b".").startswith(b"250")
        for _ in range(5):  # counted afresh after the message
            assert c.cmd(b"RSET").startswith(b"250")
        assert c.cmd(b"VRFY anna").startswith(b"421 4.7.0")
        with pytest.raises((ConnectionError, OSError)):
            c.cmd(b"NOOP")
    assert len(spooled(app)) == 1


def test_a_session_has_a_deadline_but_a_message_in_flight_gets_its_answer(app: App) -> None:
    with RunningListener(app, max_session_seconds=1.0, command_timeout=30) as running:
        with Raw.greeted(running.host, running.port) as busy:
            deadline = time.monotonic() + 5
            with pytest.raises((ConnectionError, OSError)):
                while time.monotonic() < deadline:  # busy, but never done
                    reply = busy.cmd(b"EHLO mx")
                    if reply.startswith(b"421"):
                        assert reply.startswith(b"421 4.4.2"), reply
                        busy.cmd(b"NOOP")
                    time.sleep(0.1)
            assert time.monotonic() < deadline, "the session outlived its deadline"
        with Raw.greeted(running.host, running.port) as slow:
            slow.cmd(b"MAIL FROM:<anna@bauwerk-ag.de>")
            slow.cmd(b"RCPT TO:<servicedesk@xitrust.com>")
            assert slow.cmd(b"DATA").startswith(b"354")
            time.sleep(1.5)  # the deadline passes during DATA
            assert slow.cmd(message() + b".").startswith(b"250")  # acknowledged, then closed
            assert slow.line().startswith(b"421 4.4.2")
            with pytest.raises((ConnectionError, OSError)):
                slow.line()
    assert len(spooled(app)) == 1


# -- the loop is never blocked -------------------------------------------------------

LOAD_CLIENT = r"""
import smtplib, sys, threading
host, port, conns, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
body = ("x" * 70 + "\r\n") * 60
errors = []
def run(k):
    try:
        with smtplib.SMTP(host, port, timeout=30) as c:
            for i in range(per):
                msg = (f"From: a{k}@bauwerk-ag.de\r\nTo: servicedesk@xitrust.com\r\n"
                       f"Subject: load {k}/{i}\r\nMessage-ID: <load-{k}-{i}@test>\r\n\r\n{body}")
                c.sendmail(f"a{k}@bauwerk-ag.de", ["servicedesk@xitrust.com"], msg.encode())
    except Exception as exc:
        errors.append(repr(exc))
ts = [threading.Thread(target=run, args=(k,)) for k in range(conns)]
[t.start() for t in ts]
[t.join() for t in ts]
print("\n".join(errors))
sys.exit(1 if errors else 0)
"""


def test_daemon_never_blocks_the_loop_under_load(app: App) -> None:
    """The real daemon (listener, committer, pipeline workers) in asyncio
    debug mode, which reports every callback that runs longer than
    ``slow_callback_duration``: under load from 16 connections there must
    be none (fsync, database and parsing all happen off the loop)."""
    from gateway.daemon import Daemon

    settings = app.settings.model_copy(
        update={"smtp": app.settings.smtp.model_copy(update={"listen": "127.0.0.1:0"})}
    )
    daemon_app = App(settings)
    daemon_app.__dict__["engine"] = app.engine

    async def scenario() -> tuple[int, int, str]:
        loop = asyncio.get_running_loop()
        loop.slow_callback_duration = 0.05
        daemon = Daemon(daemon_app)
        run = asyncio.create_task(daemon.run())
        await asyncio.wait_for(daemon.ready.wait(), 60)
        host, port = daemon.listener.address
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-c", LOAD_CLIENT, host, str(port), "16", "25",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(client.communicate(), 240)
        # Let the workers run alongside for a while, then stop (SIGTERM path).
        await asyncio.sleep(3)
        daemon.request_stop()
        code = await asyncio.wait_for(run, 120)
        assert client.returncode is not None
        return code, client.returncode, out.decode()

    with LoopWatch(0.05) as watch:
        code, client_rc, client_out = asyncio.run(scenario(), debug=True)
    assert client_rc == 0, client_out
    assert code == 0
    rows = spooled(app)
    assert len(rows) == 16 * 25
    assert any(r.status != "queued" for r in rows), "the workers processed nothing"
    assert watch.held == []
