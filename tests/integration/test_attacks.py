"""Issue #10: what an attacker with nothing but an e-mail client tried, each
as a regression test from raw bytes through ``gateway ingest`` into SQLite
and PostgreSQL (header injection through Message-IDs is in test_outbound,
the SMTP-level items in test_smtp_listener)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session, select

from gateway.app import App
from gateway.store.models import Account, Comment, InboundMail, OutboundMail, Ticket
from tests.integration.test_rules import RULES, configured, make_agent, make_org

ANNA = "anna.mueller@bauwerk-ag.de"
ANNA_MID = "<new-request-de-0001@EXCH01.bauwerk-ag.de>"


@pytest.fixture
def desk(app: App) -> App:
    return configured(app, security={"trusted_authserv_id": "mx.xitrust.com"})


def feed(app: App, tmp_path: Path, raw: bytes, name: str = "attack.eml") -> InboundMail:
    path = tmp_path / name
    path.write_bytes(raw)
    assert app.ingest([str(path)], None, progress=False) == 0
    with Session(app.engine) as s:
        row = s.exec(select(InboundMail).order_by(InboundMail.id.desc())).first()  # type: ignore[union-attr]
        assert row is not None
        return row


def mail(headers: str, body: str = "Bitte ignorieren Sie die letzte Nachricht.") -> bytes:
    return (headers.strip().replace("\n", "\r\n") + "\r\n\r\n" + body + "\r\n").encode()


def anna_opens_a_ticket(app: App) -> None:
    make_org(app, "Bauwerk AG", "bauwerk-ag.de")
    assert app.ingest([str(RULES / "new-request-de.eml")], None, progress=False) == 0


def comment_authors(app: App, key: str) -> list[str]:
    with Session(app.engine) as s:
        t = s.exec(select(Ticket).where(Ticket.key == key)).one()
        rows = s.exec(select(Comment, Account).join(Account).where(Comment.ticket_id == t.id))
        return [a.email for _, a in rows]


# -- 3. a display name that looks like an address -------------------------------

@pytest.mark.parametrize("from_value", [
    "anna.mueller@bauwerk-ag.de <attacker@evil.example>",
    "Name: anna.mueller@bauwerk-ag.de <attacker@evil.example>",
    '"anna.mueller@bauwerk-ag.de" <attacker@evil.example>',
])
def test_an_address_as_display_name_does_not_make_the_mail_annas(
    desk: App, tmp_path: Path, from_value: str
) -> None:
    anna_opens_a_ticket(desk)
    row = feed(desk, tmp_path, mail(f"""
From: {from_value}
To: servicedesk@xitrust.com
Subject: AW: Signatur schlägt fehl: Fehler E-4012
Message-ID: <attack-1@evil.example>
In-Reply-To: {ANNA_MID}
Authentication-Results: mx.xitrust.com; dmarc=pass header.from=evil.example
"""))
    assert row.from_addr == "attacker@evil.example"
    assert comment_authors(desk, "SD-1") == []  # nothing on Anna's ticket
    assert row.disposition == "created SD-2"  # a stranger's ticket of its own
    with Session(desk.engine) as s:
        attacker = s.exec(select(Account).where(Account.email == "attacker@evil.example")).one()
        assert attacker.organization_id is None  # did not join Anna's organization by her domain


@pytest.mark.parametrize(("from_values", "reason"), [
    (["anna.mueller@bauwerk-ag.de, attacker@evil.example"], "more than one address"),
    (["Anna <anna.mueller@bauwerk-ag.de>, Eve <attacker@evil.example>"], "more than one address"),
    (["undisclosed-recipients:;"], "does not name an address"),
    (["Anna Müller"], "does not name an address"),
    (["Anna <anna.mueller@bauwerk-ag.de> <attacker@evil.example>"], "more than one address"),
    (["Anna <anna mueller@bauwerk-ag.de>"], "malformed"),
    (["Anna <anna.mueller@bauwerk-ag.de>", "Eve <attacker@evil.example>"], "more than one From header"),
    (["<anna.mueller@bauwerk-ag.de"], "malformed"),
])
def test_a_from_without_exactly_one_address_is_quarantined(
    desk: App, tmp_path: Path, from_values: list[str], reason: str
) -> None:
    froms = "\n".join(f"From: {v}" for v in from_values)
    row = feed(desk, tmp_path, mail(f"""
{froms}
To: servicedesk@xitrust.com
Subject: Hallo
Message-ID: <from-{len(reason)}@evil.example>
"""))
    assert row.status == "quarantined", row.disposition
    assert reason in (row.disposition or ""), row.disposition
    with Session(desk.engine) as s:
        assert s.exec(select(Ticket)).all() == []
        assert s.exec(select(OutboundMail)).all() == []


def test_quoted_names_with_commas_and_comments_still_parse(desk: App, tmp_path: Path) -> None:
    row = feed(desk, tmp_path, mail("""
From: "M\\"uller, Anna (IT)" (Bauwerk) <Anna.Mueller@Bauwerk-AG.de> (via Outlook)
To: servicedesk@xitrust.com
Subject: Hallo
Message-ID: <quoted-1@bauwerk-ag.de>
"""))
    assert (row.status, row.from_addr) == ("done", ANNA)


# -- 6. Authentication-Results below the genuine one -------------------------------

def test_a_forged_authentication_results_below_the_genuine_one_is_not_believed(
    desk: App, tmp_path: Path
) -> None:
    make_agent(desk, "max@xitrust.com")
    anna_opens_a_ticket(desk)
    row = feed(desk, tmp_path, mail(f"""
Authentication-Results: mx.xitrust.com; dmarc=fail header.from=xitrust.com
Received: from evil.example by mx.xitrust.com; Fri, 27 Nov 2026 09:40:00 +0100
Authentication-Results: mx.xitrust.com; dmarc=pass header.from=xitrust.com
From: Max Agent <max@xitrust.com>
To: servicedesk@xitrust.com
Subject: AW: Signatur schlägt fehl: Fehler E-4012
Message-ID: <forged-ar@evil.example>
In-Reply-To: {ANNA_MID}
"""))
    # Not the agent (what becomes of untrusted agent mail is issue #15's): no
    # comment on the customer's ticket.
    assert row.disposition != "commented SD-1"
    assert comment_authors(desk, "SD-1") == []


def test_the_topmost_trusted_authentication_results_gives_agent_rights(desk: App, tmp_path: Path) -> None:
    make_agent(desk, "max@xitrust.com")
    anna_opens_a_ticket(desk)
    row = feed(desk, tmp_path, mail(f"""
Authentication-Results: mx.xitrust.com; dkim=pass header.d=xitrust.com; dmarc=pass header.from=xitrust.com
Received: from mail.xitrust.com by mx.xitrust.com; Fri, 27 Nov 2026 09:40:00 +0100
Authentication-Results: mx.xitrust.com; dmarc=fail header.from=xitrust.com
From: Max Agent <max@xitrust.com>
To: servicedesk@xitrust.com
Subject: AW: Signatur schlägt fehl: Fehler E-4012
Message-ID: <genuine-ar@xitrust.com>
In-Reply-To: {ANNA_MID}
""", body="Wir kümmern uns darum."))
    assert row.disposition == "commented SD-1"
    assert comment_authors(desk, "SD-1") == ["max@xitrust.com"]


# -- 9. robots, sub-addresses, spam ------------------------------------------------

# Every robot marker SPEC §3 lists, as raw header lines: none may create a
# ticket, an account or a mail.
ROBOT_HEADERS = [
    "Auto-Submitted: auto-replied",
    "Auto-Submitted: auto-generated",
    "Precedence: bulk",
    "Precedence: junk",
    "Precedence: list",
    "X-Autoreply: yes",
    "X-Autorespond: Out of office",
    "X-Mail-Autoreply: yes",
    "X-Autoreply-From: eve@evil.example",
    "List-Id: <newsletter.evil.example>",
    "Return-Path: <>",
    "Return-Path: <MAILER-DAEMON@evil.example>",
]


@pytest.mark.parametrize("robot_header", ROBOT_HEADERS)
def test_robot_markers_from_raw_bytes_have_no_effect(desk: App, tmp_path: Path, robot_header: str) -> None:
    row = feed(desk, tmp_path, mail(f"""
{robot_header}
From: Eve <eve@evil.example>
To: servicedesk@xitrust.com
Subject: Hallo
Message-ID: <robot@evil.example>
"""))
    assert row.status == "ignored", (robot_header, row.disposition)
    with Session(desk.engine) as s:
        assert s.exec(select(Ticket)).all() == []
        assert s.exec(select(Account)).all() == []
        assert s.exec(select(OutboundMail)).all() == []


@pytest.mark.parametrize("sender", ["servicedesk+sd-1@xitrust.com", "SERVICEDESK+x@XiTrust.com"])
def test_mail_from_a_sub_address_of_the_desk_is_a_loop(desk: App, tmp_path: Path, sender: str) -> None:
    row = feed(desk, tmp_path, mail(f"""
From: XiTrust Servicedesk <{sender}>
To: servicedesk@xitrust.com
Subject: [SD-1] Neue Antwort
Message-ID: <loop@xitrust.com>
"""))
    assert (row.status, row.disposition) == ("ignored", "ignored: loop")


@pytest.mark.parametrize("flag", ["X-Spam-Flag: YES", "X-Spam: Yes"])
def test_mail_the_mta_marked_as_spam_is_quarantined_without_reply(
    desk: App, tmp_path: Path, flag: str
) -> None:
    row = feed(desk, tmp_path, mail(f"""
{flag}
From: Eve <eve@evil.example>
To: servicedesk@xitrust.com
Subject: Cheap watches
Message-ID: <spam@evil.example>
"""))
    assert row.status == "quarantined" and "spam" in (row.disposition or ""), row.disposition
    with Session(desk.engine) as s:
        assert s.exec(select(Account)).all() == []
        assert s.exec(select(OutboundMail)).all() == []


def test_x_spam_flag_no_is_normal_mail(desk: App, tmp_path: Path) -> None:
    row = feed(desk, tmp_path, mail("""
X-Spam-Flag: NO
X-Spam-Status: No, score=-1.0
From: Anna <anna.mueller@bauwerk-ag.de>
To: servicedesk@xitrust.com
Subject: Hallo
Message-ID: <ham@bauwerk-ag.de>
"""))
    assert row.disposition == "created SD-1"


# -- 5. bytes PostgreSQL's text columns cannot hold -----------------------------------

def _nul_mail(n: int) -> bytes:
    long_id = "x" * 3000
    return (
        f"From: Eve\x00 Evil <eve{n}@evil.example>\r\nTo: servicedesk@xitrust.com\r\n"
        f"Subject: Hallo\x00Welt {'y' * 1200}\r\n"
        f"Message-ID: <nul\x00{n}@evil.example>\r\n"
        f"References: <{long_id}@evil.example> <ok{n}@evil.example>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nText mit \x00 NUL\r\n"
        f"--b\r\nContent-Type: application/x-{'z' * 400}\x00; name=\"a\x00b.pdf\"\r\n"
        "Content-Disposition: attachment; filename=\"a\x00b.pdf\"\r\n\r\nPDF\r\n--b--\r\n"
    ).encode("latin-1")


def test_nul_bytes_and_overlong_values_are_stored_on_every_backend(desk: App, tmp_path: Path) -> None:
    """NUL in a Message-ID once made PostgreSQL fail the spool insert:
    `gateway ingest` printed a traceback and exited 0 having committed
    nothing (an mbox lost all its messages). Any bytes that SQLite takes,
    PostgreSQL takes, and one message never fails its batch."""
    mbox = tmp_path / "three.mbox"
    parts = [b"From MAILER-DAEMON Fri Nov 27 09:30:00 2026\n" + raw.replace(b"\r\n", b"\n") + b"\n"
             for raw in (mail("From: Anna <anna@bauwerk-ag.de>\nSubject: eins\nMessage-ID: <one@b.de>"),
                         _nul_mail(1),
                         mail("From: Anna <anna@bauwerk-ag.de>\nSubject: drei\nMessage-ID: <three@b.de>"))]
    mbox.write_bytes(b"".join(parts))
    assert desk.ingest([str(mbox)], None, progress=False) == 0
    with Session(desk.engine) as s:
        rows = s.exec(select(InboundMail).order_by(InboundMail.id)).all()  # type: ignore[arg-type]
        assert [r.status for r in rows] == ["done", "done", "done"], [r.disposition for r in rows]
        evil = rows[1]
        assert evil.message_id is not None and "\x00" not in evil.message_id
        tickets = s.exec(select(Ticket).order_by(Ticket.id)).all()  # type: ignore[arg-type]
        assert len(tickets) == 3 and "\x00" not in tickets[1].summary


def test_ingest_never_exits_0_for_mail_it_did_not_commit(
    desk: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whatever goes wrong while spooling (here: a bug injected into the
    spool), the exit code tells the MTA to try again."""
    from gateway.store.spool import Spool

    def broken(self: Spool, items: object) -> list[int]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Spool, "put_many", broken)
    path = tmp_path / "m.eml"
    path.write_bytes(mail("From: Anna <anna@bauwerk-ag.de>\nSubject: x\nMessage-ID: <bug@b.de>"))
    assert desk.ingest([str(path)], None, progress=False) == 75
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "temporary failure: internal error while spooling (RuntimeError)" in err


# -- 2. forged bounces ------------------------------------------------------------------

def dsn(failed: str, *, original_id: str | None, tag: str = "",
        sender: str = "MAILER-DAEMON@mx.evil.example") -> bytes:
    returned = (
        "--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: servicedesk@xitrust.com\r\nTo: {failed}\r\nMessage-ID: {original_id}\r\n\r\n"
        if original_id else ""
    )
    return (
        f"From: Mail Delivery System <{sender}>\r\nTo: servicedesk@xitrust.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-%s@mx.evil.example>\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
        "--b\r\nContent-Type: text/plain\r\n\r\nCould not deliver.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.evil.example\r\n\r\n"
        f"Final-Recipient: rfc822; {failed}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        f"{returned}--b--\r\n"
    ).encode() % (tag + str(abs(hash((failed, original_id))))).encode()


def bounced(app: App, email: str) -> bool:
    with Session(app.engine) as s:
        return s.exec(select(Account).where(Account.email == email)).one().bounced_at is not None


def sent_invitation(app: App) -> OutboundMail:
    """Anna's ticket, and the desk's mail to her as the sender records it."""
    from gateway.outbound.sender import flush_outbox

    anna_opens_a_ticket(app)
    flush_outbox(app)
    with Session(app.engine) as s:
        row = s.exec(select(OutboundMail)).one()
        assert row.status == "sent" and row.message_id and row.to_addr == ANNA
        return row


def test_a_bounce_that_refers_to_no_desk_mail_silences_nobody(desk: App, tmp_path: Path) -> None:
    sent_invitation(desk)
    row = feed(desk, tmp_path, dsn(ANNA, original_id=None))
    assert row.disposition == "ignored: bounce (of no mail the desk sent to a failed recipient)"
    row = feed(desk, tmp_path, dsn(ANNA, original_id="<made-up@xitrust.com>"), "2.eml")
    assert row.status == "ignored"
    assert not bounced(desk, ANNA)


def test_a_bounce_must_name_the_desk_mails_recipient(desk: App, tmp_path: Path) -> None:
    """Anyone who got one desk mail knows its Message-ID: Kai cannot use
    his to silence Anna, nor Anna's to silence Kai."""
    out = sent_invitation(desk)
    feed(desk, tmp_path, dsn("kai.weber@bauwerk-ag.de", original_id=out.message_id))
    assert not bounced(desk, ANNA)
    with Session(desk.engine) as s:
        assert s.exec(select(OutboundMail)).one().status == "sent"
    # the genuine bounce of that mail
    row = feed(desk, tmp_path, dsn(ANNA, original_id=out.message_id), "2.eml")
    assert row.disposition == "ignored: bounce"
    assert bounced(desk, ANNA)
    with Session(desk.engine) as s:
        assert s.exec(select(OutboundMail)).one().status == "bounced"


def test_a_verp_bounce_needs_the_right_token(desk: App, tmp_path: Path) -> None:
    from gateway import verp

    out = sent_invitation(desk)
    assert out.id is not None and out.message_id is not None
    good = verp.return_path("servicedesk@xitrust.com", out.id, out.message_id)
    forged = f"servicedesk+bounce-{out.id}-{'0' * 12}@xitrust.com"
    for n, rcpt in enumerate((forged, good)):
        path = tmp_path / f"v{n}.eml"
        path.write_bytes(dsn(ANNA, original_id=None, tag=str(n)))  # quotes nothing of the mail
        assert desk.ingest([str(path)], rcpt, progress=False) == 0
        assert bounced(desk, ANNA) == (rcpt == good)


def test_mail_from_a_bounced_address_or_the_operator_clears_it(desk: App, tmp_path: Path) -> None:
    from gateway.cli import main

    out = sent_invitation(desk)
    feed(desk, tmp_path, dsn(ANNA, original_id=out.message_id))
    assert bounced(desk, ANNA)
    feed(desk, tmp_path, mail("""
Authentication-Results: mx.xitrust.com; dmarc=pass header.from=bauwerk-ag.de
From: Anna <anna.mueller@bauwerk-ag.de>
To: servicedesk@xitrust.com
Subject: Neue Adresse funktioniert wieder
Message-ID: <back@bauwerk-ag.de>
"""), "2.eml")
    assert not bounced(desk, ANNA)
    with Session(desk.engine) as s:  # and she is told about her new ticket
        assert [o.to_addr for o in s.exec(select(OutboundMail))] == [ANNA, ANNA]
    feed(desk, tmp_path, dsn(ANNA, original_id=out.message_id, tag="again"), "3.eml")
    assert bounced(desk, ANNA)
    import os
    os.environ["GATEWAY__DATABASE__URL"] = desk.settings.database.url
    os.environ["GATEWAY__STORAGE__BLOBS"] = desk.settings.storage.blobs
    try:
        assert main(["account", "unbounce", ANNA.upper()]) == 0
        assert main(["account", "unbounce", "nobody@example.org"]) == 1
    finally:
        del os.environ["GATEWAY__DATABASE__URL"], os.environ["GATEWAY__STORAGE__BLOBS"]
    assert not bounced(desk, ANNA)


# -- 7. backscatter -------------------------------------------------------------------

def stranger(n: int, ar: str | None = "dmarc=pass header.from=evil{n}.example") -> bytes:
    header = f"Authentication-Results: mx.xitrust.com; {ar.format(n=n)}\n" if ar else ""
    return mail(f"""
{header}From: Someone <someone@evil{n}.example>
To: servicedesk@xitrust.com
Subject: Frage {n}
Message-ID: <stranger-{n}@evil{n}.example>
""")


def outbox_rows(app: App) -> list[OutboundMail]:
    with Session(app.engine) as s:
        return list(s.exec(select(OutboundMail).order_by(OutboundMail.id)).all())  # type: ignore[arg-type]


def test_automatic_mail_to_unverified_addresses_is_capped_desk_wide(
    app: App, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """500 forged From addresses once made the desk send 500 invitations to
    third parties within seconds. Over the desk-wide cap mail waits and goes
    out in order; what waits a day is dropped, logged and counted."""
    import datetime as dt

    from gateway.outbound.sender import flush_outbox
    from gateway.store import read
    from gateway.store.db import reading
    from gateway.store.models import utcnow

    desk = configured(app, security={"max_unverified_mails_per_hour": 3})
    for n in range(6):
        feed(desk, tmp_path, stranger(n, ar=None), f"{n}.eml")
    anna_opens_a_ticket(desk)  # Anna signs up: mail to her is not capped
    from tests.integration.test_outbound import activate
    activate(desk, ANNA)
    now = utcnow()
    assert flush_outbox(desk, now=now) == {"sent": 4, "deferred": 3}
    sent = [r.to_addr for r in outbox_rows(desk) if r.status == "sent"]
    assert sent == ["someone@evil0.example", "someone@evil1.example", "someone@evil2.example", ANNA]
    assert flush_outbox(desk, now=now + dt.timedelta(minutes=30)) == {}
    assert flush_outbox(desk, now=now + dt.timedelta(minutes=61)) == {"sent": 3}
    assert {r.status for r in outbox_rows(desk)} == {"sent"}
    assert [r.to_addr for r in outbox_rows(desk) if r.to_addr != ANNA][3:] == [
        "someone@evil3.example", "someone@evil4.example", "someone@evil5.example"]
    # The next burst finds the cap full; a day later it is dropped, not sent.
    for n in range(6, 10):
        feed(desk, tmp_path, stranger(n, ar=None), f"{n}.eml")
    later = now + dt.timedelta(minutes=62)
    assert flush_outbox(desk, now=later) == {"deferred": 4}
    with reading(desk.engine) as session:
        assert read.status_json(session)["outbox_unverified_capped"] == {"waiting": 4, "dropped": 0}
    assert flush_outbox(desk, now=later + dt.timedelta(hours=25)) == {"failed": 4}
    with reading(desk.engine) as session:
        assert read.status_json(session)["outbox_unverified_capped"] == {"waiting": 0, "dropped": 4}
    assert "dropped: not sent: desk-wide hourly limit for unverified addresses" in caplog.text


@pytest.mark.parametrize(("ar", "invited"), [
    (None, False),
    ("dmarc=fail header.from=evil{n}.example", False),
    ("spf=pass smtp.mailfrom=bounces.mailer.example", False),  # SPF of somebody else's domain
    ("spf=pass smtp.mailfrom=evil{n}.example", True),  # aligned SPF
    ("dkim=pass header.d=evil{n}.example", True),
    ("dmarc=pass header.from=evil{n}.example", True),
])
def test_with_a_trusted_mta_strangers_must_pass_dmarc_to_get_mail(
    desk: App, tmp_path: Path, ar: str | None, invited: bool
) -> None:
    row = feed(desk, tmp_path, stranger(1, ar))
    assert row.disposition == "created SD-1"  # the request is taken either way
    assert [r.template for r in outbox_rows(desk)] == (["signup_invitation"] if invited else [])


# -- 4. inputs that made parsing super-linear ------------------------------------------
# A generous timeout is the hang guard, not a timing assertion (bench/bench_hostile.py
# has the figures: before the fix a 128 KB X-Loop took 90 s, after it 10 ms).

HUGE = 1024 * 1024


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("headers", "outcome"), [
    (b"X-Loop: " + b"a" * HUGE, "created SD-1"),
    (b"X-Loop: " + b"a@" * (HUGE // 2), "created SD-1"),
    (b"Authentication-Results: " + b"mx.xitrust.com; ((" * (HUGE // 18), "created SD-1"),
    (b"Subject: " + b"=?utf-8?q?a?= " * (HUGE // 14), "created SD-1"),
    (b"References: " + b"<" * HUGE, "created SD-1"),
    (b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b" + b'; a="b' * (HUGE // 6),
     "quarantined: content-type header longer than 8192 bytes"),
], ids=["x-loop", "x-loop-words", "auth-results", "subject-words", "references", "content-type"])
def test_huge_headers_cost_linear_time(desk: App, tmp_path: Path, headers: bytes, outcome: str) -> None:
    raw = (b"From: Eve <eve@evil.example>\r\nTo: servicedesk@xitrust.com\r\n"
           b"Message-ID: <huge@evil.example>\r\n" + headers + b"\r\n\r\nbody\r\n")
    row = feed(desk, tmp_path, raw)
    assert row.disposition == outcome


@pytest.mark.timeout(120)
def test_a_from_folded_over_160000_lines_is_quarantined(desk: App, tmp_path: Path) -> None:
    raw = (b"From: a" + b"\r\n a" * 160_000 + b" <eve@evil.example>\r\nTo: servicedesk@xitrust.com\r\n"
           b"Message-ID: <folded@evil.example>\r\n\r\nbody\r\n")
    row = feed(desk, tmp_path, raw)
    assert row.disposition == "quarantined: From header longer than 4096 characters"
