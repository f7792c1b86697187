"""The desk operations (``gateway.desk``) through their entry points: mail
into ``gateway ingest`` and the ``gateway ticket …`` commands, on SQLite and
PostgreSQL. The same change made by mail and at the command line has the
same effects, notifications and history; every change is in ``ticket show
--json``'s history; who may do what is checked inside the operations."""

from __future__ import annotations

import json
import mailbox
from pathlib import Path
from typing import Any

import pytest

from gateway.app import App
from gateway.store import repo
from gateway.store.db import connection
from tests.clicall import cli_config, gateway, ok

ANNA = "anna.mueller@bauwerk-ag.de"
KAI = "kai.weber@bauwerk-ag.de"
SAM = "sam.agent@xitrust.com"
DMARC_PASS = "Authentication-Results: mx.xitrust.com; dkim=pass header.d={d}; dmarc=pass header.from={d}\n"


@pytest.fixture
def config(app: App, tmp_path: Path) -> str:
    """A config file for the CLI on ``app``'s database; mail goes to a Maildir."""
    return cli_config(app, tmp_path, '[security]\ntrusted_authserv_id = "mx.xitrust.com"\n')


def show(config: str, capsys: pytest.CaptureFixture[str], key: str) -> dict[str, Any]:
    data = json.loads(ok(config, capsys, "ticket", "show", key, "--json"))
    assert isinstance(data, dict)
    return data


def outbox(config: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    rows = json.loads(ok(config, capsys, "outbox", "list", "--json"))
    assert isinstance(rows, list)
    return rows


def send(config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], raw: str, name: str) -> None:
    path = tmp_path / f"{name}.eml"
    path.write_bytes(raw.replace("\n", "\r\n").encode())
    ok(config, capsys, "ingest", "--no-progress", str(path))


def new_request(n: int) -> str:
    return (
        f"From: Anna Müller <{ANNA}>\nTo: servicedesk@xitrust.com\nCc: Kai Weber <{KAI}>\n"
        f"Subject: Signatur schlägt fehl ({n})\nMessage-ID: <req-{n}@bauwerk-ag.de>\n"
        + DMARC_PASS.format(d="bauwerk-ag.de").rstrip("\n")
        + "\nContent-Type: text/plain; charset=utf-8\n\nSeit heute geht nichts mehr.\n"
    )


def agent(app: App, email: str = SAM) -> None:
    with connection(app.engine) as conn:
        repo.insert_account(conn, email, "Sam Agent", "agent", None, "de")


def comparable(history: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The history without what differs between two tickets anyway."""
    return [(h["actor"], h["action"], h["from"], h["to"]) for h in history]


def test_a_comment_by_mail_and_by_cli_has_the_same_effects(
    app: App, config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(config, capsys, "org", "create", "Bauwerk AG", "--domain", "bauwerk-ag.de")
    agent(app)
    send(config, tmp_path, capsys, new_request(1), "req1")
    send(config, tmp_path, capsys, new_request(2), "req2")
    before = len(outbox(config, capsys))
    answer = "Bitte installieren Sie das Update 9.2.3.\n"
    # SD-1: the agent answers by mail, from a source the MTA vouched for...
    send(config, tmp_path, capsys, (
        f"From: Sam Agent <{SAM}>\nTo: servicedesk@xitrust.com\nSubject: Re: Signatur schlägt fehl (1)\n"
        "Message-ID: <answer-1@xitrust.com>\nIn-Reply-To: <req-1@bauwerk-ag.de>\n"
        + DMARC_PASS.format(d="xitrust.com").rstrip("\n")
        + f"\nContent-Type: text/plain; charset=utf-8\n\n{answer}"
    ), "answer1")
    # ...SD-2: the same answer at the command line.
    body = tmp_path / "answer.txt"
    body.write_text(answer)
    ok(config, capsys, "ticket", "comment", "SD-2", "--as", SAM, "--file", str(body))

    by_mail, by_cli = show(config, capsys, "SD-1"), show(config, capsys, "SD-2")
    assert by_mail["status"] == by_cli["status"] == "waiting_for_customer"
    assert [(c["author"], c["body"].strip(), c["public"]) for c in by_mail["comments"]] == [
        (SAM, answer.strip(), True)
    ]
    assert [(c["author"], c["body"].strip(), c["public"]) for c in by_cli["comments"]] == [
        (SAM, answer.strip(), True)
    ]
    assert (by_mail["comments"][0]["source"], by_cli["comments"][0]["source"]) == ("email", "cli")
    # The same notifications: to the reporter and the colleague she copied.
    mails = outbox(config, capsys)[before:]
    sent = {k: sorted((m["template"], m["to"]) for m in mails if m["ticket"] == k) for k in ("SD-1", "SD-2")}
    assert sent["SD-1"] == sent["SD-2"] == [("comment_added", ANNA), ("comment_added", KAI)]
    # The same history, apart from how each change arrived.
    expected = [
        (ANNA, "created", None, None),
        (ANNA, "shared", None, KAI),  # copied on her mail: a participant
        (SAM, "commented", None, "public"),
        (SAM, "status", "waiting_for_support", "waiting_for_customer"),
    ]
    assert comparable(by_mail["history"]) == comparable(by_cli["history"]) == expected
    assert [h["source"] for h in by_mail["history"]] == ["email"] * 4
    assert [h["source"] for h in by_cli["history"]] == ["email", "email", "cli", "cli"]
    assert all(h["mail_id"] is None for h in by_cli["history"][2:])
    assert by_mail["history"][2]["mail_id"] is not None
    assert by_mail["history"][2]["comment_id"] is not None
    # Why the mail landed where it did is kept with it.
    assert by_mail["threaded_by"] == by_cli["threaded_by"] == "new"
    assert by_mail["comments"][0]["threaded_by"] == "in-reply-to <req-1@bauwerk-ag.de>"
    assert by_cli["comments"][0]["threaded_by"] is None


def test_every_change_at_the_command_line_is_in_the_history(
    app: App, config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(config, capsys, "org", "create", "Bauwerk AG", "--domain", "bauwerk-ag.de")
    agent(app)
    send(config, tmp_path, capsys, new_request(1), "req1")
    ok(config, capsys, "ticket", "set", "SD-1", "--priority", "critical", "--type", "technical_support",
       "--field", "moxis_domain=moxis.bauwerk-ag.de", "--field", 'browser=["firefox","edge"]', "--as", SAM)
    ok(config, capsys, "ticket", "set", "SD-1", "--field", "moxis_domain=",
       "--field", 'browser=["firefox","edge"]')  # unchanged: not in the history
    ok(config, capsys, "ticket", "unshare", "SD-1", KAI, "--as", SAM)
    ok(config, capsys, "ticket", "share", "SD-1", "org", "--as", ANNA)
    assert "unchanged" in ok(config, capsys, "ticket", "share", "SD-1", "org", "--as", ANNA)
    ok(config, capsys, "ticket", "transition", "SD-1", "resolved", "--as", ANNA)
    ok(config, capsys, "ticket", "transition", "SD-1", "closed")
    data = show(config, capsys, "SD-1")
    assert (data["priority"], data["request_type"]) == ("critical", "technical_support")
    assert data["status"] == "closed"
    assert data["fields"] == {"browser": ["firefox", "edge"]}
    assert data["organization"] == "Bauwerk AG" and data["participants"] == []
    assert comparable(data["history"]) == [
        (ANNA, "created", None, None),
        (ANNA, "shared", None, KAI),
        (SAM, "priority", "medium", "critical"),
        (SAM, "request_type", "other", "technical_support"),
        (SAM, "fields", {"moxis_domain": None, "browser": None},
         {"moxis_domain": "moxis.bauwerk-ag.de", "browser": ["firefox", "edge"]}),
        ("system", "fields", {"moxis_domain": "moxis.bauwerk-ag.de"}, {"moxis_domain": None}),
        (SAM, "unshared", KAI, None),
        (ANNA, "shared", None, "Bauwerk AG"),
        (ANNA, "status", "waiting_for_support", "resolved"),
        ("system", "status", "resolved", "closed"),
    ]
    assert [h["source"] for h in data["history"][2:]] == ["cli"] * 8
    times = [h["at"] for h in data["history"]]
    assert times == sorted(times) and all(t.endswith("+00:00") for t in times)
    # Resolved and closed are told to the reporter, except the change she made herself.
    told = [(m["template"], m["to"]) for m in outbox(config, capsys) if m["template"] == "status_changed"]
    assert told == [("status_changed", ANNA)]


def test_who_may_do_what(app: App, config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok(config, capsys, "org", "create", "Bauwerk AG", "--domain", "bauwerk-ag.de")
    agent(app)
    send(config, tmp_path, capsys, new_request(1), "req1")
    with connection(app.engine) as conn:
        repo.insert_account(conn, "eve@evil-corp.example", "", "customer", None, "de")
        repo.insert_account(conn, "lisa@bauwerk-ag.de", "", "customer", None, "de")
        bauwerk = repo.org_by_domain(conn, "bauwerk-ag.de")
        assert bauwerk is not None
    ok(config, capsys, "org", "add-member", "Bauwerk AG", "lisa@bauwerk-ag.de")
    body = tmp_path / "body.txt"
    body.write_text("Hallo\n")
    eve = "eve@evil-corp.example"
    refused = [
        # Someone who may not see the ticket: not told more than that.
        (["ticket", "comment", "SD-1", "--as", eve, "--file", str(body)], "may not see SD-1"),
        (["ticket", "transition", "SD-1", "resolved", "--as", eve], "may not see SD-1"),
        (["ticket", "share", "SD-1", "org", "--as", eve], "may not see SD-1"),
        # A typo does not create an account whose comment is mailed out.
        (["ticket", "comment", "SD-1", "--as", "anna.mu@bauwerk-ag.de", "--file", str(body)], "no account"),
        # The reporter: no internal notes, no closing, no priority.
        (["ticket", "comment", "SD-1", "--as", ANNA, "--internal", "--file", str(body)], "only agents"),
        (["ticket", "transition", "SD-1", "closed", "--as", ANNA], "may not set SD-1 to closed"),
        (["ticket", "set", "SD-1", "--priority", "blocker", "--as", ANNA], "only agents"),
        # Sharing: a customer only inside the organization; a participant is not the reporter.
        (["ticket", "share", "SD-1", "eve@evil-corp.example", "--as", ANNA], "not in the organization"),
        (["ticket", "share", "SD-1", "lisa@bauwerk-ag.de", "--as", KAI], "only the reporter"),
        (["ticket", "share", "SD-1", "nobody@bauwerk-ag.de", "--as", ANNA], "no account"),
    ]
    for args, reason in refused:
        code, _, err = gateway(config, capsys, *args)
        assert code == 1 and reason in err, (args, err)
        assert err.count("\n") == 1, err  # one line, no traceback
    data = show(config, capsys, "SD-1")
    assert (data["status"], data["priority"], data["comments"]) == ("waiting_for_support", "medium", [])
    assert [h["action"] for h in data["history"]] == ["created", "shared"]
    code, _, _ = gateway(config, capsys, "account", "show", "anna.mu@bauwerk-ag.de")
    assert code == 1  # no phantom account
    # What they may do: a colleague on the ticket comments, the reporter
    # shares with her organization's people and resolves, reopens.
    ok(config, capsys, "ticket", "comment", "SD-1", "--as", KAI, "--file", str(body))
    ok(config, capsys, "ticket", "share", "SD-1", "lisa@bauwerk-ag.de", "--as", ANNA)
    ok(config, capsys, "ticket", "transition", "SD-1", "resolved", "--as", ANNA)
    ok(config, capsys, "ticket", "transition", "SD-1", "waiting_for_support", "--as", KAI)
    # An agent may share with anyone who has an account.
    ok(config, capsys, "ticket", "share", "SD-1", "eve@evil-corp.example", "--as", SAM)
    data = show(config, capsys, "SD-1")
    assert data["participants"] == ["eve@evil-corp.example", KAI, "lisa@bauwerk-ag.de"]
    assert comparable(data["history"])[2:] == [
        (KAI, "commented", None, "public"),
        (ANNA, "shared", None, "lisa@bauwerk-ag.de"),
        (ANNA, "status", "waiting_for_support", "resolved"),
        (KAI, "status", "resolved", "waiting_for_support"),
        (SAM, "shared", None, "eve@evil-corp.example"),
    ]


def test_a_person_shared_with_is_told_without_the_text_until_verified(
    app: App, config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(config, capsys, "org", "create", "Bauwerk AG", "--domain", "bauwerk-ag.de")
    send(config, tmp_path, capsys, new_request(1), "req1")
    ok(config, capsys, "org", "add-member", "Bauwerk AG", "lisa@bauwerk-ag.de")
    before = len(outbox(config, capsys))
    ok(config, capsys, "ticket", "share", "SD-1", "lisa@bauwerk-ag.de", "--as", ANNA)
    [row] = outbox(config, capsys)[before:]
    assert (row["template"], row["to"], row["ticket"]) == ("ticket_shared", "lisa@bauwerk-ag.de", "SD-1")
    assert json.loads(ok(config, capsys, "outbox", "flush", "--json")) == {"sent": before + 1}
    messages = list(mailbox.Maildir(str(tmp_path / "sent"), create=False))
    shared = [m for m in messages if m["To"] == "lisa@bauwerk-ag.de"]
    assert len(shared) == 1
    assert shared[0]["Subject"] == "[SD-1] Eine Anfrage wurde mit Ihnen geteilt"
    text = shared[0].as_bytes().decode("utf-8", "replace")
    assert "Signatur" not in text and "Seit heute" not in text  # lisa is not verified yet


def test_threading_is_kept_with_tickets_and_comments(
    app: App, config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    send(config, tmp_path, capsys, new_request(1), "req1")
    head = f"From: Anna Müller <{ANNA}>\nTo: servicedesk@xitrust.com\n" + DMARC_PASS.format(d="bauwerk-ag.de")
    tail = "Content-Type: text/plain; charset=utf-8\n\nNoch etwas.\n"
    send(config, tmp_path, capsys, head + "Subject: AW: [SD-1] x\nMessage-ID: <s@b>\n" + tail, "subject")
    send(config, tmp_path, capsys, head + "Subject: x\nMessage-ID: <r@b>\nReferences: <req-1@bauwerk-ag.de>\n"
         + tail, "references")
    ok(config, capsys, "ticket", "transition", "SD-1", "closed")
    send(config, tmp_path, capsys, head + "Subject: AW: x\nMessage-ID: <c@b>\nIn-Reply-To: <r@b>\n" + tail,
         "closed")
    one, two = show(config, capsys, "SD-1"), show(config, capsys, "SD-2")
    assert [c["threaded_by"] for c in one["comments"]] == ["subject SD-1", "references <req-1@bauwerk-ag.de>"]
    assert all(c["mail_id"] is not None for c in one["comments"])
    assert (two["linked_key"], two["threaded_by"]) == ("SD-1", "new: in-reply-to <r@b> is SD-1, closed")
    assert two["mail_id"] is not None
    assert [h["action"] for h in two["history"]] == ["created"]
