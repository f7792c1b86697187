"""IMAP polling against a real Dovecot (tests/dovecot.py), on SQLite and
PostgreSQL where the database matters: mail becomes tickets, flags and
folders, exactly once through a poller killed between the spool commit and
the flag update, a recreated folder (new UIDVALIDITY), a Dovecot restart
during a poll, IDLE (push, renewal, BYE), a wrong password, oversize mail,
TLS and STARTTLS, a server without MOVE, and the scheduler wiring where a
broken mailbox does not stop the others."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dovecot import USER, Dovecot, DovecotError
from loopwatch import LoopWatch
from privileges import require_root, require_tool
from sqlalchemy import func, select

from gateway.app import App
from gateway.ingress.imap import Poller, modified_utf7, parse_bodies, uid_set
from gateway.settings import ImapSettings
from gateway.store.imap_cursors import load_cursor, record_status
from gateway.store.models import ImapCursor
from gateway.store.repo import MAIL, TICKET
from gateway.store.spool import Spool

DESK = "servicedesk@xitrust.com"
ALIAS = "support-tech@xitrust.com"
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


# -- fixtures and helpers ----------------------------------------------------


def _start(tls: bool) -> Dovecot:
    require_root("the test Dovecot drops to the user nobody, which owns its mailbox")
    require_tool("dovecot", "dovecot-imapd")
    try:
        server = Dovecot(tls=tls)
    except DovecotError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        server.start()
    except DovecotError as exc:
        server.cleanup()
        pytest.fail(f"cannot start the test Dovecot: {exc}", pytrace=False)
    return server


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    server = _start(tls=False)
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def dovecot_tls() -> Iterator[Dovecot]:
    server = _start(tls=True)
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def desk(app: App) -> Iterator[App]:
    """The app with a second routed address (a per-type alias)."""
    settings = app.settings.model_copy(update={"routing": {DESK: "other", ALIAS: "technical_support"}})
    routed = App(settings)
    try:
        yield routed
    finally:
        if "engine" in routed.__dict__:
            routed.engine.dispose()


def message(
    n: int, body: str = "Der Export nach PDF bricht ab.", sender: str = "anna@bauwerk-ag.de"
) -> bytes:
    return (
        f"From: Anna Berger <{sender}>\r\nTo: {DESK}\r\nSubject: Problem {n}\r\n"
        f"Message-ID: <imap-{n}@bauwerk-ag.de>\r\nDate: Fri, 27 Nov 2026 09:30:00 +0100\r\n"
        f"\r\n{body}\r\nMessage {n}.\r\n"
    ).encode()


def imap_cfg(server: Dovecot, **over: Any) -> ImapSettings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port,
        "tls": "none",
        "username": USER,
        "password_file": str(server.password_file),
        "poll_seconds": 60,
        "idle": False,
    }
    values.update(over)
    return ImapSettings(**values)


def make_poller(app: App, cfg: ImapSettings, max_size: int | None = None, **kw: Any) -> Poller:
    poller = Poller(
        cfg,
        Spool(app.engine, app.blobs),
        max_message_size=max_size or app.settings.smtp.max_message_size,
        timeout=5.0,
        **kw,
    )
    poller.backoff_base = 0.05
    poller.backoff_max = 0.2
    poller.auth_retry = 0.2
    return poller


def poll_once(poller: Poller) -> int:
    """One poll() on a fresh event loop, then close(); what poll() returned."""

    async def go() -> int:
        try:
            return await poller.poll()
        finally:
            await poller.close()

    return asyncio.run(go())


def retry_now(poller: Poller) -> None:
    """Skip the backoff wait (tests call poll() themselves)."""
    poller._not_before = 0.0


def spool_count(app: App) -> int:
    with app.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(MAIL)).scalar_one())


def ticket_count(app: App) -> int:
    with app.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(TICKET)).scalar_one())


def dispositions(app: App) -> list[str]:
    with app.engine.connect() as conn:
        return [r[0] for r in conn.execute(select(MAIL.c.disposition).order_by(MAIL.c.id))]


def cursor_row(app: App, poller: Poller) -> Any:
    with app.engine.connect() as conn:
        table = ImapCursor.__table__  # type: ignore[attr-defined]
        return conn.execute(select(table).where(table.c.mailbox == poller.key)).one()


async def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


def imap_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "gateway.imap" and r.levelno >= level]


# -- pure helpers --------------------------------------------------------------


def test_uid_set_compacts_ranges() -> None:
    assert uid_set([5, 1, 2, 3, 9, 7, 8]) == "1:3,5,7:9"
    assert uid_set([4]) == "4"


def test_parse_bodies_uid_before_or_after_literal() -> None:
    lines = [
        b"1 FETCH (UID 7 BODY[] {3}",
        bytearray(b"abc"),
        b")",
        b"2 FETCH (BODY[] {2}",
        bytearray(b"de"),
        b" UID 9)",
        b"3 FETCH (FLAGS (\\Seen))",
        b"Fetch completed.",
    ]
    assert parse_bodies(lines) == [(7, b"abc"), (9, b"de")]


# -- mail in, tickets out --------------------------------------------------------


def test_mail_becomes_tickets_then_seen_and_moved(desk: App, dovecot: Dovecot) -> None:
    dovecot.append([message(1), message(2), message(3)])
    poller = make_poller(desk, imap_cfg(dovecot, recipient=ALIAS, trusted=True))

    assert poll_once(poller) == 3
    assert dovecot.messages("INBOX") == []
    moved = dovecot.messages("Processed")  # created by the poller
    assert [raw for _, _, raw in moved] == [message(1), message(2), message(3)]
    assert all("\\Seen" in flags for _, flags, _ in moved)

    counts = desk.runner().drain()
    assert counts["done"] == 3
    with desk.engine.connect() as conn:
        rows = conn.execute(select(MAIL.c.source, MAIL.c.recipient, MAIL.c.trusted)).all()
        types = {r[0] for r in conn.execute(select(TICKET.c.request_type))}
    assert {tuple(r) for r in rows} == {("imap", ALIAS, True)}
    assert types == {"technical_support"}  # the mailbox's recipient picks the request type
    row = cursor_row(desk, poller)
    assert (row.uidvalidity, row.last_uid) == (dovecot.uidvalidity("INBOX"), 3)
    assert row.last_success_at is not None and row.last_error is None


def test_killed_between_commit_and_flag_is_exactly_once(app: App, dovecot: Dovecot) -> None:
    """The poller dies right after the first spool commit, at the \\Seen
    update (its task is cancelled there, as at a shutdown or crash). A new
    poller only finishes the messages: no second spool row, one ticket
    each."""
    raws = [message(n) for n in range(1, 13)]  # two fetch batches
    dovecot.append(raws)
    cfg = imap_cfg(dovecot)

    async def crash() -> None:
        poller = make_poller(app, cfg)

        async def die(uids: list[int]) -> None:
            assert spool_count(app) == 10  # committed just before
            raise asyncio.CancelledError

        poller._finish = die  # type: ignore[method-assign]
        with pytest.raises(asyncio.CancelledError):
            await asyncio.create_task(poller.poll())

    asyncio.run(crash())
    assert spool_count(app) == 10  # the first batch was committed ...
    left = dovecot.messages("INBOX")
    assert len(left) == 12 and not any("\\Seen" in f for _, f, _ in left)  # ... and not flagged

    async def after_restart() -> int:
        poller = make_poller(app, cfg)
        try:
            return await poller.poll()
        finally:
            await poller.close()

    assert asyncio.run(after_restart()) == 2  # only the second batch is new
    assert spool_count(app) == 12
    assert dovecot.messages("INBOX") == []
    assert sorted(raw for _, _, raw in dovecot.messages("Processed")) == sorted(raws)
    app.runner().drain()
    assert ticket_count(app) == 12
    assert all(d.startswith("created") for d in dispositions(app))


def test_recreated_folder_new_uidvalidity_no_duplicates(
    app: App, dovecot: Dovecot, caplog: pytest.LogCaptureFixture
) -> None:
    folder = "Kunden Support"  # a space: names are quoted
    dovecot.append([message(1), message(2), message(3)], folder=folder)
    poller = make_poller(app, imap_cfg(dovecot, folder=folder))

    async def poll_until_empty() -> int:
        total = 0
        for _ in range(5):  # after the folder is deleted under it, a poll may fail first
            retry_now(poller)
            total += await poller.poll()
            if not dovecot.messages(folder):
                break
        return total

    async def once() -> int:
        try:
            return await poll_until_empty()
        finally:
            await poller.close()  # a connection belongs to its event loop

    before = dovecot.uidvalidity(folder)
    assert asyncio.run(once()) == 3
    app.runner().drain()
    assert ticket_count(app) == 3

    # An admin restores the folder from a backup: deleted, recreated, the
    # same three messages appended again, plus one new one.
    restored = [raw for _, _, raw in dovecot.messages("Processed")]
    dovecot.delete(folder)
    dovecot.append([*restored, message(4)], folder=folder)
    assert dovecot.uidvalidity(folder) != before

    caplog.set_level(logging.INFO, logger="gateway.imap")
    assert asyncio.run(once()) == 4  # rescanned from UID 1 ...
    app.runner().drain()
    assert ticket_count(app) == 4  # ... and the copies were dropped as duplicates
    assert sum(d.startswith("ignored: duplicate") for d in dispositions(app)) == 3
    assert any("UIDVALIDITY changed" in r.getMessage() for r in caplog.records)
    assert cursor_row(app, poller).uidvalidity == dovecot.uidvalidity(folder)


def test_dovecot_restart_during_poll(app: App, dovecot: Dovecot) -> None:
    """Dovecot stops right after the second batch is committed (before its
    flags are set); the poll fails cleanly; after the restart the next poll
    finishes the second batch and fetches the third. 25 messages, 25 spool
    rows, 25 tickets."""
    raws = [message(n) for n in range(1, 26)]
    dovecot.append(raws)
    commits: list[list[int]] = []

    def on_commit(ids: list[int]) -> None:
        commits.append(ids)
        if len(commits) == 2:
            dovecot.stop()  # blocks the loop briefly: fine in a test

    poller = make_poller(app, imap_cfg(dovecot), on_commit=on_commit)

    async def first() -> int:
        try:
            return await poller.poll()
        finally:
            await poller.close()

    assert asyncio.run(first()) == 0  # failed, logged, not raised
    assert poller.stats["failures"] == 1
    assert spool_count(app) == 20
    assert cursor_row(app, poller).last_error
    dovecot.start()
    assert len(dovecot.messages("INBOX")) == 15  # batch 2 spooled, not moved

    async def second() -> int:
        retry_now(poller)
        try:
            return await poller.poll()
        finally:
            await poller.close()

    assert asyncio.run(second()) == 5
    assert spool_count(app) == 25
    assert dovecot.messages("INBOX") == []
    assert len(dovecot.messages("Processed")) == 25
    app.runner().drain()
    assert ticket_count(app) == 25


# -- IDLE ----------------------------------------------------------------------------


@sqlite_only
def test_idle_push_and_bye_on_restart(app: App, dovecot: Dovecot) -> None:
    poller = make_poller(app, imap_cfg(dovecot, idle=True, poll_seconds=3600))
    assert poller.idle_renew_seconds() < 29 * 60

    async def go() -> None:
        task = asyncio.create_task(poller.run_idle())
        try:
            await wait_until(lambda: poller.stats["idle_started"] >= 1, 10, "IDLE")
            await asyncio.to_thread(dovecot.append, [message(1)])
            took = await wait_until(lambda: poller.stats["spooled"] >= 1, 5, "the pushed message")
            assert took < 5
            # Dovecot says BYE to IDLE clients when it stops; the task
            # reconnects with backoff once it is back.
            await asyncio.to_thread(dovecot.restart)
            await wait_until(
                lambda: poller.stats["connects"] >= 2 and poller.stats["idle_started"] >= 2, 15, "reconnect"
            )
            await asyncio.to_thread(dovecot.append, [message(2)])
            await wait_until(lambda: poller.stats["spooled"] >= 2, 5, "mail after the restart")
            # spooled is counted at the commit; \Seen and the move come right
            # after it: cancelling before them would leave message 2 in INBOX
            # (correctly: a later poll finishes it) and fail the check below.
            await wait_until(lambda: poller.stats["finished"] >= 2, 5, "mail after the restart moved")
            assert not task.done()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await poller.close()

    asyncio.run(go())
    assert spool_count(app) == 2
    assert dovecot.messages("INBOX") == []


@sqlite_only
def test_idle_is_renewed(app: App, dovecot: Dovecot) -> None:
    poller = make_poller(app, imap_cfg(dovecot, idle=True, poll_seconds=3600))
    poller.idle_renew = 0.3  # stands in for the 25 minutes

    async def go() -> None:
        task = asyncio.create_task(poller.run_idle())
        try:
            await wait_until(lambda: poller.stats["idle_started"] >= 4, 10, "IDLE renewals")
            assert poller.stats["connects"] == 1 and poller.stats["failures"] == 0
            await asyncio.to_thread(dovecot.append, [message(1)])
            await wait_until(lambda: poller.stats["spooled"] >= 1, 5, "mail after renewals")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await poller.close()

    asyncio.run(go())


# -- faults ------------------------------------------------------------------------


@sqlite_only
def test_wrong_password_one_line_per_attempt(
    app: App, dovecot: Dovecot, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password\n")
    dovecot.append([message(1)])
    poller = make_poller(app, imap_cfg(dovecot, password_file=str(wrong), idle=True))
    caplog.set_level(logging.DEBUG)

    async def go() -> None:
        task = asyncio.create_task(poller.run_idle())
        try:
            await wait_until(lambda: poller.stats["failures"] >= 3, 10, "three attempts")
            assert not task.done()  # never a crash
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(go())
    lines = imap_records(caplog, logging.WARNING)
    attempts = poller.stats["failures"]
    assert len(lines) in (attempts, attempts + 1)  # the attempt under way at the cancel may be logged
    assert len(lines) >= 3
    for rec in lines:
        assert rec.levelno == logging.ERROR and rec.exc_info is None
        assert f"login as {USER} refused" in rec.getMessage() and "not the password" not in rec.getMessage()
    assert "refused" in cursor_row(app, poller).last_error
    assert spool_count(app) == 0 and len(dovecot.messages("INBOX")) == 1

    # The slower retry: with the real delay, an immediate poll does not
    # even try (no new connection, no new log line).
    poller.auth_retry = 300.0

    async def twice() -> tuple[int, int]:
        retry_now(poller)
        await poller.poll()
        connects = poller.stats["connects"]
        await poller.poll()
        return connects, poller.stats["connects"]

    first, second = asyncio.run(twice())
    assert first == second


@sqlite_only
def test_oversize_left_untouched(app: App, dovecot: Dovecot, caplog: pytest.LogCaptureFixture) -> None:
    big = message(1, body="x" * 5000)
    dovecot.append([big, message(2)])
    poller = make_poller(app, imap_cfg(dovecot), max_size=2000)
    caplog.set_level(logging.INFO, logger="gateway.imap")

    async def go() -> tuple[int, int]:
        try:
            first = await poller.poll()
            return first, await poller.poll()
        finally:
            await poller.close()

    assert asyncio.run(go()) == (1, 0)
    left = dovecot.messages("INBOX")
    assert [raw for _, _, raw in left] == [big]
    assert left[0][1] <= {"\\Recent"}  # no \Seen, nothing
    warned = [r for r in imap_records(caplog, logging.WARNING) if "not processed" in r.getMessage()]
    assert len(warned) == 1  # once, not every poll
    assert spool_count(app) == 1
    # The cursor stays below the parked message: raising the limit later
    # must not make it look already spooled.
    assert cursor_row(app, poller).last_uid == 0

    bigger = make_poller(app, imap_cfg(dovecot), max_size=10_000)

    async def raised() -> int:
        try:
            return await bigger.poll()
        finally:
            await bigger.close()

    assert asyncio.run(raised()) == 1
    assert dovecot.messages("INBOX") == [] and spool_count(app) == 2


@sqlite_only
def test_oversize_moved_to_configured_folder(app: App, dovecot: Dovecot) -> None:
    big = message(1, body="x" * 5000)
    dovecot.append([big, message(2)])
    poller = make_poller(app, imap_cfg(dovecot, oversize_folder="Too Big"), max_size=2000)

    assert poll_once(poller) == 1
    assert dovecot.messages("INBOX") == []
    assert [raw for _, _, raw in dovecot.messages("Too Big")] == [big]
    assert spool_count(app) == 1


@sqlite_only
def test_server_without_move_copies_and_expunges(
    app: App, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    poller = make_poller(app, imap_cfg(dovecot))
    connect = Poller._connect

    async def without_move(self: Poller) -> None:
        await connect(self)
        assert self._client is not None
        self._client.protocol.capabilities.discard("MOVE")

    monkeypatch.setattr(Poller, "_connect", without_move)
    dovecot.append([message(1), message(2)])

    assert poll_once(poller) == 2
    assert dovecot.messages("INBOX") == []
    assert len(dovecot.messages("Processed")) == 2


def test_modified_utf7_folder_names() -> None:
    """RFC 3501 5.1.3's own example and the German folder names mail
    clients create."""
    assert modified_utf7("~peter/mail/\u53f0\u5317/\u65e5\u672c\u8a9e") == "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    assert modified_utf7("Entwürfe") == "Entw&APw-rfe"
    assert modified_utf7("Gelöschte Elemente") == "Gel&APY-schte Elemente"
    assert modified_utf7("Tom & Jerry") == "Tom &- Jerry"
    assert modified_utf7("INBOX") == "INBOX"


@sqlite_only
def test_non_ascii_folders_on_a_real_server(app: App, dovecot: Dovecot) -> None:
    """Poll "Entwürfe" and move to "Gelöscht": the server sees the modified
    UTF-7 names (the test client names the folders by their encoded form)."""
    dovecot.append([message(1), message(2)], folder="Entw&APw-rfe")
    poller = make_poller(app, imap_cfg(dovecot, folder="Entwürfe", processed_folder="Gelöscht"))
    assert poll_once(poller) == 2
    assert dovecot.messages("Entw&APw-rfe") == []
    assert len(dovecot.messages("Gel&APY-scht")) == 2


@sqlite_only
def test_tls_and_starttls(app: App, dovecot_tls: Dovecot) -> None:
    """A server certificate from the test's own CA: trusted through the
    mailbox's ``ca_file`` setting, refused without it."""
    assert dovecot_tls.cafile is not None
    ca_file = str(dovecot_tls.cafile)
    dovecot_tls.append([message(1), message(2)])
    implicit = make_poller(
        app, imap_cfg(dovecot_tls, tls="tls", port=dovecot_tls.imaps_port, ca_file=ca_file)
    )
    starttls = make_poller(app, imap_cfg(dovecot_tls, tls="starttls", ca_file=ca_file))
    untrusted = make_poller(app, imap_cfg(dovecot_tls, tls="tls", port=dovecot_tls.imaps_port))

    async def go() -> list[int]:
        out = []
        for p in (untrusted, implicit, starttls):
            try:
                out.append(await p.poll())
                if p is implicit:
                    await asyncio.to_thread(dovecot_tls.append, [message(3)])
            finally:
                await p.close()
        return out

    assert asyncio.run(go()) == [0, 2, 1]
    assert untrusted.stats["failures"] == 1
    assert "certificate" in cursor_row(app, untrusted).last_error
    logins = [ln for ln in dovecot_tls.log_text().splitlines() if "Login: user=<" in ln]
    # Both pollers' logins (and the harness's) ran over TLS.
    assert len(logins) >= 2 and all(", TLS" in ln for ln in logins)


# -- the scheduler wiring --------------------------------------------------------------


@sqlite_only
def test_jobs_broken_mailbox_does_not_stop_the_others(app: App, dovecot: Dovecot, tmp_path: Path) -> None:
    from gateway import jobs

    dovecot.create("Polled")
    wrong = tmp_path / "wrong"
    wrong.write_text("nope")
    settings = app.settings.model_copy(
        update={
            "imap": [
                imap_cfg(dovecot, idle=True),
                imap_cfg(dovecot, folder="Polled", idle=False, poll_seconds=1),
                imap_cfg(dovecot, folder="Broken", password_file=str(wrong), idle=True),
                imap_cfg(dovecot, folder="Closed", port=1, idle=False, poll_seconds=1),
            ]
        }
    )
    wired = App(settings)
    kicks: list[list[int]] = []

    async def go() -> list[Poller]:
        scheduler = jobs.make_scheduler()
        scheduler.start()
        pollers = await jobs.start_imap(wired, scheduler, on_commit=kicks.append)
        try:
            await asyncio.to_thread(dovecot.append, [message(1)])
            await asyncio.to_thread(dovecot.append, [message(2)], "Polled")
            await wait_until(lambda: spool_count(wired) == 2, 10, "both good mailboxes")
            await wait_until(lambda: all(p.stats["failures"] for p in pollers[2:]), 10, "the broken ones")
        finally:
            await jobs.stop_imap(pollers, scheduler)
            scheduler.shutdown(wait=False)
        return pollers

    try:
        pollers = asyncio.run(go())
        assert sum(len(k) for k in kicks) == 2
        assert pollers[0].stats["idle_started"] >= 1
        for broken in pollers[2:]:
            assert cursor_row(wired, broken).last_error
    finally:
        wired.engine.dispose()


@sqlite_only
def test_loop_is_not_blocked_by_a_poll(app: App, dovecot: Dovecot) -> None:
    """asyncio debug mode reports callbacks that hold the loop; spooling 30
    messages (database commits) must not produce one."""
    dovecot.append([message(n) for n in range(30)])
    poller = make_poller(app, imap_cfg(dovecot))

    async def go() -> int:
        asyncio.get_running_loop().slow_callback_duration = 0.1
        try:
            return await poller.poll()
        finally:
            await poller.close()

    with LoopWatch(0.1) as watch:
        assert asyncio.run(go(), debug=True) == 30
    assert watch.held == []


def test_cursor_helpers_roundtrip(app: App) -> None:
    assert load_cursor(app.engine, "x@y:1/INBOX") is None
    record_status(app.engine, "x@y:1/INBOX", {"uidvalidity": 7, "last_uid": 3})
    record_status(app.engine, "x@y:1/INBOX", {"last_uid": 5})
    assert load_cursor(app.engine, "x@y:1/INBOX") == (7, 5)


@sqlite_only
def test_serve_reads_mailboxes_beside_the_smtp_listener(
    settings: Any, dovecot: Dovecot, tmp_path: Path
) -> None:
    """``gateway serve`` with one working and one broken mailbox: mail sent
    over SMTP and mail appended over IMAP both become tickets; SIGTERM
    stops it cleanly."""
    import signal
    import smtplib
    import subprocess
    import sys

    from netutil import free_port

    from gateway.store.db import make_engine

    smtp_port = free_port()
    db = tmp_path / "serve.db"
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""[database]
url = "sqlite:///{db}"
[storage]
blobs = "{tmp_path / "blobs"}"
[outbound]
maildir = "{tmp_path / "sent"}"
[smtp]
listen = "127.0.0.1:{smtp_port}"
[workers]
parse_processes = 1

[[imap]]
host = "127.0.0.1"
port = {dovecot.port}
tls = "none"
username = "{USER}"
password_file = "{dovecot.password_file}"
idle = true

[[imap]]
host = "127.0.0.1"
port = 1
tls = "none"
username = "{USER}"
password_file = "{tmp_path / "missing"}"
idle = false
poll_seconds = 1
"""
    )
    log = tmp_path / "serve.log"
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("GATEWAY")}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + 30
        while b"listening on 127.0.0.1:" not in log.read_bytes():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        with smtplib.SMTP("127.0.0.1", smtp_port) as client:
            client.sendmail("kai@bauwerk-ag.de", [DESK], message(1, sender="kai@bauwerk-ag.de"))
        dovecot.append([message(2)])
        engine = make_engine(f"sqlite:///{db}")
        try:
            deadline = time.monotonic() + 30
            while True:
                with engine.connect() as conn:
                    n = int(conn.execute(select(func.count()).select_from(TICKET)).scalar_one())
                if n == 2:
                    break
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            with engine.connect() as conn:
                sources = sorted(r[0] for r in conn.execute(select(MAIL.c.source)))
        finally:
            engine.dispose()
        assert sources == ["imap", "smtp"]
        # The move follows the spool commit; the ticket may be there first.
        deadline = time.monotonic() + 10
        while dovecot.messages("INBOX") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert dovecot.messages("INBOX") == []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "connection refused" in text and "Traceback" not in text
