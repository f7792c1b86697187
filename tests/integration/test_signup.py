"""Signup (outbound issue): ``gateway account signup`` / ``account confirm``,
signup tokens (256 bits, only the SHA-256 stored, bound to a purpose,
expiring, single-use even under concurrency) and one whole conversation over
real sockets: customer mail into the desk's SMTP listener, invitation,
signup, reply, agent answer, the customer receiving it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from listeners import ThreadedListener
from smtpsink import Received, SmtpSink
from sqlalchemy import select
from sqlmodel import Session

from gateway import cli
from gateway.app import App
from gateway.signup import (
    PURPOSE_SIGNUP,
    SignupError,
    confirm_signup,
    issue_token,
    redeem_token,
    verify_password,
)
from gateway.store import repo
from gateway.store.db import connection
from gateway.store.models import Account, Comment, OutboundMail, SignupToken, Ticket, as_utc, utcnow

LINK = re.compile(r"http://localhost:8080/signup/([A-Za-z0-9_-]+)")
PASSWORD = "korrekt Pferd Batterie Heftklammer"


# -- helpers ---------------------------------------------------------------------


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as running:
        yield running


@pytest.fixture
def config(app: App, sink: SmtpSink, tmp_path: Path) -> str:
    """A config file for the CLI: ``app``'s database, the sink as relay."""
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"[database]\nurl = {json.dumps(app.settings.database.url)}\n"
        f"[storage]\nblobs = {json.dumps(app.settings.storage.blobs)}\n"
        f'[outbound]\ntransport = "smtp"\nhost = "127.0.0.1"\nport = {sink.port}\ntimeout = 5.0\n'
        '[security]\ntrusted_authserv_id = "mx.xitrust.com"\n'
    )
    return str(path)


def gateway(config: str, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(["--config", config, *args])
    out, err = capsys.readouterr()
    return code, out, err


def password_file(tmp_path: Path, password: str = PASSWORD) -> str:
    path = tmp_path / "password"
    path.write_text(password + "\n")
    return str(path)


def token_of(mail: Received) -> str:
    found = LINK.findall(mail.text())
    assert len(set(found)) == 1, found
    assert LINK.search(mail.html())
    return str(found[0])


def account(app: App, email: str) -> Account:
    with Session(app.engine) as s:
        return s.exec(select(Account).where(Account.email == email)).scalars().one()  # type: ignore[call-overload]


def new_account(app: App, email: str) -> int:
    with connection(app.engine) as conn:
        return repo.insert_account(conn, email, "", "customer", None, "de").id


# -- the CLI flow ------------------------------------------------------------------------


def test_signup_sends_confirmation_and_confirm_activates(
    app: App, sink: SmtpSink, config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = gateway(config, "account", "signup", "Kunde@Example.org", capsys=capsys)
    assert code == 0 and "kunde@example.org" in out
    assert account(app, "kunde@example.org").state == "unverified"
    code, out, _ = gateway(config, "outbox", "flush", "--json", capsys=capsys)
    assert code == 0 and json.loads(out) == {"sent": 1}
    [mail] = sink.take()
    assert mail.message["Subject"] == "Bitte bestätigen Sie Ihre Registrierung beim XiTrust Servicedesk"
    assert mail.message["Auto-Submitted"] == "auto-generated"
    token = token_of(mail)
    assert len(token) >= 43  # at least 32 random bytes, base64url
    # Only the hash is stored; the raw token exists only in the mail.
    with Session(app.engine) as s:
        [stored] = s.exec(select(SignupToken)).scalars().all()  # type: ignore[call-overload]
        assert stored.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
        assert stored.purpose == PURPOSE_SIGNUP and stored.used_at is None
        expires = as_utc(stored.expires_at)
        assert dt.timedelta(hours=47) < expires - utcnow() <= dt.timedelta(hours=48)
        assert token not in repr(s.exec(select(OutboundMail)).scalars().all())  # type: ignore[call-overload]
    pw = password_file(tmp_path)
    code, out, _ = gateway(config, "account", "confirm", token, "--name", "Karl Kunde", "--password-file", pw,
                           capsys=capsys)
    assert code == 0 and out.strip() == "account kunde@example.org is active"
    acc = account(app, "kunde@example.org")
    assert (acc.state, acc.name) == ("active", "Karl Kunde")
    assert acc.password_hash and acc.password_hash.startswith("$argon2id$")
    assert verify_password(acc.password_hash, PASSWORD) and not verify_password(acc.password_hash, "falsch")
    # Single use.
    code, _, err = gateway(config, "account", "confirm", token, "--name", "Mallory", "--password-file", pw,
                           capsys=capsys)
    assert code == 1 and "invalid, already used or expired" in err
    assert account(app, "kunde@example.org").name == "Karl Kunde"


def test_signup_output_reveals_nothing_and_repeats_send_nothing(
    app: App, sink: SmtpSink, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    new_account(app, "bekannt@example.org")
    with connection(app.engine) as conn:
        repo.insert_account(conn, "aktiv@example.org", "Aktiv", "customer", None, "de")
    with Session(app.engine) as s:
        acc = s.exec(select(Account).where(Account.email == "aktiv@example.org")).scalars().one()  # type: ignore[call-overload]
        acc.state = "active"
        s.add(acc)
        s.commit()
    outputs = set()
    for address in ("neu@example.org", "bekannt@example.org", "aktiv@example.org", "neu@example.org"):
        code, out, err = gateway(config, "account", "signup", address, capsys=capsys)
        assert code == 0 and err == ""
        outputs.add(out.replace(address, "ADDRESS"))
    assert len(outputs) == 1
    gateway(config, "outbox", "flush", capsys=capsys)
    # A signup link each for the two unverified addresses; for the active
    # one a pointer to sign-in and password reset (no link that signs in);
    # nothing for the repeat within a day.
    got = {m.rcpt_tos[0]: m for m in sink.take()}
    assert sorted(got) == ["aktiv@example.org", "bekannt@example.org", "neu@example.org"]
    assert "/signup/" in got["neu@example.org"].text() and "/signup/" in got["bekannt@example.org"].text()
    active = got["aktiv@example.org"].text()
    assert "/login" in active and "/password-reset" in active and "/signup/" not in active
    code, _, err = gateway(config, "account", "signup", "not an address", capsys=capsys)
    assert code == 1 and "not an e-mail address" in err


def test_bad_name_or_password_is_refused_before_the_token_is_spent(
    app: App, config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    account_id = new_account(app, "kunde@example.org")
    with connection(app.engine) as conn:
        token = issue_token(conn, account_id, PURPOSE_SIGNUP, dt.timedelta(hours=1))
    short = password_file(tmp_path, "kurz")
    code, _, err = gateway(config, "account", "confirm", token, "--name", "K", "--password-file", short,
                           capsys=capsys)
    assert code == 1 and "at least 10 characters" in err
    code, _, err = gateway(config, "account", "confirm", token, "--name", " \u2028 ", "--password-file",
                           password_file(tmp_path), capsys=capsys)
    assert code == 1 and "name is required" in err
    assert confirm_signup(app.engine, token, "Karl", PASSWORD) == "kunde@example.org"


# -- tokens -------------------------------------------------------------------------------


def test_token_redeemed_twice_at_once_succeeds_exactly_once(app: App) -> None:
    for n in range(3):
        account_id = new_account(app, f"kunde{n}@example.org")
        with connection(app.engine) as conn:
            token = issue_token(conn, account_id, PURPOSE_SIGNUP, dt.timedelta(hours=1))
        barrier = threading.Barrier(2)
        results: list[str] = []

        def redeem(
            name: str, token: str = token, barrier: threading.Barrier = barrier, results: list[str] = results
        ) -> None:
            barrier.wait(10)
            try:
                results.append(confirm_signup(app.engine, token, name, PASSWORD))
            except SignupError:
                results.append("refused")

        threads = [threading.Thread(target=redeem, args=(f"Person {i}",)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(results) == sorted([f"kunde{n}@example.org", "refused"])


def test_token_redeem_is_atomic_at_the_sql_level(app: App) -> None:
    """Without the password hashing in between: many threads, one winner."""
    account_id = new_account(app, "kunde@example.org")
    with connection(app.engine) as conn:
        token = issue_token(conn, account_id, PURPOSE_SIGNUP, dt.timedelta(hours=1))
    barrier = threading.Barrier(6)
    winners: list[int | None] = []

    def redeem() -> None:
        barrier.wait(10)
        with connection(app.engine) as conn:
            winners.append(redeem_token(conn, token, PURPOSE_SIGNUP))

    threads = [threading.Thread(target=redeem) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(winners, key=lambda w: w or 0) == [None] * 5 + [account_id]


def test_expired_and_wrong_purpose_tokens_are_refused(app: App) -> None:
    account_id = new_account(app, "kunde@example.org")
    with connection(app.engine) as conn:
        expired = issue_token(conn, account_id, PURPOSE_SIGNUP, dt.timedelta(hours=48),
                              now=utcnow() - dt.timedelta(hours=49))
        other = issue_token(conn, account_id, "password_reset", dt.timedelta(hours=1))
        valid = issue_token(conn, account_id, PURPOSE_SIGNUP, dt.timedelta(hours=1))
    for token in (expired, other, "x" * 43, ""):
        with pytest.raises(SignupError, match="invalid, already used or expired"):
            confirm_signup(app.engine, token, "Karl", PASSWORD)
    with connection(app.engine) as conn:  # still valid for its own purpose until it expires
        assert redeem_token(conn, valid, PURPOSE_SIGNUP, now=utcnow() + dt.timedelta(hours=2)) is None
    assert confirm_signup(app.engine, valid, "Karl", PASSWORD) == "kunde@example.org"
    with connection(app.engine) as conn:
        # Completing signup spends the account's other signup links too.
        assert redeem_token(conn, other, "password_reset") == account_id
        assert redeem_token(conn, issue_token(conn, account_id, PURPOSE_SIGNUP, dt.timedelta(hours=1)),
                            PURPOSE_SIGNUP) == account_id


# -- one whole conversation over real sockets -------------------------------------------------


class Inbound(ThreadedListener):
    """The desk's production SMTP listener on its own loop thread."""

    def send(self, raw: bytes, mail_from: str) -> None:
        with self.client() as client:
            client.sendmail(mail_from, ["servicedesk@xitrust.com"], raw)


def test_whole_conversation_over_real_sockets(
    app: App, sink: SmtpSink, config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    customer = "lena.hofer@kanzlei-hofer.at"
    with Inbound(app) as inbound:
        # 1. A stranger writes to the desk.
        inbound.send(
            (
                f"From: Lena Hofer <{customer}>\r\nTo: servicedesk@xitrust.com\r\n"
                "Subject: Zertifikat abgelaufen?\r\nMessage-ID: <conv-1@kanzlei-hofer.at>\r\n"
                "Date: Fri, 27 Nov 2026 09:30:00 +0100\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                "Guten Morgen, beim Signieren kommt 'Zertifikat ungültig'. Vertraulich: Akt 4711.\r\n"
            ).encode(),
            customer,
        )
        app.runner().drain()
        # 2. The invitation: the key and a link, none of her text.
        assert gateway(config, "outbox", "flush", capsys=capsys)[0] == 0
        [invitation] = sink.take()
        assert invitation.rcpt_tos == (customer,)
        assert "Akt 4711" not in invitation.text()
        assert "Zertifikat" not in invitation.raw.decode("ascii", "replace")
        assert "SD-1" in invitation.message["Subject"]
        # 3. She signs up with the link.
        code, out, _ = gateway(config, "account", "confirm", token_of(invitation), "--name", "Lena Hofer",
                               "--password-file", password_file(tmp_path), capsys=capsys)
        assert code == 0, out
        # 4. She replies to the invitation from her mail client.
        quoted = "\r\n".join("> " + line for line in invitation.text().splitlines())
        inbound.send(
            (
                f"From: Lena Hofer <{customer}>\r\nTo: servicedesk@xitrust.com\r\n"
                f"Subject: AW: {invitation.message['Subject']}\r\nMessage-ID: <conv-2@kanzlei-hofer.at>\r\n"
                f"In-Reply-To: {invitation.message['Message-ID']}\r\n"
                f"References: <conv-1@kanzlei-hofer.at> {invitation.message['Message-ID']}\r\n"
                "Date: Fri, 27 Nov 2026 10:00:00 +0100\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                "Registriert. Es betrifft alle Benutzer.\r\n\r\n"
                "Am 27.11.2026 um 09:30 schrieb XiTrust Servicedesk <servicedesk@xitrust.com>:\r\n"
                f"{quoted}\r\n"
            ).encode(),
            customer,
        )
        app.runner().drain()
    # 5. The reply is a comment holding only the new text.
    with Session(app.engine) as s:
        ticket = s.exec(select(Ticket).where(Ticket.key == "SD-1")).scalars().one()  # type: ignore[call-overload]
        bodies = [c.body for c in s.exec(select(Comment).where(Comment.ticket_id == ticket.id)).scalars()]  # type: ignore[call-overload]
    assert bodies == ["Registriert. Es betrifft alle Benutzer."]
    # 6. An agent answers at the command line...
    answer = tmp_path / "answer.txt"
    answer.write_text("Bitte importieren Sie das neue Zwischenzertifikat (Anleitung im Portal).\n")
    code, out, _ = gateway(config, "account", "create", "sam.agent@xitrust.com", "--role", "agent",
                           "--name", "Sam Agent", capsys=capsys)
    assert code == 0 and "created agent" in out, out
    code, out, _ = gateway(config, "outbox", "flush", "--json", capsys=capsys)  # the agent's signup link
    assert code == 0 and '"sent": 1' in out, out
    [agent_link] = sink.take()
    assert "sam.agent@xitrust.com" in str(agent_link.message["To"])
    code, out, _ = gateway(config, "ticket", "comment", "SD-1", "--as", "sam.agent@xitrust.com",
                           "--file", str(answer), capsys=capsys)
    assert code == 0, out
    internal = tmp_path / "internal.txt"
    internal.write_text("Kunde hat noch die alte CA.\n")
    gateway(config, "ticket", "comment", "SD-1", "--as", "sam.agent@xitrust.com", "--internal",
            "--file", str(internal), capsys=capsys)
    code, out, _ = gateway(config, "outbox", "flush", "--json", capsys=capsys)
    assert json.loads(out) == {"sent": 1}
    # 7. ...and the customer receives it, in full now that she is verified,
    # threaded under her reply; the internal note stays inside.
    [answer_mail] = sink.take()
    assert answer_mail.rcpt_tos == (customer,)
    assert answer_mail.message["Subject"] == "[SD-1] Zertifikat abgelaufen?"
    assert "Bitte importieren Sie das neue Zwischenzertifikat" in answer_mail.text()
    assert "alte CA" not in answer_mail.raw.decode("ascii", "replace")
    assert answer_mail.message["In-Reply-To"] == "<conv-2@kanzlei-hofer.at>"
    assert answer_mail.message["References"].split() == [
        "<conv-1@kanzlei-hofer.at>", invitation.message["Message-ID"], "<conv-2@kanzlei-hofer.at>"
    ]
    assert account(app, customer).state == "active"
    code, out, _ = gateway(config, "outbox", "list", "--json", capsys=capsys)
    assert [(o["template"], o["status"]) for o in json.loads(out)] == [
        ("signup_invitation", "sent"),
        ("signup_confirmation", "sent"),  # the agent's
        ("comment_added", "sent"),
    ]


def test_tokens_never_look_like_command_line_options() -> None:
    # One base64url token in 64 starts with "-", which argparse took for an
    # option in `gateway account confirm TOKEN`.
    from gateway.signup import new_token

    tokens = [new_token() for _ in range(3000)]
    assert not [t for t in tokens if t.startswith("-")]
    assert min(len(t) for t in tokens) >= 44 and len(set(tokens)) == len(tokens)
