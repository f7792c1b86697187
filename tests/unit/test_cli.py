"""The ``gateway`` command line (SPEC §4): JSON shapes, tables, operator
actions and the error contract (one line on stderr, an exit code, never a
traceback). The database is filled directly through the models."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlmodel import select

from gateway import cli, commands
from gateway.app import App
from gateway.domain import TemporaryFailure
from gateway.store import read
from gateway.store.db import reading, transaction
from gateway.store.models import (
    Account,
    Attachment,
    Comment,
    InboundMail,
    Organization,
    OrganizationDomain,
    OutboundMail,
    Ticket,
    TicketParticipant,
)
from tests.clicall import cli_config

REPO = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 11, 27, 9, 30, tzinfo=dt.UTC)
RAW = b"From: anna@bauwerk-ag.de\r\nSubject: Fehler\r\nMessage-ID: <m1@bauwerk-ag.de>\r\n\r\nHallo\r\n"

TICKET_SHOW_KEYS = {
    "key", "summary", "description", "request_type", "status", "priority", "reporter",
    "organization", "assignee", "participants", "fields", "message_id", "created_at", "updated_at",
    "attachments", "comments", "history",
}
MAIL_KEYS = {"id", "received_at", "source", "message_id", "from", "status", "disposition", "ticket", "error"}
OUTBOX_KEYS = {"id", "to", "template", "subject", "message_id", "ticket", "status", "attempts", "last_error"}


# -- fixtures -------------------------------------------------------------


@pytest.fixture
def config(app: App, tmp_path: Path) -> str:
    """A config file for ``main(["--config", ...])`` pointing at ``app``'s
    database (``app`` comes from tests/conftest.py: SQLite and PostgreSQL)."""
    return cli_config(app, tmp_path)


@dataclass
class Seed:
    ticket_id: int
    mail_done: int
    mail_quarantined: int
    out_failed: int
    out_sent: int


@pytest.fixture
def seed(app: App) -> Seed:
    """Two organizations' worth of data: SD-12 (shared with Bauwerk AG, with
    attachments and comments), SD-13 (resolved), two mails, two outbox rows."""
    with transaction(app.engine) as s:
        org = Organization(name="Bauwerk AG", share_by_default=True)
        s.add(org)
        s.flush()
        assert org.id is not None
        s.add(OrganizationDomain(domain="bauwerk-ag.de", organization_id=org.id))
        anna = Account(email="anna@bauwerk-ag.de", name="Anna Berger", state="active",
                       organization_id=org.id, locale="de", created_at=T0)
        kai = Account(email="kai@bauwerk-ag.de", organization_id=org.id, created_at=T0)
        agent = Account(email="agent@xitrust.com", name="Sam Agent", state="active", role="agent",
                        created_at=T0)
        s.add_all([anna, kai, agent])
        s.flush()
        assert anna.id and kai.id and agent.id
        raw_sha = app.blobs.put(s, RAW)
        mail1 = InboundMail(source="smtp", raw_sha256=raw_sha, raw_size=len(RAW), received_at=T0,
                            message_id="<m1@bauwerk-ag.de>", from_addr="anna@bauwerk-ag.de",
                            subject="Fehler", status="done")
        s.add(mail1)
        s.flush()
        sd12 = Ticket(number=12, key="SD-12", request_type="technical_support",
                      summary="Signatur schlägt fehl", description="Beim Signieren kommt ein Fehler.",
                      status="waiting_for_support", priority="high",
                      reporter_id=anna.id, organization_id=org.id,
                      fields={"moxis_domain": "moxis.bauwerk-ag.de", "browser": "Firefox"},
                      message_id="<m1@bauwerk-ag.de>", source_mail_id=mail1.id,
                      created_at=T0, updated_at=T0 + dt.timedelta(hours=1))
        sd13 = Ticket(number=13, key="SD-13", request_type="other", summary="Rechnung", status="resolved",
                      reporter_id=kai.id, created_at=T0, updated_at=T0)
        s.add_all([sd12, sd13])
        s.flush()
        assert sd12.id is not None
        mail1.ticket_id = sd12.id
        mail1.disposition = "created SD-12"
        s.add(TicketParticipant(ticket_id=sd12.id, account_id=kai.id))
        c1 = Comment(ticket_id=sd12.id, author_id=agent.id, body="Bitte Log schicken.", public=True,
                     message_id="<a1@xitrust.com>", created_at=T0 + dt.timedelta(minutes=10))
        c2 = Comment(ticket_id=sd12.id, author_id=agent.id, body="Bekannter Bug.", public=False,
                     source="cli", created_at=T0 + dt.timedelta(minutes=20))
        s.add_all([c1, c2])
        s.flush()
        s.add(Attachment(ticket_id=sd12.id, filename="error.png", content_type="image/png", size=1234,
                         sha256="a" * 64))
        s.add(Attachment(ticket_id=sd12.id, comment_id=c1.id, filename="log.txt", content_type="text/plain",
                         size=10, sha256="b" * 64))
        mail2 = InboundMail(source="ingest", raw_sha256=raw_sha, raw_size=len(RAW), received_at=T0,
                            from_addr="x@example.org", status="quarantined",
                            disposition="quarantined: unparseable", error="no From header")
        out1 = OutboundMail(to_addr="anna@bauwerk-ag.de", template="comment", subject="[SD-12] Antwort",
                            message_id="<o1@xitrust.com>", ticket_id=sd12.id, status="failed", attempts=5,
                            last_error="550 mailbox unavailable")
        out2 = OutboundMail(to_addr="kai@bauwerk-ag.de", template="created", ticket_id=sd12.id,
                            status="sent", attempts=1)
        s.add_all([mail2, out1, out2])
        s.flush()
        assert mail1.id and mail2.id and out1.id and out2.id
        return Seed(sd12.id, mail1.id, mail2.id, out1.id, out2.id)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def assert_one_line(err: str) -> None:
    assert err.startswith("gateway: ")
    assert err.count("\n") == 1, err
    assert "Traceback" not in err


# -- tickets ----------------------------------------------------------------


def test_ticket_show_json_matches_spec(config: str, seed: Seed, capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "--config", config, "ticket", "show", "sd-12")
    assert isinstance(data, dict)
    assert set(data) == TICKET_SHOW_KEYS | {"linked_key", "mail_id", "threaded_by"}
    assert data["key"] == "SD-12"
    assert data["summary"] == "Signatur schlägt fehl"
    assert data["request_type"] == "technical_support"
    assert data["priority"] == "high"
    assert data["reporter"] == "anna@bauwerk-ag.de"
    assert data["organization"] == "Bauwerk AG"
    assert data["participants"] == ["kai@bauwerk-ag.de"]
    assert data["fields"] == {"moxis_domain": "moxis.bauwerk-ag.de", "browser": "Firefox"}
    assert data["created_at"] == "2026-11-27T09:30:00+00:00"
    assert data["updated_at"] == "2026-11-27T10:30:00+00:00"
    assert data["linked_key"] is None
    assert data["attachments"] == [
        {"filename": "error.png", "content_type": "image/png", "size": 1234, "sha256": "a" * 64}
    ]
    first, second = data["comments"]
    assert first == {
        "author": "agent@xitrust.com", "body": "Bitte Log schicken.", "public": True,
        "created_at": "2026-11-27T09:40:00+00:00", "message_id": "<a1@xitrust.com>",
        "source": "email", "mail_id": None, "threaded_by": None,
        "attachments": [
            {"filename": "log.txt", "content_type": "text/plain", "size": 10, "sha256": "b" * 64}
        ],
    }
    assert second["public"] is False and second["attachments"] == [] and second["message_id"] is None
    assert data["history"] == []  # rows written straight into the store: no operation recorded them


def test_ticket_show_human(config: str, seed: Seed, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ticket", "show", "SD-12", "--config", config)
    assert code == 0
    assert out.startswith("SD-12  Signatur schlägt fehl\n")
    assert "Bauwerk AG" in out and "Bitte Log schicken." in out and "INTERNAL" in out and "log.txt" in out


def test_ticket_list_and_filters(config: str, seed: Seed, capsys: pytest.CaptureFixture[str]) -> None:
    items = run_json(capsys, "--config", config, "ticket", "list")
    assert [t["key"] for t in items] == ["SD-12", "SD-13"]
    assert items[0] == {
        "key": "SD-12", "summary": "Signatur schlägt fehl", "status": "waiting_for_support",
        "priority": "high", "request_type": "technical_support", "reporter": "anna@bauwerk-ag.de",
        "organization": "Bauwerk AG", "assignee": None, "created_at": "2026-11-27T09:30:00+00:00",
        "updated_at": "2026-11-27T10:30:00+00:00",
    }
    keys = lambda *a: [t["key"] for t in run_json(capsys, "--config", config, "ticket", "list", *a)]  # noqa: E731
    assert keys("--status", "resolved") == ["SD-13"]
    assert keys("--org", "Bauwerk AG") == ["SD-12"]
    assert keys("--reporter", "KAI@bauwerk-ag.de") == ["SD-13"]
    assert keys("--limit", "1") == ["SD-12"] and keys("--limit", "1", "--offset", "1") == ["SD-13"]
    assert keys("--assignee", "none") == ["SD-12", "SD-13"]

    code, out, _ = run(capsys, "--config", config, "ticket", "list")
    assert code == 0
    header, row12, _row13 = out.splitlines()
    assert header.split()[:3] == ["KEY", "STATUS", "PRIORITY"]
    assert row12.index("waiting_for_support") == header.index("STATUS")  # columns aligned


def test_unknown_names_exit_1(config: str, seed: Seed, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["ticket", "show", "SD-999"],
        ["ticket", "list", "--org", "Nobody GmbH"],
        ["account", "show", "ghost@example.org"],
        ["mail", "show", "999"],
        ["mail", "reprocess", str(seed.mail_done), "999"],
        ["outbox", "retry", "999"],
        ["org", "add-member", "Nobody GmbH", "a@b.de"],
        ["ticket", "transition", "SD-999", "closed"],
    ):
        code, out, err = run(capsys, "--config", config, *argv)
        assert code == 1, argv
        assert out == ""
        assert_one_line(err)
    _, _, err = run(capsys, "--config", config, "ticket", "show", "SD-999")
    assert err == "gateway: ticket SD-999 not found\n"


def test_ticket_transition(app: App, config: str, seed: Seed, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--config", config, "ticket", "transition", "SD-12", "resolved")
    assert code == 0
    assert out == "SD-12: waiting_for_support -> resolved\n"
    code, out, _ = run(capsys, "--config", config, "ticket", "transition", "SD-12", "resolved")
    assert code == 0 and out == "SD-12: already resolved, unchanged\n"
    with reading(app.engine) as s:
        ticket = read.get_ticket(s, "SD-12")
        assert ticket.status == "resolved"
        assert read.iso(ticket.updated_at) != "2026-11-27T10:30:00+00:00"
    code, _, err = run(capsys, "--config", config, "ticket", "transition", "SD-12", "done")
    assert code == 2 and "invalid choice" in err
    assert_one_line(err)


def test_ticket_comment_calls_app(
    config: str,
    seed: Seed,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, str, str, bool]] = []

    def fake_comment(self: App, key: str, email: str, body: str, internal: bool) -> int:
        calls.append((key, email, body, internal))
        return 77

    monkeypatch.setattr(App, "comment", fake_comment)
    body = tmp_path / "reply.txt"
    body.write_text("Ist behoben.\n", encoding="utf-8")
    code, out, _ = run(capsys, "--config", config, "ticket", "comment", "sd-12", "--as", "agent@xitrust.com",
                       "--internal", "--file", str(body))
    assert code == 0
    assert calls == [("SD-12", "agent@xitrust.com", "Ist behoben.\n", True)]
    assert "77" in out and "SD-12" in out

    code, _, err = run(capsys, "--config", config, "ticket", "comment", "SD-999", "--as", "agent@xitrust.com",
                       "--file", str(body))
    assert code == 1 and "SD-999" in err and len(calls) == 1
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    code, _, err = run(capsys, "--config", config, "ticket", "comment", "SD-12", "--as", "agent@xitrust.com",
                       "--file", str(empty))
    assert code == 1 and "empty" in err and len(calls) == 1


# -- organizations and accounts ----------------------------------------------


def test_org_create_list_and_refusals(config: str, seed: Seed, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--config", config, "org", "create", "Northwind Ltd",
                         "--domain", "Northwind.CO.uk", "--domain", "@northwind.example",
                         "--share-by-default")
    assert code == 0, err
    assert "Northwind Ltd" in out
    orgs = run_json(capsys, "--config", config, "org", "list")
    assert orgs == [
        {"name": "Bauwerk AG", "domains": ["bauwerk-ag.de"], "share_by_default": True, "members": 2},
        {"name": "Northwind Ltd", "domains": ["northwind.co.uk", "northwind.example"],
         "share_by_default": True, "members": 0},
    ]
    for argv, needle in (
        (["Freemail", "--domain", "GMAIL.com"], "free-mail"),
        (["Copycat", "--domain", "bauwerk-ag.de"], "Bauwerk AG"),
        (["bauwerk ag"], "already exists"),
        (["Broken", "--domain", "not a domain"], "not a mail domain"),
    ):
        code, _, err = run(capsys, "--config", config, "org", "create", *argv)
        assert code == 1, argv
        assert needle in err
        assert_one_line(err)
    names = [o["name"] for o in run_json(capsys, "--config", config, "org", "list")]
    assert names == ["Bauwerk AG", "Northwind Ltd"]  # nothing half-created


def test_org_add_member_and_accounts(config: str, seed: Seed, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--config", config, "org", "add-member", "Bauwerk AG",
                       "New.Person@Bauwerk-AG.de")
    assert code == 0 and "new unverified account" in out
    shown = run_json(capsys, "--config", config, "account", "show", "new.person@bauwerk-ag.de")
    assert shown == {
        "email": "new.person@bauwerk-ag.de", "name": "", "state": "unverified", "role": "customer",
        "organization": "Bauwerk AG", "locale": None, "created_at": shown["created_at"], "tickets": [],
    }
    anna = run_json(capsys, "--config", config, "account", "show", "Anna@Bauwerk-AG.de")
    assert anna["tickets"] == ["SD-12"] and anna["created_at"] == "2026-11-27T09:30:00+00:00"
    # an existing account moves; no duplicate is created
    run(capsys, "--config", config, "org", "create", "XiTrust", "--domain", "xitrust.com")
    code, out, _ = run(capsys, "--config", config, "org", "add-member", "XiTrust", "agent@xitrust.com")
    assert code == 0 and "new" not in out
    accounts = run_json(capsys, "--config", config, "account", "list")
    assert [a["email"] for a in accounts] == [
        "agent@xitrust.com", "anna@bauwerk-ag.de", "kai@bauwerk-ag.de", "new.person@bauwerk-ag.de"
    ]
    assert accounts[0]["organization"] == "XiTrust" and accounts[0]["role"] == "agent"
    code, _, err = run(capsys, "--config", config, "org", "add-member", "XiTrust", "not-an-address")
    assert code == 1 and "not an e-mail address" in err
    code, out, _ = run(capsys, "--config", config, "account", "list")
    assert code == 0 and out.splitlines()[0].split()[:2] == ["EMAIL", "NAME"]


# -- inbound mail and outbox ----------------------------------------------------


def test_mail_list_and_show(config: str, seed: Seed, capsys: pytest.CaptureFixture[str]) -> None:
    mails = run_json(capsys, "--config", config, "mail", "list")
    assert isinstance(mails, list)
    assert [m["id"] for m in mails] == [seed.mail_done, seed.mail_quarantined]
    assert all(set(m) == MAIL_KEYS for m in mails)
    assert mails[0] == {
        "id": seed.mail_done, "received_at": "2026-11-27T09:30:00+00:00", "source": "smtp",
        "message_id": "<m1@bauwerk-ag.de>", "from": "anna@bauwerk-ag.de", "status": "done",
        "disposition": "created SD-12", "ticket": "SD-12", "error": None,
    }
    quarantined = run_json(capsys, "--config", config, "mail", "list", "--status", "quarantined")
    assert [(m["id"], m["ticket"], m["error"]) for m in quarantined] == [
        (seed.mail_quarantined, None, "no From header")
    ]
    detail = run_json(capsys, "--config", config, "mail", "show", str(seed.mail_done))
    assert detail["subject"] == "Fehler" and detail["raw_size"] == len(RAW)
    code, out, _ = run(capsys, "--config", config, "mail", "show", str(seed.mail_quarantined))
    assert code == 0 and "no From header" in out


def test_mail_show_raw(config: str, seed: Seed, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert cli.main(["--config", config, "mail", "show", str(seed.mail_done), "--raw"]) == 0
    assert capsysbinary.readouterr().out == RAW


def test_mail_reprocess_calls_app(config: str, seed: Seed, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(App, "reprocess", lambda self, ids: [(i, "commented SD-12") for i in ids])
    result = run_json(capsys, "--config", config, "mail", "reprocess", str(seed.mail_quarantined))
    assert result == [{"id": seed.mail_quarantined, "disposition": "commented SD-12"}]


def test_outbox_list_and_retry(app: App, config: str, seed: Seed, capsys: pytest.CaptureFixture[str]) -> None:
    items = run_json(capsys, "--config", config, "outbox", "list")
    assert isinstance(items, list) and all(set(o) == OUTBOX_KEYS for o in items)
    assert items[0] == {
        "id": seed.out_failed, "to": "anna@bauwerk-ag.de", "template": "comment",
        "subject": "[SD-12] Antwort",
        "message_id": "<o1@xitrust.com>", "ticket": "SD-12", "status": "failed", "attempts": 5,
        "last_error": "550 mailbox unavailable",
    }
    assert [o["id"] for o in run_json(capsys, "--config", config, "outbox", "list", "--status", "sent")] == [
        seed.out_sent
    ]
    code, _, err = run(capsys, "--config", config, "outbox", "retry", str(seed.out_failed))
    assert code == 0, err
    with reading(app.engine) as s:
        out = s.get(OutboundMail, seed.out_failed)
        assert out is not None
        assert (out.status, out.attempts, out.next_attempt_at is not None) == ("queued", 5, True)
    code, _, err = run(capsys, "--config", config, "outbox", "retry", str(seed.out_sent))
    assert code == 1 and "already sent" in err


def test_mail_outbox_and_account_lists_page_and_filter(
    app: App, config: str, seed: Seed, capsys: pytest.CaptureFixture[str]
) -> None:
    """--limit/--offset/--since/--newest and the address filters, JSON and
    table alike; a table cut by --limit says where the next page starts."""
    now = dt.datetime.now(dt.UTC)
    with transaction(app.engine) as s:
        for n in range(5):  # five recent mails from two senders
            s.add(InboundMail(source="smtp", raw_sha256="c" * 64, raw_size=1, status="done",
                              received_at=now - dt.timedelta(minutes=50 - n),
                              from_addr="bob@example.org" if n % 2 else "eve@Example.ORG"))
        s.add(OutboundMail(to_addr="bob@example.org", template="signup_invitation", status="sent",
                           attempts=1, created_at=now))
    mails = run_json(capsys, "--config", config, "mail", "list")
    assert isinstance(mails, list) and len(mails) == 7
    ids = [m["id"] for m in mails]

    def listed(*argv: str) -> list[object]:
        items = run_json(capsys, "--config", config, *argv)
        assert isinstance(items, list)
        return [item["id"] if "id" in item else item["email"] for item in items]

    assert listed("mail", "list", "--limit", "3") == ids[:3]
    assert listed("mail", "list", "--limit", "3", "--offset", "5") == ids[5:]
    assert listed("mail", "list", "--newest", "--limit", "2") == ids[::-1][:2]
    assert listed("mail", "list", "--since", "1h") == ids[2:]
    assert listed("mail", "list", "--since", "2026-11-27T09:30") == ids
    assert listed("mail", "list", "--since", "2026-11-28") == ids[2:]
    assert listed("mail", "list", "--from", "bob@example.org") == [ids[3], ids[5]]
    assert listed("mail", "list", "--from", "@example.org") == ids[1:]  # any case; the seed's x@ too
    assert listed("mail", "list", "--from", "@ample.org") == []  # a domain, not a suffix
    assert listed("mail", "list", "--from", "@example.org", "--status", "quarantined") == [ids[1]]

    code, out, err = run(capsys, "--config", config, "mail", "list", "--limit", "3", "--offset", "1")
    assert code == 0 and len(out.splitlines()) == 4  # header and three rows
    assert err == "gateway: more than 3: the next with --offset 4\n"
    code, out, err = run(capsys, "--config", config, "mail", "list", "--limit", "3", "--offset", "4")
    assert code == 0 and len(out.splitlines()) == 4 and err == ""

    assert listed("outbox", "list", "--to", "@bauwerk-ag.de") == [seed.out_failed, seed.out_sent]
    assert listed("outbox", "list", "--template", "signup_invitation", "--since", "1d") != []
    assert listed("outbox", "list", "--newest", "--limit", "1", "--to", "@bauwerk-ag.de") == [seed.out_sent]

    assert listed("account", "list", "--role", "agent") == ["agent@xitrust.com"]
    assert listed("account", "list", "--org", "Bauwerk AG", "--limit", "1", "--offset", "1") == [
        "kai@bauwerk-ag.de"
    ]
    assert listed("account", "list", "--state", "active", "--since", "2026-11-27") == [
        "agent@xitrust.com", "anna@bauwerk-ag.de"
    ]
    assert listed("account", "list", "--since", "1h") == []

    for bad in (["--since", "yesterday"], ["--limit", "-1"], ["--offset", "x"]):
        code, out, err = run(capsys, "--config", config, "mail", "list", *bad)
        assert code == 2 and out == ""
        assert_one_line(err)


# -- configuration and the error contract ------------------------------------------


def test_check_config_toml_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    path = tmp_path / "gw.toml"
    path.write_text(
        '[database]\nurl = "postgresql+psycopg://gw:s3cret@db/gw"\n'
        '[security]\nsecret_key = "topsecret"\n'
        '[routing]\n"Support@XiTrust.com" = "technical_support"\n'
    )
    data = run_json(capsys, "check-config", "--config", str(path))
    assert data["database"]["url"] == "postgresql+psycopg://gw:********@db/gw"
    assert data["security"]["secret_key"] == "********"
    code, out, _ = run(capsys, "check-config", "--config", str(path))
    assert code == 0
    assert "s3cret" not in out and "topsecret" not in out
    parsed = tomllib.loads(out)  # TOML-ish output is real TOML
    assert parsed["routing"] == {"support@xitrust.com": "technical_support"}
    assert parsed["smtp"]["max_recipients"] == 100
    assert parsed["outbound"]["from"].startswith("XiTrust Servicedesk")


def test_bad_config_exit_2(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                           tmp_path: Path) -> None:
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    monkeypatch.setenv("GATEWAY__SMTP__MAX_RECIPIENTS", "abc")
    code, out, err = run(capsys, "check-config")
    assert code == 2 and out == ""
    assert_one_line(err)
    assert "smtp.max_recipients" in err
    monkeypatch.delenv("GATEWAY__SMTP__MAX_RECIPIENTS")
    code, _, err = run(capsys, "--config", str(tmp_path / "missing.toml"), "ticket", "list")
    assert code == 2 and "not found" in err


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["ticket"], ["ticket", "list", "--status", "bogus"], ["mail", "show", "x"], ["nope"]):
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == ""
        assert_one_line(err)
    code, out, _ = run(capsys, "ticket", "list", "--help")
    assert code == 0 and "--reporter" in out


def test_internal_and_temporary_errors(config: str, seed: Seed, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise ValueError("secret internal detail /srv/path")

    monkeypatch.setattr(read, "ticket_list", boom)
    code, out, err = run(capsys, "--config", config, "ticket", "list")
    assert code == 70 and out == ""
    assert err == "gateway: internal error: ValueError\n"
    monkeypatch.setenv("GATEWAY_DEBUG", "1")
    code, _, err = run(capsys, "--config", config, "ticket", "list")
    assert code == 70 and "Traceback" in err and err.endswith("gateway: internal error: ValueError\n")
    monkeypatch.delenv("GATEWAY_DEBUG")

    def busy(*args: object, **kwargs: object) -> None:
        raise TemporaryFailure("database is busy")

    monkeypatch.setattr(read, "ticket_list", busy)
    code, _, err = run(capsys, "--config", config, "ticket", "list")
    assert code == 75 and err == "gateway: temporary failure: database is busy\n"


def test_format_table_aligns_and_truncates() -> None:
    table = commands.format_table(["id", "text"], [[1, "short"], [22, "x" * 300], [3, None], [4, "a\nb\tc"]],
                             max_width=10)
    lines = table.splitlines()
    assert lines[0] == "ID  TEXT"
    assert lines[1] == "1   short"
    assert lines[2] == "22  " + "x" * 19 + "…"
    assert lines[3] == "3   -"
    assert lines[4] == "4   a b c"


# -- as a separate process ------------------------------------------------------------


def _gateway(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY")}
    full_env["PYTHONPATH"] = str(REPO)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "gateway", *argv], capture_output=True, text=True,
                          env=full_env, cwd=REPO, timeout=120, check=False)


def test_subprocess_bad_config_is_one_line() -> None:
    proc = _gateway("ticket", "list", env={"GATEWAY__SMTP__MAX_RECIPIENTS": "abc"})
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("gateway: invalid config key smtp.max_recipients")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_subprocess_unknown_ticket_and_json(config: str, seed: Seed) -> None:
    proc = _gateway("--config", config, "ticket", "show", "SD-404")
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", "gateway: ticket SD-404 not found\n")
    proc = _gateway("--config", config, "ticket", "show", "SD-12", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["comments"][0]["author"] == "agent@xitrust.com"


def test_seed_is_consistent(app: App, seed: Seed) -> None:
    """Guards the fixture itself: the ids it reports exist."""
    with reading(app.engine) as s:
        assert s.exec(select(Ticket.key).where(Ticket.id == seed.ticket_id)).one() == "SD-12"


@pytest.mark.parametrize(("group", "commands"), [
    ("db", ["upgrade"]),
    ("org", ["create", "add-member", "list"]),
    ("account", ["list", "show", "signup", "unbounce", "confirm"]),
    ("ticket", ["list", "show", "comment", "transition"]),
    ("mail", ["list", "show", "reprocess"]),
    ("outbox", ["list", "retry", "flush"]),
])
def test_each_group_lists_its_commands_though_only_its_parsers_are_built(
    group: str, commands: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--config", "x.toml", group, "--help"]) == 0
    out = capsys.readouterr().out
    for name in commands:
        assert f"    {name}" in out, (group, name, out)
    assert cli.main([group, "nonsense"]) == 2
    assert "invalid choice: 'nonsense'" in capsys.readouterr().err


def test_check_config_warns_of_what_is_probably_unintended(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    path = tmp_path / "gw.toml"
    path.write_text("[security]\nagent_domains = [\"xitrust.com\"]\n")
    code, out, err = run(capsys, "check-config", "--config", str(path))
    assert code == 0
    assert "warning: [desk] agent_notify is empty" in err
    assert "warning: [security] agent_domains is set but nothing is trusted" in err
    path.write_text('[desk]\nagent_notify = ["Team@XiTrust.com"]\n'
                    '[security]\nagent_domains = ["xitrust.com"]\ntrusted_authserv_id = "mx.xitrust.com"\n')
    code, out, err = run(capsys, "check-config", "--config", str(path))
    assert code == 0 and "warning" not in err
    assert tomllib.loads(out)["desk"]["agent_notify"] == ["team@xitrust.com"]
