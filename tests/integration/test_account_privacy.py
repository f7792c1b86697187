"""A person's rights at the command line (#16, GDPR Art. 15 and 17), on
SQLite and PostgreSQL: ``gateway account export EMAIL`` lists everything
stored about them and nothing of other people's private tickets;
``gateway account erase EMAIL --yes`` leaves their address, name, words,
files and raw mail nowhere in the database or the blob store, while the
tickets others are on stay readable with "deleted user".

The store is filled the way the desk fills it: mail into ``gateway
ingest`` (raw mail, attachments, threading), the ``ticket`` commands
(shares, an agent's reply, history), a portal session and a rate-limit
counter."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text as sql, update
from sqlmodel import SQLModel

from gateway import privacy
from gateway.app import App
from gateway.settings import DatabaseSettings, OutboundSettings, Settings, StorageSettings
from gateway.store import repo, web as web_store
from gateway.store.blobs import sha256_hex
from gateway.store.db import connection, read_connection
from gateway.store.models import Blob  # and with it every table in SQLModel.metadata
from gateway.store.repo import MAIL
from gateway.store.spool import Spool, SpoolItem
from tests.clicall import cli_config, gateway, ok

ANNA = "anna.mueller@bauwerk-ag.de"
ANNA_NAME = "Anna Müller"
KAI = "kai.weber@bauwerk-ag.de"
SAM = "sam.berger@xitrust.com"
# Strings only Anna's data holds: each must be gone after the erasure.
DESCRIPTION = "Beschreibung-7Q2X: seit heute geht nichts mehr."
SECOND = "Privat-9KJ3: meine Lohnabrechnung fehlt."
REPLY = "Antwort-4HZ8: das Log hängt an."
FILE = b"Dateiinhalt-8PW5 (Annas Log)"
FIRST_FILE = b"Screenshot-6TR1 (Annas Bild)"
RAW_ONLY = "Kopfzeile-2MN6"  # in a header of her mail: only in the raw message
MARKERS = ["7Q2X", "9KJ3", "4HZ8", "8PW5", "6TR1", "2MN6"]
KAI_FILE = b"Kais Datei bleibt"
KAI_TEXT = "Bei mir auch, wie bei Anna Müller."


@pytest.fixture
def blob_setting() -> str:
    """Where blobs live: "files" (the default), or "database" (a test
    parametrizes this)."""
    return "files"


@pytest.fixture
def settings(db_url: str, tmp_path: Path, clean_env: None, blob_setting: str) -> Settings:
    blobs = "database" if blob_setting == "database" else str(tmp_path / "blobs")
    return Settings(
        database=DatabaseSettings(url=db_url),
        storage=StorageSettings(blobs=blobs),
        outbound=OutboundSettings(maildir=str(tmp_path / "sent")),
    )


@pytest.fixture
def config(app: App, tmp_path: Path) -> str:
    return cli_config(app, tmp_path)


def show(config: str, capsys: pytest.CaptureFixture[str], key: str) -> dict[str, Any]:
    data = json.loads(ok(config, capsys, "ticket", "show", key, "--json"))
    assert isinstance(data, dict)
    return data


def mail(sender: str, subject: str, body: str, *, mid: str, extra: str = "",
         files: tuple[tuple[str, bytes], ...] = ()) -> bytes:
    """A message as a mail client writes it (8-bit headers, as many send
    them), with attachments."""
    head = (f"From: {sender}\nTo: servicedesk@xitrust.com\nSubject: {subject}\nMessage-ID: {mid}\n"
            f"Date: Fri, 27 Nov 2026 09:30:00 +0100\n{extra}MIME-Version: 1.0\n")
    plain = f"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n{body}\n"
    if not files:
        text = head + plain
    else:
        parts = [f"--b1\n{plain}"]
        for name, data in files:
            parts.append(f'--b1\nContent-Type: application/octet-stream\nContent-Disposition: attachment; '
                         f'filename="{name}"\nContent-Transfer-Encoding: base64\n\n'
                         f"{base64.b64encode(data).decode()}\n")
        text = head + 'Content-Type: multipart/mixed; boundary="b1"\n\n' + "".join(parts) + "--b1--\n"
    return text.replace("\n", "\r\n").encode()


def ingest(config: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, raw: bytes, name: str) -> None:
    path = tmp_path / f"{name}.eml"
    path.write_bytes(raw)
    ok(config, capsys, "ingest", "--no-progress", str(path))


@pytest.fixture
def desk(app: App, config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> App:
    """Bauwerk AG with Anna and Kai; Sam an agent. SD-1: Anna's request
    with a file, shared with the organization, Kai's reply (quoting her,
    with a file of his own), Sam's answer, Anna's reply with a file, Sam
    assigned, resolved by Anna. SD-2: Anna's request only she is on. SD-3: Kai's private
    request."""
    ok(config, capsys, "org", "create", "Bauwerk AG", "--domain", "bauwerk-ag.de")
    with connection(app.engine) as conn:
        repo.insert_account(conn, SAM, "Sam Berger", "agent", None, "de")
    ingest(config, capsys, tmp_path, mail(
        f"{ANNA_NAME} <{ANNA}>", "Signatur schlägt fehl", DESCRIPTION, mid="<req-1@bauwerk-ag.de>",
        extra=f"X-Mailer-Note: {RAW_ONLY}\n", files=(("screenshot.png", FIRST_FILE),),
    ), "anna-1")
    ingest(config, capsys, tmp_path, mail(
        f"{ANNA_NAME} <{ANNA}>", "Lohnabrechnung", SECOND, mid="<req-2@bauwerk-ag.de>",
    ), "anna-2")
    ingest(config, capsys, tmp_path, mail(
        f"Kai Weber <{KAI}>", "Rechnung falsch", "Kais eigene Frage.", mid="<kai-1@bauwerk-ag.de>",
    ), "kai-1")
    ok(config, capsys, "ticket", "share", "SD-1", "org", "--as", ANNA)
    ingest(config, capsys, tmp_path, mail(
        f"Kai Weber <{KAI}>", "Re: [SD-1] Signatur schlägt fehl",
        f"{KAI_TEXT}\n\nAm 27.11.2026 schrieb {ANNA_NAME} <{ANNA}>:\n> {DESCRIPTION}",
        mid="<kai-2@bauwerk-ag.de>", extra="In-Reply-To: <req-1@bauwerk-ag.de>\n",
        files=(("kai.txt", KAI_FILE),),
    ), "kai-2")
    answer = tmp_path / "answer.txt"
    answer.write_text("Hallo Anna Müller, bitte das Log schicken.\n", encoding="utf-8")
    ok(config, capsys, "ticket", "comment", "SD-1", "--as", SAM, "--file", str(answer))
    ok(config, capsys, "ticket", "assign", "SD-1", SAM)
    ingest(config, capsys, tmp_path, mail(
        f"{ANNA_NAME} <{ANNA}>", "Re: [SD-1] Signatur schlägt fehl", REPLY, mid="<req-3@bauwerk-ag.de>",
        extra="In-Reply-To: <req-1@bauwerk-ag.de>\n", files=(("log.txt", FILE),),
    ), "anna-3")
    # She marks it resolved: the mail telling Kai names her ("by").
    ok(config, capsys, "ticket", "transition", "SD-1", "resolved", "--as", ANNA)
    ok(config, capsys, "outbox", "flush")
    with connection(app.engine) as conn:
        anna = repo.account_by_email(conn, ANNA)
        assert anna is not None
        web_store.create_session(conn, "a-session-of-annas", anna.id, "csrf", 8)
        web_store.hit(conn, f"login:{ANNA}", dt.timedelta(hours=1))
    one = show(config, capsys, "SD-1")
    assert one["reporter"] == ANNA and [c["author"] for c in one["comments"]] == [KAI, SAM, ANNA]
    assert show(config, capsys, "SD-2")["reporter"] == ANNA
    return app


# -- what the database and the blob store hold --------------------------------


def every_value(app: App) -> Iterator[tuple[str, str]]:
    """(table.column, text) for every text, JSON and binary value of every
    table, and each file of the blob store."""
    with read_connection(app.engine) as conn:
        for table in SQLModel.metadata.sorted_tables:
            for row in conn.execute(select(table)).mappings():
                for column, value in row.items():
                    if value is None or isinstance(value, bool | int | float) or hasattr(value, "isoformat"):
                        continue
                    if isinstance(value, bytes | memoryview):
                        text = bytes(value).decode("utf-8", "replace")
                    elif isinstance(value, str):
                        text = value
                    else:
                        text = json.dumps(value, ensure_ascii=False)
                    yield f"{table.name}.{column}", text
    root = Path(app.settings.storage.blobs)
    for path in root.rglob("*") if app.settings.storage.blobs != "database" else ():
        if path.is_file():
            yield f"blob {path.name}", path.read_bytes().decode("utf-8", "replace")


def traces(app: App, *needles: str) -> list[str]:
    """Where any of ``needles`` (any case) is still stored."""
    wanted = [n.lower() for n in needles]
    found = []
    for where, text in every_value(app):
        lowered = text.lower()
        found += [f"{where}: {n}" for n in wanted if n in lowered]
    return found


# -- export ----------------------------------------------------------------------------


def test_export_lists_her_data_and_no_one_elses_private_tickets(
    desk: App, config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads(ok(config, capsys, "account", "export", ANNA))
    assert data["format"] == "servicedesk-gateway account export" and data["version"] == 1
    account = data["account"]
    assert account["email"] == ANNA and account["name"] == ANNA_NAME
    assert account["organization"] == "Bauwerk AG" and account["password"] == "none"
    assert "password_hash" not in json.dumps(data)

    tickets = {t["key"]: t for t in data["tickets"]}
    assert set(tickets) == {"SD-1", "SD-2"}  # not Kai's SD-3
    assert tickets["SD-1"]["roles"] == ["commenter", "reporter"]
    assert tickets["SD-1"]["description"].strip() == DESCRIPTION
    assert tickets["SD-1"]["shared_with_organization"] == "Bauwerk AG"
    assert [f["filename"] for f in tickets["SD-1"]["attachments"]] == ["screenshot.png"]
    assert "data_base64" not in tickets["SD-1"]["attachments"][0]  # metadata unless --with-files
    assert tickets["SD-2"]["summary"] == "Lohnabrechnung"

    # Her comments only: not Kai's or Sam's words.
    assert [(c["ticket"], c["body"].strip()) for c in data["comments"]] == [("SD-1", REPLY)]
    assert [f["filename"] for f in data["comments"][0]["attachments"]] == ["log.txt"]
    assert "Kais eigene Frage" not in json.dumps(data) and "bitte das Log schicken" not in json.dumps(data)

    assert [m["message_id"] for m in data["mail_received"]] == [
        "<req-1@bauwerk-ag.de>", "<req-2@bauwerk-ag.de>", "<req-3@bauwerk-ag.de>"]
    assert all("raw_base64" not in m for m in data["mail_received"])
    assert data["mail_sent"] and {m["ticket"] for m in data["mail_sent"]} <= {"SD-1", "SD-2"}
    assert all(m["template"] for m in data["mail_sent"])
    # What she did (sharing SD-1) and others' acts only by role.
    assert ("SD-1", "shared", ANNA) in [(h["ticket"], h["action"], h["actor"]) for h in data["history"]]
    assert {h["actor"] for h in data["history"]} <= {ANNA, "system", "agent", "customer"}
    assert len(data["sessions"]) == 1 and "a-session" not in json.dumps(data["sessions"])
    assert [r["key"] for r in data["rate_limits"]] == [f"login:{ANNA}"]


def test_export_with_files_and_to_a_file_of_its_own(
    desk: App, config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "anna-export.json"
    out = ok(config, capsys, "account", "export", ANNA.upper(), "--with-files", "--output", str(target))
    assert str(target) in out and "2 tickets, 1 comments, 3 mails received" in out
    assert os.stat(target).st_mode & 0o777 == 0o600  # a person's data: readable by its owner only
    data = json.loads(target.read_text(encoding="utf-8"))
    [comment] = data["comments"]
    assert base64.b64decode(comment["attachments"][0]["data_base64"]) == FILE
    first = {t["key"]: t for t in data["tickets"]}["SD-1"]
    assert base64.b64decode(first["attachments"][0]["data_base64"]) == FIRST_FILE
    raws = [base64.b64decode(m["raw_base64"]) for m in data["mail_received"]]
    assert RAW_ONLY.encode() in raws[0] and KAI_FILE not in b"".join(raws)

    code, _, err = gateway(config, capsys, "account", "export", ANNA, "--output", str(target))
    assert code == 1 and "exists" in err and err.count("\n") == 1  # never overwritten
    for argv in (["export", "ghost@example.org"], ["erase", "ghost@example.org", "--yes"]):
        code, out, err = gateway(config, capsys, "account", *argv)
        assert (code, out) == (1, "") and err == "gateway: no account ghost@example.org\n"


# -- erasure -----------------------------------------------------------------------------


def test_without_yes_erase_only_says_what_would_go(
    desk: App, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = [show(config, capsys, k) for k in ("SD-1", "SD-2")]
    code, out, err = gateway(config, capsys, "account", "erase", ANNA)
    assert code == 1 and "--yes" in err and err.count("\n") == 1
    assert f"{ANNA} would be erased" in out
    assert "their comments: text erased" in out and "tickets only they were on" in out
    rehearsal = json.loads(gateway(config, capsys, "account", "erase", ANNA, "--json")[1])
    assert rehearsal["erased"] is False
    assert rehearsal["counts"]["tickets_erased"] == 1  # SD-2
    assert rehearsal["counts"]["descriptions_erased"] == 1  # SD-1
    assert rehearsal["counts"]["comments_erased"] == 1
    assert rehearsal["counts"]["files_deleted"] == 2
    assert rehearsal["counts"]["own_mails_erased"] == 3
    assert rehearsal["counts"]["mails_naming_erased"] == 1  # Kai's reply quotes her
    # Nothing changed, not a file deleted.
    assert [show(config, capsys, k) for k in ("SD-1", "SD-2")] == before
    assert traces(desk, *MARKERS)


def test_erase_leaves_no_trace_and_the_shared_ticket_readable(
    desk: App, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert traces(desk, ANNA, ANNA_NAME, *MARKERS)  # the search finds them before
    kai_before = show(config, capsys, "SD-3")

    report = json.loads(ok(config, capsys, "account", "erase", ANNA, "--yes", "--json"))
    assert report["erased"] is True and report["email"] == ANNA
    placeholder = report["account"]
    assert placeholder.startswith("deleted-user-") and placeholder.endswith("@invalid")

    assert traces(desk, ANNA, ANNA_NAME, *MARKERS) == []
    assert traces(desk, "anna.mueller", "Müller") == []  # not a part of the address or name either

    # SD-1, which others are on: readable, her part "deleted user" / "[erased]".
    one = show(config, capsys, "SD-1")
    assert one["reporter"] == "deleted user"
    assert one["summary"] == "Signatur schlägt fehl"  # everyone's subject: kept
    assert one["description"] == "[erased]" and one["attachments"] == []
    assert one["organization"] == "Bauwerk AG" and one["assignee"] == SAM
    assert [(c["author"], c["body"].strip().splitlines()[0]) for c in one["comments"]] == [
        (KAI, "Bei mir auch, wie bei deleted user."),
        (SAM, "Hallo deleted user, bitte das Log schicken."),
        ("deleted user", "[erased]"),
    ]
    assert [a["filename"] for a in one["comments"][0]["attachments"]] == ["kai.txt"]
    assert one["comments"][2]["attachments"] == []
    assert ("system", "erased", None, "description; 1 comment; 2 files") in [
        (h["actor"], h["action"], h["from"], h["to"]) for h in one["history"]]
    assert ("deleted user", "shared") in [(h["actor"], h["action"]) for h in one["history"]]
    # Kai's file is still there (its bytes are his); Anna's are gone.
    with read_connection(desk.engine) as conn:
        [kai_file] = one["comments"][0]["attachments"]
        assert desk.blobs.get(conn, kai_file["sha256"]) == KAI_FILE

    # SD-2, only hers: kept as a row (numbering, history), its text gone.
    two = show(config, capsys, "SD-2")
    assert (two["summary"], two["description"], two["fields"]) == ("[erased]", "[erased]", {})
    assert two["reporter"] == "deleted user"
    assert show(config, capsys, "SD-3") == kai_before  # nobody else's ticket changed

    # The human view works too, and the account is a placeholder.
    assert "deleted user" in ok(config, capsys, "ticket", "show", "SD-1")
    listed = {t["key"]: t["reporter"] for t in json.loads(ok(config, capsys, "ticket", "list", "--json"))}
    assert listed == {"SD-1": "deleted user", "SD-2": "deleted user", "SD-3": KAI}
    shown = json.loads(ok(config, capsys, "account", "show", placeholder, "--json"))
    assert (shown["name"], shown["state"], shown["organization"]) == ("deleted user", "disabled", None)
    assert gateway(config, capsys, "account", "show", ANNA)[0] == 1

    # Her mails: log lines without bytes; nothing is due to her any more.
    mails = json.loads(ok(config, capsys, "mail", "list", "--json"))
    assert sum(1 for m in mails if m["from"] == placeholder) == 3
    code, _, err = gateway(config, capsys, "mail", "show", str(one["mail_id"]), "--raw")
    assert (code, err) == (1, f"gateway: the raw message of mail {one['mail_id']} was erased with its "
                              "sender's data (gateway account erase)\n")
    outbox = json.loads(ok(config, capsys, "outbox", "list", "--json"))
    assert all(o["status"] not in ("queued", "retrying") for o in outbox if o["to"] == placeholder)
    assert ok(config, capsys, "outbox", "flush", "--json")  # nothing to send to her, no crash

    # Erasing again: the old address is unknown, the placeholder erased already.
    assert gateway(config, capsys, "account", "erase", ANNA, "--yes")[0] == 1
    assert "erased account already" in ok(config, capsys, "account", "erase", placeholder, "--yes")

    # She may write again: a new, unrelated account.
    ingest(config, capsys, Path(config).parent, mail(
        f"{ANNA_NAME} <{ANNA}>", "Neu hier", "Hallo.", mid="<again@bauwerk-ag.de>"), "again")
    assert show(config, capsys, "SD-4")["reporter"] == ANNA


def test_erasing_an_agent_keeps_the_desks_words(
    desk: App, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    report = json.loads(ok(config, capsys, "account", "erase", SAM, "--yes", "--json"))
    assert report["counts"]["comments_kept"] == 1 and report["counts"]["tickets_unassigned"] == 1
    assert traces(desk, SAM, "Sam Berger") == []
    one = show(config, capsys, "SD-1")
    assert one["assignee"] is None
    [answer] = [c for c in one["comments"] if c["author"] == "deleted user"]
    assert answer["body"].startswith("Hallo Anna Müller, bitte das Log schicken.")  # the desk's words stay
    assert one["reporter"] == ANNA and one["description"].strip() == DESCRIPTION
    assert ("system", "assignee", "deleted user", None) in [
        (h["actor"], h["action"], h["from"], h["to"]) for h in one["history"]]


@pytest.mark.parametrize("blob_setting", ["database"])
def test_erase_with_the_blobs_in_the_database(
    desk: App, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with read_connection(desk.engine) as conn:
        before = conn.execute(select(func.count()).select_from(Blob)).scalar_one()
    assert traces(desk, *MARKERS)
    report = json.loads(ok(config, capsys, "account", "erase", ANNA, "--yes", "--json"))
    assert traces(desk, ANNA, ANNA_NAME, *MARKERS) == []
    with read_connection(desk.engine) as conn:
        after = conn.execute(select(func.count()).select_from(Blob)).scalar_one()
        assert before - after == report["counts"]["blobs_deleted"] == 6  # 3 raw mails, 2 files, Kai's quote
        [kai_file] = show(config, capsys, "SD-1")["comments"][0]["attachments"]
        assert desk.blobs.get(conn, kai_file["sha256"]) == KAI_FILE


def test_her_mail_still_waiting_is_erased_and_mail_being_processed_waits(
    desk: App, config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Accepted, not processed yet (the daemon's workers would be next).
    raw = mail(f"{ANNA_NAME} <{ANNA.upper()}>", "Noch eine", "Wartet-3VB7", mid="<waiting@bauwerk-ag.de>")
    [mail_id] = desk.spool.put_many([SpoolItem(raw, "smtp")])
    with connection(desk.engine) as conn:
        conn.execute(update(MAIL).where(MAIL.c.id == mail_id).values(status="processing"))
    code, out, err = gateway(config, capsys, "account", "erase", ANNA, "--yes")
    assert code == 75 and f"mail {mail_id} from {ANNA} is being processed" in err and out == ""
    assert traces(desk, "3VB7")  # nothing was erased
    with connection(desk.engine) as conn:
        conn.execute(update(MAIL).where(MAIL.c.id == mail_id).values(status="queued"))
    ok(config, capsys, "account", "erase", ANNA, "--yes")
    assert traces(desk, ANNA, ANNA_NAME, "3VB7", *MARKERS) == []
    shown = json.loads(ok(config, capsys, "mail", "show", str(mail_id), "--json"))
    assert (shown["status"], shown["disposition"]) == ("ignored", "ignored: sender's data erased")
    assert json.loads(ok(config, capsys, "status", "--json"))["spool"]["depth"] == 0


def test_a_field_naming_her_names_the_placeholder(
    desk: App, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(config, capsys, "ticket", "set", "SD-3", "--type", "suggest_improvement",
       "--field", f"responsible_user={ANNA}")
    exported = json.loads(ok(config, capsys, "account", "export", ANNA))
    roles = {t["key"]: t["roles"] for t in exported["tickets"]}
    assert roles["SD-3"] == ["responsible"]
    placeholder = json.loads(ok(config, capsys, "account", "erase", ANNA, "--yes", "--json"))["account"]
    three = show(config, capsys, "SD-3")
    assert three["fields"]["responsible_user"] == placeholder  # still an account's address
    assert three["summary"] == "Rechnung falsch"  # Kai's ticket: his words stay
    assert traces(desk, ANNA) == []


def test_an_address_that_contains_hers_is_someone_else(
    desk: App, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    hanna = "h" + ANNA  # hanna.mueller@…: another person
    ok(config, capsys, "org", "add-member", "Bauwerk AG", hanna)
    ok(config, capsys, "ticket", "share", "SD-3", hanna, "--as", KAI)
    ok(config, capsys, "account", "erase", ANNA, "--yes")
    assert hanna in [a["email"] for a in json.loads(ok(config, capsys, "account", "list", "--json"))]
    three = show(config, capsys, "SD-3")
    assert three["participants"] == [hanna]
    assert (KAI, "shared", hanna) in [(h["actor"], h["action"], h["to"]) for h in three["history"]]
    assert hanna in [o["to"] for o in json.loads(ok(config, capsys, "outbox", "list", "--json"))]


def test_bytes_a_put_holds_are_not_erased_from_under_its_row(pg_blobs_app: App) -> None:
    """Database blobs: a transaction that stores bytes the erasure is about to
    delete (the same file or message arriving again) holds them locked; the
    erasure waits for its commit, then sees the new row and keeps them."""
    app = pg_blobs_app
    raw = mail(f"{ANNA_NAME} <{ANNA}>", "Drucker", DESCRIPTION, mid="<race@bauwerk-ag.de>")
    app.spool.put_many([SpoolItem(raw, "smtp")])
    app.runner().drain()
    digest = sha256_hex(raw)
    with read_connection(app.engine) as conn:
        assert app.blobs.get(conn, digest) == raw
    reports: list[privacy.ErasureReport] = []
    eraser = threading.Thread(
        target=lambda: reports.append(privacy.erase_account(app.engine, app.blobs, ANNA, confirmed=True)))

    def while_uncommitted(_conn: Any) -> None:
        eraser.start()
        deadline = time.monotonic() + 20
        with app.engine.connect() as watcher:
            while not watcher.execute(sql(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )).scalar():
                watcher.rollback()  # the view is a snapshot per transaction
                assert time.monotonic() < deadline, "the erasure never waited for the put's lock"
                time.sleep(0.05)

    # Stored as a file would be (not inline): the blob row is what is raced for.
    spool = Spool(app.engine, app.blobs, inline_max=0)
    [again] = spool.put_many_with([SpoolItem(raw, "smtp")], while_uncommitted)
    eraser.join(30)
    assert reports and reports[0].counts["blobs_deleted"] == 0, reports
    assert spool.read_raw(again) == raw  # the new row's bytes stayed
