"""What the desk sends (outbound issue): templates in both locales,
multipart/alternative, threading headers, loop protection, retries against a
relay that is down, the hourly cap at send time, header injection, and the
"never echo to strangers" rule. Every mail travels over a real socket into
an aiosmtpd sink (tests/smtpsink.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from netutil import free_port
from smtpsink import SmtpSink
from sqlalchemy import select, update
from sqlmodel import Session

from gateway import admin
from gateway.app import App
from gateway.desk import notify, operations
from gateway.outbound.sender import OutboxSender, flush_outbox
from gateway.pipeline.reply_text import REPLY_MARKER_DE, REPLY_MARKER_EN
from gateway.store import repo
from gateway.store.db import connection, transaction
from gateway.store.models import Comment, MessageRef, OutboundMail, Ticket, utcnow
from gateway.store.repo import ACCOUNT, OUTBOX, TICKET

RULES = Path(__file__).parent.parent / "fixtures" / "rules"
ANNA = "anna.mueller@bauwerk-ag.de"
ORIGINAL_MID = "<new-request-de-0001@EXCH01.bauwerk-ag.de>"
DESK_HEADERS = {
    "from", "to", "reply-to", "subject", "date", "message-id", "in-reply-to", "references",
    "auto-submitted", "x-auto-response-suppress", "mime-version", "content-type", "content-language",
}


# -- helpers ---------------------------------------------------------------------


def configured(app: App, **sections: dict[str, Any]) -> App:
    """A new App on the same database whose settings differ in some sections."""
    update_: dict[str, Any] = {}
    for name, values in sections.items():
        update_[name] = getattr(app.settings, name).model_copy(update=values)
    new = App(app.settings.model_copy(update=update_))
    new.__dict__["engine"] = app.engine
    return new


def relayed(app: App, port: int, **outbound: Any) -> App:
    """The desk sending through the SMTP relay on ``port``."""
    return configured(
        app,
        outbound={"transport": "smtp", "host": "127.0.0.1", "port": port, "timeout": 5.0, **outbound},
        security={"trusted_authserv_id": "mx.xitrust.com"},
    )


def activate(
    app: App, email: str, name: str = "Anna Müller", locale: str = "de", role: str = "customer"
) -> None:
    """An account that completed signup (what ``account confirm`` leaves)."""
    with connection(app.engine) as conn:
        if repo.account_by_email(conn, email) is None:
            repo.insert_account(conn, email, name, role, None, locale)
        conn.execute(
            update(ACCOUNT).where(ACCOUNT.c.email == email).values(state="active", name=name, locale=locale)
        )


def ingest(app: App, *names: str) -> None:
    assert app.ingest([str(RULES / n) for n in names], None, progress=False) == 0


def ingest_raw(app: App, raw: bytes, tmp_path: Path, name: str = "mail.eml") -> None:
    path = tmp_path / name
    path.write_bytes(raw)
    assert app.ingest([str(path)], None, progress=False) == 0


def rows(app: App) -> list[OutboundMail]:
    with Session(app.engine) as s:
        return list(s.exec(select(OutboundMail).order_by(OutboundMail.id)).scalars())  # type: ignore[call-overload]


def comments(app: App, key: str) -> list[tuple[str, bool]]:
    with Session(app.engine) as s:
        t = s.exec(select(Ticket).where(Ticket.key == key)).scalars().one()  # type: ignore[call-overload]
        found = s.exec(select(Comment).where(Comment.ticket_id == t.id).order_by(Comment.id)).scalars()  # type: ignore[call-overload]
        return [(c.body, c.public) for c in found]


def header_names(raw: bytes) -> list[str]:
    """Top-level header names, read from the raw bytes themselves."""
    head = raw.split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b"\n")
    lines = [line for line in head.split(b"\n") if line and line[:1] not in b" \t"]
    return [line.split(b":", 1)[0].decode().lower() for line in lines]


@pytest.fixture
def sink() -> Any:
    with SmtpSink() as running:
        yield running


@pytest.fixture
def desk(app: App, sink: SmtpSink) -> App:
    return relayed(app, sink.port)


# -- headers, parts, locales, threading ------------------------------------------


@pytest.mark.parametrize("locale", ["de", "en"])
def test_acknowledgement_headers_parts_and_locale(desk: App, sink: SmtpSink, locale: str) -> None:
    activate(desk, ANNA, locale=locale)
    ingest(desk, "new-request-de.eml")
    assert flush_outbox(desk) == {"sent": 1}
    [got] = sink.take()
    msg = got.message
    assert got.rcpt_tos == (ANNA,)
    # a VERP return path: a bounce names this mail even when it quotes none of it
    assert re.fullmatch(r"servicedesk\+bounce-1-[0-9a-f]{12}@xitrust\.com", got.mail_from), got.mail_from
    assert msg["Subject"] == "[SD-1] Signatur schlägt fehl: Fehler E-4012"
    assert msg["From"] == "XiTrust Servicedesk <servicedesk@xitrust.com>"
    assert msg["To"] == f"Anna Müller <{ANNA}>"
    assert msg["Reply-To"] == "XiTrust Servicedesk <servicedesk@xitrust.com>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["Content-Language"] == locale
    assert msg["In-Reply-To"] == ORIGINAL_MID and msg["References"] == ORIGINAL_MID
    mid = msg["Message-ID"]
    assert mid.startswith("<") and mid.endswith("@xitrust.com>")
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    marker = REPLY_MARKER_DE if locale == "de" else REPLY_MARKER_EN
    text, html = got.text(), got.html()
    assert text.splitlines()[0] == marker and marker in html
    assert "SD-1" in text and "SD-1" in html
    assert "Signatur schlägt fehl" in text  # a verified reporter sees the summary
    greeting = "Guten Tag Anna Müller" if locale == "de" else "Hello Anna Müller"
    assert greeting in text
    assert set(header_names(got.raw)) <= DESK_HEADERS
    # Recorded: the row (sent, with its Message-ID and subject) and the thread.
    [row] = rows(desk)
    assert (row.status, row.message_id, row.attempts) == ("sent", mid, 1)
    assert row.subject == msg["Subject"] and row.sent_at is not None
    with Session(desk.engine) as s:
        refs = s.exec(select(MessageRef).where(MessageRef.message_id == mid)).scalars().all()  # type: ignore[call-overload]
        assert [(r.direction, r.ticket_id) for r in refs] == [("outbound", row.ticket_id)]


def test_reply_to_acknowledgement_becomes_comment_with_new_text_only(
    desk: App, sink: SmtpSink, tmp_path: Path
) -> None:
    activate(desk, ANNA)
    ingest(desk, "new-request-de.eml")
    flush_outbox(desk)
    [ack] = sink.take()
    quoted = "\n".join("> " + line if line else ">" for line in ack.text().splitlines())
    # As Thunderbird writes it: the subject with AW:, In-Reply-To the ack,
    # the whole ack quoted below an attribution line.
    reply = (
        f"From: Anna Müller <{ANNA}>\r\nTo: servicedesk@xitrust.com\r\n"
        f"Subject: AW: {ack.message['Subject']}\r\n"
        "Date: Fri, 27 Nov 2026 11:00:00 +0100\r\nMessage-ID: <reply-to-ack-1@bauwerk-ag.de>\r\n"
        f"In-Reply-To: {ack.message['Message-ID']}\r\n"
        f"References: {ORIGINAL_MID} {ack.message['Message-ID']}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
        "Danke! Der Fehler tritt nur im Firefox auf, Edge geht.\r\n\r\n"
        f"Am 27.11.2026 um 09:31 schrieb XiTrust Servicedesk:\r\n{quoted}\r\n"
    ).encode()
    # The ack's subject carries the key too; make sure In-Reply-To alone threads:
    ingest_raw(desk, reply, tmp_path)
    assert comments(desk, "SD-1") == [("Danke! Der Fehler tritt nur im Firefox auf, Edge geht.", True)]


def test_comment_added_threads_to_the_comment_and_carries_its_text(desk: App, sink: SmtpSink) -> None:
    activate(desk, ANNA)
    ingest(desk, "new-request-de.eml")
    flush_outbox(desk)
    [ack] = sink.take()
    activate(desk, "sam.agent@xitrust.com", name="Sam Agent", role="agent")
    answer = "Bitte leeren Sie den Browser-Cache.\nDanke!"
    desk.comment("SD-1", "sam.agent@xitrust.com", answer, internal=False)
    desk.comment("SD-1", "sam.agent@xitrust.com", "#intern: Kunde hat alte Version", internal=True)
    assert flush_outbox(desk) == {"sent": 1}  # the internal note produces nothing
    [got] = sink.take()
    msg = got.message
    assert msg["Subject"] == "[SD-1] Signatur schlägt fehl: Fehler E-4012"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert "Bitte leeren Sie den Browser-Cache.\nDanke!" in got.text()
    assert "Sam Agent" in got.text() and "alte Version" not in got.raw.decode("ascii", "replace")
    assert "Bitte leeren Sie den Browser-Cache.<br>" in got.html()
    # Threaded under the customer's mail and our acknowledgement.
    assert msg["In-Reply-To"] == ack.message["Message-ID"]
    assert msg["References"].split() == [ORIGINAL_MID, ack.message["Message-ID"]]


def test_status_changes_are_told_to_reporter_and_participants(desk: App, sink: SmtpSink) -> None:
    activate(desk, ANNA)
    ingest(desk, "new-request-de.eml")
    flush_outbox(desk)
    sink.take()
    with connection(desk.engine) as conn:
        kai = repo.insert_account(conn, "kai.weber@bauwerk-ag.de", "", "customer", None, "en")
        ticket = repo.ticket_by_key(conn, "SD-1")
        assert ticket is not None
        repo.add_participant(conn, ticket.id, kai.id)
    for status in ("waiting_for_customer", "resolved", "waiting_for_support", "closed"):
        desk.operate("SD-1", None, operations.transition, status)
    flush_outbox(desk)
    got = sorted((r.rcpt_tos[0], r.message["Subject"]) for r in sink.take())
    assert got == sorted(
        [
            (ANNA, "[SD-1] Gelöst: Signatur schlägt fehl: Fehler E-4012"),
            (ANNA, "[SD-1] Wieder geöffnet: Signatur schlägt fehl: Fehler E-4012"),
            (ANNA, "[SD-1] Geschlossen: Signatur schlägt fehl: Fehler E-4012"),
            # An unverified participant learns the key and the new state only.
            ("kai.weber@bauwerk-ag.de", "[SD-1] Resolved"),
            ("kai.weber@bauwerk-ag.de", "[SD-1] Reopened"),
            ("kai.weber@bauwerk-ag.de", "[SD-1] Closed"),
        ]
    )


# -- never echo to strangers --------------------------------------------------------


SECRETS_OF_THE_MAIL = ("Signatur", "E-4012", "MOXIS", "Unterschreiben", "Firefox", "Müller")


def test_unverified_sender_gets_invitation_without_any_of_its_text(desk: App, sink: SmtpSink) -> None:
    ingest(desk, "new-request-de.eml")
    assert [(r.template, r.to_addr) for r in rows(desk)] == [("signup_invitation", ANNA)]
    flush_outbox(desk)
    [got] = sink.take()
    raw = got.raw.decode("ascii", "replace")
    everything = "\n".join([raw, got.message["Subject"], got.text(), got.html()])
    for word in SECRETS_OF_THE_MAIL:
        assert word not in everything, word
    assert got.message["Subject"] == "[SD-1] Ihre Anfrage ist eingegangen – bitte registrieren Sie sich"
    assert got.message["To"] == ANNA  # no display name taken from the stranger's mail
    assert "SD-1" in got.text() and "http://localhost:8080/signup/" in got.text()
    assert got.message["Auto-Submitted"] == "auto-replied"


def test_unverified_recipient_gets_no_comment_text(desk: App, sink: SmtpSink) -> None:
    ingest(desk, "new-request-de.eml")
    flush_outbox(desk)
    sink.take()
    activate(desk, "sam.agent@xitrust.com", name="Sam Agent", role="agent")
    desk.comment("SD-1", "sam.agent@xitrust.com", "Das Passwort lautet Geheim123", internal=False)
    flush_outbox(desk)
    [got] = sink.take()
    everything = "\n".join([got.raw.decode("ascii", "replace"), got.text(), got.html()])
    assert "Geheim123" not in everything and "Signatur" not in everything
    assert got.message["Subject"] == "[SD-1] Neue Antwort zu Ihrer Anfrage"


# -- header injection (CVE-2024-6923 and friends) ------------------------------------------

HOSTILE_SUMMARIES = [
    "=?UTF-8?Q?Hallo=0ABcc:_evil@attacker.example?=",
    "=?UTF-8?B?SGFsbG8KQmNjOiBldmlsQGF0dGFja2VyLmV4YW1wbGU=?=",
    "Hallo\r\nBcc: evil@attacker.example",
    "Hallo\nX-Injected: 1",
    "Hallo\u2028Bcc: evil@attacker.example\u2029X-Injected: 1",
    "Hallo\x0bBcc: evil@attacker.example\x0cX-Injected: 1\x85Bcc: a@b.c",
    # double-encoded: decoding once leaves an encoded newline for the email package
    "=?UTF-8?Q?=3D=3FUTF-8=3FQ=3FHallo=3D0ABcc:=5Fevil@attacker.example=3F=3D?=",
]


def test_hostile_summaries_never_become_headers(desk: App, sink: SmtpSink) -> None:
    activate(desk, ANNA)
    ingest(desk, "new-request-de.eml")
    flush_outbox(desk)
    sink.take()
    for n, summary in enumerate(HOSTILE_SUMMARIES):
        with connection(desk.engine) as conn:
            conn.execute(update(TICKET).where(TICKET.c.key == "SD-1").values(summary=summary))
            ticket = repo.ticket_by_key(conn, "SD-1")
            account = repo.account_by_email(conn, ANNA)
            assert ticket is not None and account is not None
            notify.queue(conn, desk.settings, account, "request_created", ticket, {"ticket_key": "SD-1"},
                         recent=(0, 0))
        assert flush_outbox(desk) == {"sent": 1}, n
        [got] = sink.take()
        assert got.rcpt_tos == (ANNA,)
        names = header_names(got.raw)
        assert set(names) <= DESK_HEADERS, (summary, names)
        assert "bcc" not in names and "x-injected" not in names
        head = got.raw.split(b"\r\n\r\n", 1)[0]
        assert b"\nBcc:" not in head and b"\nX-Injected" not in head
        subject = got.message["Subject"]
        assert subject.startswith("[SD-1] Hallo") and "\n" not in subject and "\r" not in subject
        for name in ("bcc", "x-injected"):
            assert got.message[name] is None


def test_double_encoded_inbound_subject_is_harmless(desk: App, sink: SmtpSink, tmp_path: Path) -> None:
    activate(desk, ANNA)
    hostile = "=?UTF-8?B?PT9VVEYtOD9RP0hhbGxvPTBBQmNjOl9ldmlsQGF0dGFja2VyLmV4YW1wbGU/PQ==?="
    raw = (
        f"From: {ANNA}\r\nTo: servicedesk@xitrust.com\r\nSubject: {hostile}\r\n"
        "Message-ID: <hostile-1@bauwerk-ag.de>\r\nDate: Fri, 27 Nov 2026 09:30:00 +0100\r\n\r\nHallo\r\n"
    ).encode()
    ingest_raw(desk, raw, tmp_path)
    flush_outbox(desk)
    [got] = sink.take()
    assert "bcc" not in header_names(got.raw)
    assert got.message["Subject"].startswith("[SD-1] Hallo")


HOSTILE_MESSAGE_IDS = [
    # quoted-printable encoded word with CRLF: a header line of its own
    "<=?utf-8?q?x=0D=0AX-Injected:_yes?=@a.example>",
    # base64 with CRLFCRLF: ends the header block, HTML above the desk's body
    "<=?utf-8?b?DQpYLUluamVjdGVkOiB5ZXMNCg0KPGgxPmV2aWw8L2gxPg==?=@a.example>",
]


@pytest.mark.parametrize("hostile_id", HOSTILE_MESSAGE_IDS)
def test_hostile_message_ids_are_written_as_they_are(
    desk: App, sink: SmtpSink, tmp_path: Path, hostile_id: str
) -> None:
    """A stranger's Message-ID (a valid msg-id) is repeated in In-Reply-To /
    References of the invitation and every later mail on the ticket: as the
    raw string it is, never decoded into header lines or a body."""
    raw = (
        "Authentication-Results: mx.xitrust.com; dmarc=pass header.from=evil.example\r\n"
        "From: Eve <eve@evil.example>\r\nTo: servicedesk@xitrust.com\r\nSubject: Hallo\r\n"
        f"Message-ID: {hostile_id}\r\nDate: Fri, 27 Nov 2026 09:30:00 +0100\r\n\r\nHallo\r\n"
    ).encode()
    ingest_raw(desk, raw, tmp_path)
    activate(desk, "eve@evil.example", name="Eve")
    activate(desk, "max@xitrust.com", name="Max Agent", role="agent")
    desk.comment("SD-1", "max@xitrust.com", "Wir sehen uns das an.", internal=False)
    flush_outbox(desk)
    mails = sink.take()
    assert [m.rcpt_tos for m in mails] == [("eve@evil.example",), ("eve@evil.example",)]
    for got in mails:
        names = header_names(got.raw)
        assert set(names) <= DESK_HEADERS and "x-injected" not in names, names
        head, _, body = got.raw.partition(b"\r\n\r\n")
        assert b"X-Injected" not in head.replace(hostile_id.encode(), b"") and b"<h1>evil" not in got.raw
        # read with compat32, which (unlike a test's default policy) decodes nothing
        literal = email.message_from_bytes(head + b"\r\n\r\n", policy=email.policy.compat32)
        assert hostile_id in literal["References"].split()
        if got is mails[0]:  # the invitation answers the stranger's mail itself
            assert literal["In-Reply-To"] == hostile_id


# -- retries, failures, leases, concurrency ---------------------------------------------


def test_relay_down_for_a_while_then_delivered_once(app: App) -> None:
    port = free_port()
    desk = relayed(app, port)
    activate(desk, ANNA)
    ingest(desk, "new-request-de.eml")
    t0 = utcnow()
    assert flush_outbox(desk, now=t0) == {"retrying": 1}
    [row] = rows(desk)
    assert (row.status, row.attempts) == ("retrying", 1) and "127.0.0.1" in (row.last_error or "")
    assert flush_outbox(desk, now=t0 + dt.timedelta(seconds=30)) == {}  # backoff: not due yet
    assert flush_outbox(desk, now=t0 + dt.timedelta(minutes=2)) == {"retrying": 1}
    with SmtpSink(port) as sink:
        assert flush_outbox(desk, now=t0 + dt.timedelta(minutes=3)) == {}  # still backing off
        assert flush_outbox(desk, now=t0 + dt.timedelta(minutes=10)) == {"sent": 1}
        assert flush_outbox(desk, now=t0 + dt.timedelta(hours=5)) == {}
        assert len(sink.take()) == 1
    [row] = rows(desk)
    assert (row.status, row.attempts, row.last_error) == ("sent", 3, None)


def test_gives_up_after_max_retry_hours(app: App) -> None:
    desk = relayed(app, free_port(), max_retry_hours=2)
    activate(desk, ANNA)
    ingest(desk, "new-request-de.eml")
    assert flush_outbox(desk) == {"retrying": 1}
    assert flush_outbox(desk, now=utcnow() + dt.timedelta(hours=3)) == {"failed": 1}
    [row] = rows(desk)
    assert row.status == "failed" and row.attempts == 2


@pytest.mark.parametrize(("reply", "status"), [("451 4.3.0 try again later", "retrying"),
                                               ("550 5.1.1 mailbox unavailable", "failed")])
def test_4xx_retries_and_5xx_fails_at_once(desk: App, sink: SmtpSink, reply: str, status: str) -> None:
    activate(desk, ANNA)
    ingest(desk, "new-request-de.eml")
    sink.reply = reply
    assert flush_outbox(desk) == {status: 1}
    [row] = rows(desk)
    assert row.status == status and reply.split()[0] in (row.last_error or "")
    sink.reply = None
    later = flush_outbox(desk, now=utcnow() + dt.timedelta(hours=1))
    assert later == ({"sent": 1} if status == "retrying" else {})


def test_bounced_mail_is_never_retried(desk: App, sink: SmtpSink) -> None:
    activate(desk, ANNA)
    ingest(desk, "new-request-de.eml")
    sink.reply = "451 4.3.0 later"
    flush_outbox(desk)
    [row] = rows(desk)
    with connection(desk.engine) as conn:  # what the pipeline does when a DSN names it
        conn.execute(update(OUTBOX).where(OUTBOX.c.id == row.id).values(status="bounced"))
    sink.reply = None
    assert flush_outbox(desk, now=utcnow() + dt.timedelta(hours=1)) == {}
    with pytest.raises(admin.AdminError), transaction(desk.engine) as s:
        admin.retry_outbox(s, row.id or 0)
    assert sink.take() == []


def test_crashed_senders_rows_come_back_after_the_lease(desk: App, sink: SmtpSink) -> None:
    activate(desk, ANNA)
    ingest(desk, "new-request-de.eml")
    t0 = utcnow()
    crashed = OutboxSender(desk.settings, desk.engine, now=t0)
    assert len(crashed.claim()) == 1  # ...and the process dies before sending
    assert flush_outbox(desk, now=t0 + dt.timedelta(seconds=10)) == {}
    lease = dt.timedelta(seconds=desk.settings.outbound.lease_seconds + 1)
    assert flush_outbox(desk, now=t0 + lease) == {"sent": 1}
    assert len(sink.take()) == 1


def test_a_slow_relay_keeps_its_rows_leased(desk: App, sink: SmtpSink) -> None:
    """The lease is renewed while the sender waits for the relay: a second
    sender looking after the lease's length finds nothing to take, and the
    mail goes out once (with a lease that only lasted, it went twice)."""
    slow = configured(desk, outbound={"lease_seconds": 3, "timeout": 20.0})
    activate(desk, ANNA)
    ingest(desk, "new-request-de.eml")
    sink.delay = 6.0  # twice the lease
    first: dict[str, int] = {}
    sending = threading.Thread(target=lambda: first.update(flush_outbox(slow)))
    sending.start()
    try:
        time.sleep(4.5)  # the first lease (3 s) has run out; its renewals have not
        assert flush_outbox(slow) == {}
    finally:
        sending.join(30)
    assert first == {"sent": 1}
    assert len(sink.take()) == 1
    assert flush_outbox(slow) == {}


def test_concurrent_senders_send_every_mail_exactly_once(desk: App, sink: SmtpSink) -> None:
    with connection(desk.engine) as conn:
        for n in range(30):
            account = repo.insert_account(conn, f"kunde{n}@example.org", "", "customer", None, "de")
            notify.queue(conn, desk.settings, account, "signup_confirmation", None, {})
    results: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(flush_outbox(desk))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    got = sink.take()
    assert sorted(r.rcpt_tos[0] for r in got) == sorted(f"kunde{n}@example.org" for n in range(30))
    assert len({r.message["Message-ID"] for r in got}) == 30
    assert sum(r.get("sent", 0) for r in results) == 30
    assert {r.status for r in rows(desk)} == {"sent"}


def test_hourly_cap_also_holds_at_send_time(desk: App, sink: SmtpSink) -> None:
    """Rows queued by another path than notify (here: directly) still obey
    security.max_auto_mails_per_hour; the excess waits, it is not lost."""
    activate(desk, ANNA)
    now = utcnow()
    with connection(desk.engine) as conn:
        for _ in range(12):
            repo.insert_outbox(
                conn, to_addr=ANNA, template="signup_confirmation", locale="de", data={}, automatic=True,
                status="queued", attempts=0, next_attempt_at=now, created_at=now,
            )
        conn.execute(update(ACCOUNT).where(ACCOUNT.c.email == ANNA).values(state="unverified"))
    assert flush_outbox(desk, now=now) == {"sent": 10, "deferred": 2}
    assert len(sink.take()) == 10
    assert flush_outbox(desk, now=now + dt.timedelta(minutes=30)) == {}
    assert flush_outbox(desk, now=now + dt.timedelta(minutes=61)) == {"sent": 2}
    assert {r.attempts for r in rows(desk)} == {1}


def test_maildir_is_the_default_transport(app: App) -> None:
    activate(app, ANNA)
    ingest(app, "new-request-de.eml")
    assert app.settings.outbound.transport == "maildir"
    assert flush_outbox(app) == {"sent": 1}
    files = list((Path(app.settings.outbound.maildir) / "new").iterdir())
    assert len(files) == 1
    raw = files[0].read_bytes()
    assert b"\r\n" not in raw and b"Subject: [SD-1]" in raw


# -- two desks: loop protection ---------------------------------------------------------------


def test_two_desks_feeding_each_other_exchange_a_bounded_number_of_mails(
    app: App, tmp_path: Path
) -> None:
    """Desk A's customer address is desk B's address and the other way round
    (a misconfigured forward). Auto-Submitted on every desk mail makes the
    other desk ignore it, so the exchange stops at once."""
    with SmtpSink() as to_b, SmtpSink() as to_a:
        desk_a = relayed(app, to_b.port)
        settings_b = app.settings.model_copy(
            update={
                "database": app.settings.database.model_copy(update={"url": f"sqlite:///{tmp_path}/b.db"}),
                "storage": app.settings.storage.model_copy(update={"blobs": str(tmp_path / "b-blobs")}),
                "desk": app.settings.desk.model_copy(
                    update={"addresses": ("support@partner.example",), "name": "Partner Support"}
                ),
                "outbound": app.settings.outbound.model_copy(
                    update={"transport": "smtp", "host": "127.0.0.1", "port": to_a.port, "timeout": 5.0,
                            "from_": "Partner Support <support@partner.example>"}
                ),
                "routing": {"support@partner.example": "other"},
            }
        )
        desk_b = App(settings_b)
        desk_b.db_upgrade()
        try:
            first = (
                b"Authentication-Results: mx.xitrust.com; dmarc=pass header.from=partner.example\r\n"
                b"From: support@partner.example\r\nTo: servicedesk@xitrust.com\r\nSubject: Weiterleitung\r\n"
                b"Message-ID: <fwd-1@partner.example>\r\nDate: Fri, 27 Nov 2026 09:30:00 +0100\r\n"
                b"\r\nHallo\r\n"
            )
            ingest_raw(desk_a, first, tmp_path, "first.eml")
            total = 0
            for n in range(6):
                flush_outbox(desk_a)
                for i, got in enumerate(to_b.take()):
                    total += 1
                    ingest_raw(desk_b, got.raw, tmp_path, f"a{n}-{i}.eml")
                flush_outbox(desk_b)
                for i, got in enumerate(to_a.take()):
                    total += 1
                    ingest_raw(desk_a, got.raw, tmp_path, f"b{n}-{i}.eml")
            assert total == 1  # A's invitation; B ignores it as auto-submitted
            with Session(desk_b.engine) as s:
                assert s.exec(select(Ticket)).first() is None  # type: ignore[call-overload]
        finally:
            desk_b.engine.dispose()


# -- the daemon's loop -------------------------------------------------------------------------


def test_run_sender_sends_while_running_and_stops_on_the_event(desk: App, sink: SmtpSink) -> None:
    import asyncio

    from gateway.outbound.sender import run_sender

    activate(desk, ANNA)
    ingest(desk, "new-request-de.eml")
    fast = configured(desk, outbound={"poll_seconds": 0.05})

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = 0.5  # DB work must run off the loop
        stop = asyncio.Event()
        task = asyncio.create_task(run_sender(fast, stop))
        for _ in range(200):
            if sink.received:
                break
            await asyncio.sleep(0.05)
        ingest(desk, "priority-x-priority-header-en.eml")  # queued while the loop runs
        for _ in range(200):
            if len(sink.received) >= 2:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
    assert len(sink.take()) == 2
    assert {r.status for r in rows(desk)} == {"sent"}
