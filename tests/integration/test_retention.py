"""Retention ([retention], ``gateway retention run``, the daemon's daily job),
on SQLite and PostgreSQL: old processed mail loses its raw bytes and keeps
its mail log row, which says so (``mail show``, ``--raw``, reprocess, the
agent's raw link); recent, queued and quarantined mail keep theirs; bytes
another mail or an attachment shares stay, as do bytes a concurrent put
just asked for (file blobs: their time; database blobs: their lock);
sent and failed outbound mail lose their render data and Maildir copy,
queued mail nothing; one instance at a time on a shared PostgreSQL; and
``gateway serve`` runs it shortly after its start, with a log line and
metrics."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text, update
from test_portal_http import (
    Site,
    site as site,  # noqa: F401 - the fixture, shared
)
from test_portal_requests import ANNA, SAM, browser, build

from gateway import jobs, retention
from gateway.app import App
from gateway.settings import (
    ConfigError,
    InstanceSettings,
    RetentionSettings,
    Settings,
    StorageSettings,
    load_settings,
)
from gateway.store import repo, retention as store_retention
from gateway.store.blobs import FileBlobStore, sha256_hex
from gateway.store.db import connection
from gateway.store.repo import MAIL, OUTBOX
from gateway.store.spool import RawMailRemoved, SpoolItem
from tests.clicall import cli_config, gateway
from tests.gatewayproc import GatewayProcess

DAYS_AGO_100 = dt.timedelta(days=100)


def mail(n: int, *, sender: str = "anna@bauwerk-ag.de", headers: str = "",
         body: str = "Der Drucker druckt nicht.", attachment: bytes | None = None) -> bytes:
    head = (f"From: {sender}\r\nTo: servicedesk@xitrust.com\r\nSubject: Drucker {n}\r\n"
            f"Message-ID: <ret-{n}@bauwerk-ag.de>\r\n{headers}")
    if attachment is None:
        return f"{head}\r\n{body}\r\n".encode()
    data = base64.encodebytes(attachment).decode().replace("\n", "\r\n")
    return (
        f'{head}MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        f"--b\r\nContent-Type: text/plain\r\n\r\n{body}\r\n"
        "--b\r\nContent-Type: application/octet-stream\r\n"
        'Content-Disposition: attachment; filename="original.eml"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
        f"{data}--b--\r\n"
    ).encode()


def too_deep(depth: int = 40) -> bytes:
    """Nested past limits.max_depth: quarantined."""
    head = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(depth))
    tail = "".join(f"\r\n--b{i}--\r\n" for i in reversed(range(depth)))
    return (
        "From: kai@bauwerk-ag.de\r\nTo: servicedesk@xitrust.com\r\nSubject: deep\r\n"
        "Message-ID: <deep@bauwerk-ag.de>\r\nMIME-Version: 1.0\r\n" + head
        + "Content-Type: text/plain\r\n\r\nganz unten" + tail
    ).encode()


def spool(app: App, *raws: bytes, process: bool = True) -> list[int]:
    ids = app.spool.put_many([SpoolItem(raw=r, source="ingest") for r in raws])
    if process:
        app.runner().drain()
    return ids


def age(app: App, ids: list[int], by: dt.timedelta = DAYS_AGO_100, table: Any = MAIL,
        columns: tuple[str, ...] = ("received_at", "processed_at")) -> None:
    """Move the rows' timestamps ``by`` into the past (in Python: SQLite has
    no date arithmetic on its timestamp text), and a mail's blob file's with
    them (retention leaves recently written files alone)."""
    with connection(app.engine) as conn:
        rows = conn.execute(select(table.c.id, *(table.c[c] for c in columns)).where(table.c.id.in_(ids)))
        for row in rows.all():
            values = {c: row[i + 1] - by for i, c in enumerate(columns) if row[i + 1] is not None}
            conn.execute(update(table).where(table.c.id == row.id).values(**values))
        if table is MAIL and isinstance(app.blobs, FileBlobStore):
            for (digest,) in conn.execute(select(MAIL.c.raw_sha256).where(MAIL.c.id.in_(ids))):
                path = app.blobs.path_for(digest) if digest else None  # "": erased
                if path is not None and path.exists():
                    then = path.stat().st_mtime - by.total_seconds()
                    os.utime(path, (then, then))


def mail_row(app: App, mail_id: int) -> Any:
    with app.engine.connect() as conn:
        return conn.execute(select(MAIL).where(MAIL.c.id == mail_id)).one()


def blob_exists(app: App, digest: str) -> bool:
    try:
        with app.engine.connect() as conn:
            app.blobs.get(conn, digest)
    except KeyError:
        return False
    return True


def run(app: App, settings: Settings | None = None, **kwargs: Any) -> retention.Result:
    return retention.run(app.engine, app.blobs, settings or app.settings, **kwargs)


@pytest.fixture
def config(app: App, tmp_path: Path) -> str:
    return cli_config(app, tmp_path)


# -- raw mail -------------------------------------------------------------------


def test_old_processed_mail_loses_its_raw_bytes_and_keeps_its_log_entry(
    app: App, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    robot = mail(2, headers="Auto-Submitted: auto-replied\r\n")
    done, ignored, quarantined, recent = spool(app, mail(1), robot, too_deep(), mail(4))
    (queued,) = spool(app, mail(5), process=False)
    age(app, [done, ignored, quarantined])
    age(app, [queued])  # waiting in the spool for 100 days: still untouched
    statuses = {i: mail_row(app, i).status for i in (done, ignored, quarantined, recent, queued)}
    assert list(statuses.values()) == ["done", "ignored", "quarantined", "done", "queued"]
    digests = {i: mail_row(app, i).raw_sha256 for i in statuses}

    code, out, _ = gateway(config, capsys, "retention", "run", "--dry-run")
    assert code == 0
    assert out.strip() == ("retention (dry run): would remove 2 raw mails older than 90 days, "
                           "0 outbox bodies older than 30 days, 0 sent copies in the Maildir")
    assert mail_row(app, done).raw_removed_at is None

    result = run(app)
    assert (result.raw_mails, result.quarantined, result.skipped) == (2, 0, False)
    assert result.summary().startswith("retention: removed 2 raw mails older than 90 days, ")
    for gone in (done, ignored):
        assert mail_row(app, gone).raw_removed_at is not None
        assert not blob_exists(app, digests[gone])
        with pytest.raises(RawMailRemoved):
            app.spool.read_raw(gone)
    for kept in (quarantined, recent, queued):
        assert mail_row(app, kept).raw_removed_at is None
        assert app.spool.read_raw(kept)
    assert mail_row(app, queued).status == "queued"

    # The mail log keeps every entry, with what became of it.
    code, out, _ = gateway(config, capsys, "mail", "list", "--json")
    listed = {m["id"]: m for m in json.loads(out)}
    assert listed[done]["message_id"] == "<ret-1@bauwerk-ag.de>"
    assert listed[done]["from"] == "anna@bauwerk-ag.de"
    assert listed[done]["disposition"].startswith("created SD-")
    code, out, _ = gateway(config, capsys, "mail", "show", str(done))
    assert code == 0
    assert re.search(r"raw_removed_at +removed by retention on \d{4}-\d\d-\d\d, 100 days after processing "
                     r"\(\[retention\] raw_mail_days\)", out), out
    shown = json.loads(gateway(config, capsys, "mail", "show", str(done), "--json")[1])
    assert shown["raw_removed_at"] and shown["subject"] == "Drucker 1"
    kept = json.loads(gateway(config, capsys, "mail", "show", str(recent), "--json")[1])
    assert kept["raw_removed_at"] is None
    code, out, err = gateway(config, capsys, "mail", "show", str(done), "--raw")
    assert (code, out) == (1, "")
    assert "the raw message of mail" in err and "was removed by retention on" in err and "100 days" in err
    # Its ticket keeps the text.
    ticket = json.loads(gateway(config, capsys, "ticket", "show", "SD-1", "--json")[1])
    assert ticket["description"].strip() == "Der Drucker druckt nicht."
    # Nothing to reprocess from.
    code, out, _ = gateway(config, capsys, "mail", "reprocess", str(ignored), "--json")
    assert json.loads(out) == [
        {"id": ignored, "disposition": "unchanged: its raw message was removed by retention"}]

    # A second run finds nothing; quarantine_days takes the quarantined one.
    assert run(app).raw_mails == 0
    longer = app.settings.model_copy(update={"retention": RetentionSettings(quarantine_days=30)})
    result = run(app, longer)
    assert (result.raw_mails, result.quarantined) == (0, 1)
    assert "1 quarantined raw mails older than 30 days" in result.summary()
    assert mail_row(app, quarantined).status == "quarantined"  # still in the quarantine's list
    with pytest.raises(RawMailRemoved):
        app.spool.read_raw(quarantined)

    # 0: kept forever.
    forever = app.settings.model_copy(update={"retention": RetentionSettings(raw_mail_days=0, outbox_days=0)})
    age(app, [recent])
    result = run(app, forever)
    assert (result.raw_mails, result.maildir_copies) == (0, None)
    assert result.summary() == ("retention: removed nothing; kept: raw mails (raw_mail_days = 0), "
                                "outbox bodies (outbox_days = 0)")
    assert app.spool.read_raw(recent)


def test_many_mails_in_small_batches(app: App) -> None:
    """Batches go on where the last one ended, also past mail whose bytes
    stay (a put wanted them), until every due mail is done."""
    ids = spool(app, *(mail(n) for n in range(1, 21)))
    age(app, ids)
    assert isinstance(app.blobs, FileBlobStore)
    app.blobs.put(None, mail(3))  # wanted again just now: stays, its batch goes on
    result = run(app, batch=7)
    assert result.raw_mails == 19
    assert [i for i in ids if mail_row(app, i).raw_removed_at is None] == [ids[2]]
    assert not list(Path(app.settings.storage.blobs).glob("*/.expire-*"))


def test_bytes_other_mail_or_an_attachment_still_needs_stay(app: App) -> None:
    first, copy = spool(app, mail(1), mail(1))  # the same message twice: the copy is ignored
    assert mail_row(app, first).raw_sha256 == mail_row(app, copy).raw_sha256
    original = mail(2)
    forwarded = mail(3, body="Anbei die Originalnachricht.", attachment=original)  # an agent's way, too
    (source, holder) = spool(app, original, forwarded)
    age(app, [first, source])

    assert run(app).raw_mails == 2
    assert mail_row(app, first).raw_removed_at is not None
    assert app.spool.read_raw(copy) == mail(1)  # the copy's bytes are the same blob
    with app.engine.connect() as conn:
        assert app.blobs.get(conn, sha256_hex(original)) == original  # the attachment's
    assert app.spool.read_raw(holder) == forwarded

    age(app, [copy])
    assert run(app).raw_mails == 1
    assert not blob_exists(app, sha256_hex(mail(1)))  # now nobody needs them


def test_bytes_a_put_just_asked_for_stay_until_the_next_run(app: App) -> None:
    """File blobs: a put of bytes that exist (a new copy of an old message,
    its row not yet committed) makes them recent, and retention leaves
    recent files and their mail alone."""
    assert isinstance(app.blobs, FileBlobStore)
    (old,) = spool(app, mail(1))
    age(app, [old])
    digest = mail_row(app, old).raw_sha256
    path = app.blobs.path_for(digest)
    long_ago = time.time() - 100 * 86400
    os.utime(path, (long_ago, long_ago))

    app.blobs.put(None, mail(1))  # what the spool does before its transaction
    assert run(app).raw_mails == 0
    assert mail_row(app, old).raw_removed_at is None and path.exists()
    assert not list(path.parent.glob(".expire-*"))

    os.utime(path, (long_ago, long_ago))  # a day later, nobody wanted them again
    assert run(app).raw_mails == 1
    assert not path.exists() and not list(path.parent.glob(".expire-*"))


@pytest.fixture
def db_blobs_app(settings: Settings) -> Iterator[App]:
    application = App(settings.model_copy(update={"storage": StorageSettings(blobs="database")}))
    application.db_upgrade()
    try:
        yield application
    finally:
        application.engine.dispose()


def test_database_blobs(db_blobs_app: App) -> None:
    app = db_blobs_app
    first, copy, recent = spool(app, mail(1), mail(1), mail(2))
    age(app, [first])
    assert run(app).raw_mails == 1
    assert app.spool.read_raw(copy) == mail(1)
    age(app, [copy])
    assert run(app).raw_mails == 1
    assert not blob_exists(app, sha256_hex(mail(1)))
    assert app.spool.read_raw(recent) == mail(2)


def test_database_blobs_a_put_in_flight_keeps_its_bytes(pg_blobs_app: App) -> None:
    """A spool transaction that stores bytes retention is about to remove
    holds them locked; retention waits for its commit and then sees the new
    row that needs them."""
    app = pg_blobs_app
    (old,) = spool(app, mail(1))
    age(app, [old])
    results: list[retention.Result] = []
    runner = threading.Thread(target=lambda: results.append(run(app)))

    def while_uncommitted(conn: Any) -> None:
        runner.start()
        deadline = time.monotonic() + 20
        with app.engine.connect() as watcher:
            while True:
                waiting = watcher.execute(text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )).scalar()
                watcher.rollback()  # the view is a snapshot per transaction
                if waiting:
                    return
                assert time.monotonic() < deadline, "retention never waited for the spool's lock"
                time.sleep(0.05)

    (new,) = app.spool.put_many_with([SpoolItem(raw=mail(1), source="smtp")], while_uncommitted)
    runner.join(30)
    assert results and results[0].raw_mails == 1
    assert mail_row(app, old).raw_removed_at is not None
    assert app.spool.read_raw(new) == mail(1)  # the blob stayed for the new row
    assert app.runner().drain()["ignored"] == 1  # ... and it is processed (a duplicate)


# -- outbound mail ------------------------------------------------------------------


def outbox_row(app: App, row_id: int) -> Any:
    with app.engine.connect() as conn:
        return conn.execute(select(OUTBOX).where(OUTBOX.c.id == row_id)).one()


def test_sent_and_failed_outbound_mail_lose_their_body(
    app: App, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spool(app, mail(1, sender="kai@stranger.example"))  # a stranger: the signup invitation
    assert app.flush_outbox() == {"sent": 1}
    with app.engine.connect() as conn:
        (sent,) = [r[0] for r in conn.execute(select(OUTBOX.c.id))]
    now = dt.datetime.now(dt.UTC)
    with connection(app.engine) as conn:
        common = {"to_addr": "kai@stranger.example", "locale": "de", "ticket_id": 1, "cause_mail_id": None,
                  "automatic": True, "attempts": 1, "created_at": now, "next_attempt_at": now}
        failed = repo.insert_outbox(conn, template="comment_added", data={"comment_id": 7}, status="failed",
                                    **common)
        waiting = repo.insert_outbox(conn, template="comment_added", data={"comment_id": 8},
                                     status="retrying", **common)
        recent = repo.insert_outbox(conn, template="status_changed", data={"event": "resolved", "by": "Kai"},
                                    status="sent", **common)
    age(app, [sent, failed, waiting], dt.timedelta(days=40), OUTBOX, ("created_at", "sent_at"))
    copies = list(Path(app.settings.outbound.maildir, "new").iterdir())
    assert len(copies) == 1
    long_ago = time.time() - 40 * 86400
    os.utime(copies[0], (long_ago, long_ago))
    (Path(app.settings.outbound.maildir, "new") / "recent-copy").write_bytes(b"Subject: x\n\nx\n")

    result = run(app)
    assert (result.outbox_bodies, result.maildir_copies) == (2, 1)
    assert "2 outbox bodies older than 30 days, 1 sent copies in the Maildir" in result.summary()
    for gone in (sent, failed):
        row = outbox_row(app, gone)
        assert row.data == {} and row.body_removed_at is not None
    assert outbox_row(app, waiting).data == {"comment_id": 8}  # not final: it may still go out
    assert outbox_row(app, recent).data == {"event": "resolved", "by": "Kai"}
    assert sorted(p.name for p in Path(app.settings.outbound.maildir, "new").iterdir()) == ["recent-copy"]

    # The outbox still lists them; a mail without its body is not sent again.
    code, out, _ = gateway(config, capsys, "outbox", "list", "--json")
    assert [o["id"] for o in json.loads(out)] == [sent, failed, waiting, recent]
    assert json.loads(out)[0]["status"] == "sent"
    code, _, err = gateway(config, capsys, "outbox", "retry", str(failed))
    assert code == 1 and "retention removed its content on" in err and "outbox_days" in err
    assert outbox_row(app, failed).status == "failed"
    assert run(app).outbox_bodies == 0


# -- one instance at a time -----------------------------------------------------


def test_one_instance_at_a_time(app: App, config: str, capsys: pytest.CaptureFixture[str]) -> None:
    (old,) = spool(app, mail(1))
    age(app, [old])
    with store_retention.exclusive(app.engine) as mine:
        assert mine
        if app.engine.dialect.name == "postgresql":
            # Another instance (here: another connection) finds it taken and leaves the database alone.
            result = run(app)
            assert result.skipped and result.raw_mails == 0
            assert result.summary() == ("retention: another instance takes care of the database; "
                                        "removed 0 sent copies in the Maildir")
            assert mail_row(app, old).raw_removed_at is None
            code, out, _ = gateway(config, capsys, "retention", "run", "--json")
            assert code == 75 and json.loads(out)["skipped"] is True
    code, out, _ = gateway(config, capsys, "retention", "run", "--json")
    assert code == 0
    assert json.loads(out) == {"raw_mail_days": 90, "quarantine_days": 0, "outbox_days": 30, "raw_mails": 1,
                               "quarantined": 0, "outbox_bodies": 0, "maildir_copies": 0, "dry_run": False,
                               "skipped": False}


def test_among_daemons_the_lease_holder_does_the_database(
    settings: Settings, db_url: str, clean_env: None
) -> None:
    """Two daemons on one database: the one holding the ``retention`` lease
    does the database's part (each day, the same one), the other only its
    own Maildir."""
    from gateway.instance import Instance

    app = App(settings)
    app.db_upgrade()
    try:
        (old,) = spool(app, mail(1))
        age(app, [old])
        shared = settings.storage.model_copy(update={"shared": True})  # two instances, one blob directory
        first, second = (Instance(settings.model_copy(update={"instance": InstanceSettings(name=name),
                                                              "storage": shared}),
                                  app.engine) for name in ("gw-a", "gw-b"))
        first.register()
        second.register()
        done = asyncio.run(jobs.retention_turn(app, first))
        assert (done.skipped, done.raw_mails) == (False, 1)
        other = asyncio.run(jobs.retention_turn(app, second))
        assert other.skipped and other.maildir_copies == 0
        assert other.summary() == ("retention: another instance takes care of the database; "
                                   "removed 0 sent copies in the Maildir")
        assert asyncio.run(jobs.retention_turn(app, first)).skipped is False  # the next day: the same one
    finally:
        app.engine.dispose()


def test_erasure_after_retention(app: App, config: str, capsys: pytest.CaptureFixture[str]) -> None:
    """An erasure after retention takes the copy retention left and the
    bytes; erased mail (its digest gone) is no work for retention."""
    first, copy = spool(app, mail(1), mail(1))
    age(app, [first])
    assert run(app).raw_mails == 1
    digest = sha256_hex(mail(1))
    assert blob_exists(app, digest)  # the copy still needs them
    code, _, err = gateway(config, capsys, "account", "erase", "anna@bauwerk-ag.de", "--yes")
    assert code == 0, err
    assert not blob_exists(app, digest)
    age(app, [copy])
    assert run(app).raw_mails == 0
    assert mail_row(app, copy).raw_sha256 == "" and mail_row(app, copy).raw_removed_at is None


def test_settings_are_checked(tmp_path: Path, clean_env: None) -> None:
    path = tmp_path / "gateway.toml"
    defaults = RetentionSettings(raw_mail_days=90, quarantine_days=0, outbox_days=30)
    assert load_settings(None).retention == defaults
    for body, key in (("raw_mail_days = -1", "retention.raw_mail_days"), ("keep = 1", "retention.keep")):
        path.write_text(f"[retention]\n{body}\n")
        with pytest.raises(ConfigError, match=re.escape(key)):
            load_settings(path)


# -- the agents' raw link -----------------------------------------------------------


def test_the_agents_raw_link_says_the_message_was_removed(site: Site, tmp_path: Path) -> None:
    build(site)
    reply = tmp_path / "reply.eml"
    reply.write_bytes(
        f"From: Anna <{ANNA}>\r\nTo: servicedesk@xitrust.com\r\nSubject: Re: [SD-1] Signatur\r\n"
        "Message-ID: <a-1@bauwerk-ag.de>\r\n\r\nDanke.\r\n".encode()
    )
    assert site.desk.ingest([str(reply)], None, progress=False) == 0
    with browser(site, SAM) as client:
        page = client.get("/agent/tickets/SD-1").text
        link = re.search(r'href="(/agent/mails/(\d+)/raw\?ticket=SD-1)"', page)
        assert link
        age(site.desk, [int(link.group(2))])
        assert retention.run(site.desk.engine, site.desk.blobs, site.desk.settings).raw_mails == 1
        page = client.get("/agent/tickets/SD-1").text
        assert link.group(1) not in page.replace("&amp;", "&")
        assert "nach Ablauf der Aufbewahrungsfrist gelöscht" in page
        gone = client.get(link.group(1))
        assert gone.status_code == 410 and gone.headers["content-type"].startswith("text/plain")
        assert "Die Original-Nachricht wurde am" in gone.text and "Aufbewahrungsfrist" in gone.text


# -- in the daemon --------------------------------------------------------------------


def test_serve_runs_it_after_its_start(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path)
    try:
        (tmp_path / "old.eml").write_bytes(mail(1))
        ingest = [sys.executable, "-m", "gateway", "ingest", "--no-progress", str(tmp_path / "old.eml")]
        subprocess.run(ingest, env=gw.env, cwd=tmp_path, check=True, capture_output=True, timeout=120)
        gw.query("UPDATE inbound_mail SET processed_at = datetime(processed_at, '-100 days')")
        long_ago = time.time() - 100 * 86400
        for blob in (tmp_path / "blobs").glob("*/*"):
            os.utime(blob, (long_ago, long_ago))
        gw.start()
        log = gw.wait_for_log("retention: removed", timeout=60)
        assert "retention: removed 1 raw mails older than 90 days, 0 outbox bodies older than 30 days" in log
        assert gw.query("SELECT count(*) FROM inbound_mail WHERE raw_removed_at IS NOT NULL") == [(1,)]
        endpoint = f"http://127.0.0.1:{gw.metrics_port}/metrics"
        metrics = urllib.request.urlopen(endpoint, timeout=10).read().decode()
        assert 'gateway_retention_removed_total{kind="raw_mail"} 1.0' in metrics
        assert 'gateway_retention_removed_total{kind="outbox_body"} 0.0' in metrics
        last = re.search(r"^gateway_retention_last_run_timestamp_seconds (\S+)$", metrics, re.M)
        assert last and abs(float(last.group(1)) - time.time()) < 120
        assert gw.stop() == 0
    finally:
        gw.kill()
