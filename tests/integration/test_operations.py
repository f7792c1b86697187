"""What an operator relies on, against a real ``gateway serve`` process:
SIGHUP reloads routing (an alias refused with 550 is accepted on the same,
already open connection) and logging, and an invalid file changes nothing;
the Prometheus endpoint shows real counts after real mail; the logs of a
run with secrets and a mail body contain neither; ``gateway status`` and
its view on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import signal
import smtplib
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from netutil import free_port
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine
from sqlmodel import Session

from gateway.app import App
from gateway.logging_setup import HumanFormatter, JsonFormatter, stream_is_journal
from gateway.store.models import ImapCursor, InboundMail
from tests.gatewayproc import ALIAS, DESK, GatewayProcess, message


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[GatewayProcess]:
    proc = GatewayProcess(tmp_path)
    yield proc
    proc.kill()


# -- SIGHUP ---------------------------------------------------------------


def test_sighup_reloads_routing_and_logging_on_open_connection(gw: GatewayProcess) -> None:
    gw.start()
    client = smtplib.SMTP("127.0.0.1", gw.port, timeout=10)
    client.ehlo()
    client.mail("anna@bauwerk-ag.de")
    code, _ = client.rcpt(ALIAS)
    assert code == 550
    client.rset()

    gw.sections["routing"][ALIAS] = "technical_support"
    gw.sections["logging"] = {"format": "json"}
    gw.write_config()
    gw.signal(signal.SIGHUP)
    gw.wait_for_log("reloaded configuration")

    # The connection opened before the reload sees the new alias.
    client.mail("anna@bauwerk-ag.de")
    assert client.rcpt(ALIAS)[0] == 250
    assert client.data(message(1, to=ALIAS))[0] == 250
    gw.wait_processed(1)
    # ... and so do the worker processes: the ticket has the alias's type.
    assert gw.query("SELECT key, request_type FROM ticket") == [("SD-1", "technical_support")]

    # The workers' lines are JSON now, with the spool id and Message-ID as fields.
    lines = [json.loads(line) for line in gw.log_text().splitlines() if line.startswith("{")]
    processed = [d for d in lines if d.get("logger") == "gateway.pipeline"]
    assert processed, gw.log_text()
    assert processed[0]["spool"] == 1
    assert processed[0]["message_id"] == "<ops-1@bauwerk-ag.de>"
    assert processed[0]["status"] == "done"

    # An invalid file: one log line, and the running configuration stays.
    gw.write_config(gw.config_path.read_text() + '\n[routing]\n"x@y" = "no_such_type"\n')
    gw.signal(signal.SIGHUP)
    log = gw.wait_for_log("reload rejected")
    assert log.count("reload rejected") == 1
    client.mail("anna@bauwerk-ag.de")
    assert client.rcpt(ALIAS)[0] == 250
    client.rset()
    client.quit()
    assert gw.stop() == 0


def test_sighup_with_a_listener_change_warns_and_keeps_listening(gw: GatewayProcess) -> None:
    gw.start()
    old_port = gw.port
    gw.sections["smtp"]["listen"] = f"127.0.0.1:{free_port()}"
    gw.write_config()
    gw.signal(signal.SIGHUP)
    log = gw.wait_for_log("reloaded configuration")
    assert "changes to [smtp] need a restart" in log
    with smtplib.SMTP("127.0.0.1", old_port, timeout=10) as c:
        assert c.noop()[0] == 250
    assert gw.stop() == 0


def test_sighup_reaches_the_outbox_sender(gw: GatewayProcess) -> None:
    """[desk] and [outbound] changes reach the next outgoing mail (the
    sender used to keep the settings it started with)."""
    gw.sections["outbound"]["poll_seconds"] = 1
    gw.write_config()
    gw.start()
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=10) as client:
        client.sendmail("anna@bauwerk-ag.de", [DESK], message(1))
    first = wait_for_sent(gw, 1)[0]
    assert "From: \"XiTrust Servicedesk\" <servicedesk@xitrust.com>" in first

    gw.sections["desk"]["name"] = "Bauwerk Support Desk"
    gw.sections["outbound"]["from"] = "Bauwerk Support Desk <servicedesk@xitrust.com>"
    gw.sections["outbound"]["maildir"] = str(gw.state / "sent-after-reload")
    gw.write_config()
    gw.signal(signal.SIGHUP)
    gw.wait_for_log("reloaded configuration")
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=10) as client:
        client.sendmail("bob@bauwerk-ag.de", [DESK], message(2, sender="bob"))
    second = wait_for_sent(gw, 1, folder="sent-after-reload")[0]
    assert "From: \"Bauwerk Support Desk\" <servicedesk@xitrust.com>" in second
    assert "outbox: sending with the reloaded configuration" in gw.log_text()
    assert len(list((gw.state / "sent" / "new").iterdir())) == 1  # nothing more went the old way
    assert gw.stop() == 0


def wait_for_sent(gw: GatewayProcess, n: int, folder: str = "sent", timeout: float = 60) -> list[str]:
    """The mails in the outbound Maildir once there are ``n`` of them."""
    deadline = time.monotonic() + timeout
    new = gw.state / folder / "new"
    while time.monotonic() < deadline:
        files = sorted(new.iterdir()) if new.exists() else []
        if len(files) >= n:
            return [f.read_text(errors="replace") for f in files]
        time.sleep(0.1)
    raise AssertionError(f"{n} mail(s) not sent to {new} in {timeout}s:\n{gw.log_text()[-3000:]}")


# -- metrics ----------------------------------------------------------------


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def multipart(n_parts: int) -> bytes:
    parts = "".join(
        f"--b\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n" for i in range(n_parts)
    )
    return (
        f"From: kai@bauwerk-ag.de\r\nTo: {DESK}\r\nSubject: many parts\r\nMessage-ID: <parts@x>\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n{parts}--b--\r\n'
    ).encode()


def test_metrics_endpoint_counts_real_mail(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path, smtp={"max_message_size": 4000}, limits={"max_parts": 3})
    try:
        gw.start()
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=10) as c:
            c.sendmail("anna@bauwerk-ag.de", [DESK], message(1))
            c.sendmail("anna@bauwerk-ag.de", [DESK], message(2))
            c.sendmail("kai@bauwerk-ag.de", [DESK], multipart(6))  # over max_parts: quarantined
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                c.sendmail("anna@bauwerk-ag.de", ["nobody@xitrust.com"], message(3))
            with pytest.raises(smtplib.SMTPException):
                c.sendmail("anna@bauwerk-ag.de", [DESK], message(4, body="x" * 8000))
        gw.wait_processed(3)
        engine = create_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
        with Session(engine) as s:
            s.add(ImapCursor(mailbox="desk@imap.example:993/INBOX", last_error="connection refused",
                             last_error_at=dt.datetime.now(dt.UTC)))
            s.commit()
        engine.dispose()

        m = scrape(gw.metrics_port)
        smtp = {dict(k[1])["result"] + " " + dict(k[1])["reason"]: v
                for k, v in m.items() if k[0] == "gateway_smtp_messages_total"}
        assert smtp == {"accepted ok": 3, "rejected unknown_recipient": 1, "rejected message_too_large": 1}
        assert m[("gateway_inbound_mails", (("status", "done"),))] == 2
        assert m[("gateway_inbound_mails", (("status", "quarantined"),))] == 1
        assert m[("gateway_quarantined_mails", ())] == 1
        assert m[("gateway_spool_depth", ())] == 0
        assert m[("gateway_spool_oldest_queued_age_seconds", ())] == 0
        assert m[("gateway_database_up", ())] == 1
        assert m[("gateway_processing_latency_seconds_count", ())] == 3
        assert 0 < m[("gateway_processing_latency_seconds_sum", ())] < 60
        assert m[("gateway_imap_poll_failing", (("mailbox", "desk@imap.example:993/INBOX"),))] == 1
        outbox = {k[1][0][1]: v for k, v in m.items() if k[0] == "gateway_outbox_mails"}
        assert set(outbox) == {"queued", "sent", "retrying", "failed", "bounced"}
        assert sum(outbox.values()) >= 2  # the desk answered both tickets
        assert gw.stop() == 0
    finally:
        gw.kill()


# -- logging ----------------------------------------------------------------

SECRETS = ("imap-pw-7d1f0c", "relay-pw-93be4a", "secret-key-5a0e77")
BODY_MARKER = "Kontonummer-DE44-5001-0517-5407"


def test_logs_carry_no_passwords_tokens_or_bodies(tmp_path: Path) -> None:
    (tmp_path / "imap-password").write_text(SECRETS[0] + "\n")
    (tmp_path / "smtp-password").write_text(SECRETS[1] + "\n")
    gw = GatewayProcess(
        tmp_path,
        security={"secret_key": SECRETS[2]},
        outbound={"username": "desk", "password_file": str(tmp_path / "smtp-password")},
    )
    # A mailbox that cannot be reached: its errors get logged too.
    gw.imap.append({
        "host": "127.0.0.1", "port": free_port(), "tls": "none", "username": "desk",
        "password_file": str(tmp_path / "imap-password"), "idle": False, "poll_seconds": 1,
    })
    gw.write_config()
    try:
        gw.start(env={"GATEWAY_LOG_LEVEL": "info"})
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=10) as c:
            c.sendmail("new.customer@bauwerk-ag.de", [DESK], message(1, body=f"Bitte an {BODY_MARKER}"))
            c.sendmail("anna@bauwerk-ag.de", [DESK], b"Subject: broken\r\n\r\n" + BODY_MARKER.encode())
        gw.wait_processed(2)
        gw.wait_for_log("imap ", timeout=30)
        assert gw.stop() == 0
    finally:
        gw.kill()
    outputs = ""
    for command in (["check-config"], ["outbox", "flush"]):
        done = subprocess.run(
            [sys.executable, "-m", "gateway", *command], env=gw.env, cwd=tmp_path,
            capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, done.stderr
        outputs += done.stdout + done.stderr
    # Signup links in the mails the desk sent: their tokens are never logged.
    token = re.compile(r"/signup/([A-Za-z0-9_\-]{16,})")
    tokens = [
        tok for f in (tmp_path / "sent").rglob("*") if f.is_file()
        for tok in token.findall(f.read_text(errors="replace"))
    ]
    log = gw.log_text()
    assert "listening on" in log
    assert tokens, "the new customer got a signup invitation"
    for needle in (*SECRETS, BODY_MARKER, *tokens):
        assert needle not in log, needle
        assert needle not in outputs, needle


def record(msg: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("gateway.pipeline", logging.INFO, __file__, 1, msg, (), None)
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def test_json_formatter_has_structured_fields() -> None:
    doc = json.loads(JsonFormatter().format(record("spool=3 message_id=<a@b>: created SD-1",
                                                   spool=3, message_id="<a@b>")))
    assert doc["level"] == "info" and doc["logger"] == "gateway.pipeline"
    assert doc["msg"] == "spool=3 message_id=<a@b>: created SD-1"
    assert doc["spool"] == 3 and doc["message_id"] == "<a@b>"
    dt.datetime.fromisoformat(doc["ts"])
    try:
        raise ValueError("boom")
    except ValueError:
        rec = record("failed")
        rec.exc_info = sys.exc_info()
    assert "ValueError: boom" in json.loads(JsonFormatter().format(rec))["exc"]


def test_human_formatter_under_journald(tmp_path: Path) -> None:
    rec = record("line one\nline two")
    rec.levelno, rec.levelname = logging.WARNING, "WARNING"
    assert HumanFormatter(journald=True).format(rec) == "<4>gateway.pipeline: line one\n<4>line two"
    assert " WARNING gateway.pipeline: line one" in HumanFormatter().format(rec)
    with open(tmp_path / "f", "w") as fh:
        st = os.fstat(fh.fileno())
        assert stream_is_journal(fh, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})  # type: ignore[arg-type]
        assert not stream_is_journal(fh, {"JOURNAL_STREAM": "1:2"})  # type: ignore[arg-type]


# -- gateway status ---------------------------------------------------------


def test_status_view_and_command(app: App, tmp_path: Path) -> None:
    from gateway.store import read
    from gateway.store.db import reading

    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    with Session(app.engine) as s:
        for status, received in (("queued", old), ("queued", None), ("processing", None),
                                 ("quarantined", None), ("done", None)):
            s.add(InboundMail(source="smtp", raw_sha256="0" * 64, raw_size=1, status=status,
                              **({"received_at": received} if received else {})))
        s.add(ImapCursor(mailbox="a@imap:993/INBOX", last_success_at=old,
                         last_error="login failed", last_error_at=dt.datetime.now(dt.UTC)))
        s.add(ImapCursor(mailbox="b@imap:993/INBOX", last_success_at=dt.datetime.now(dt.UTC),
                         last_error="timeout", last_error_at=old))
        s.commit()
    with reading(app.engine) as s:
        st = read.status_json(s)
    assert st["spool"]["depth"] == 3 and st["spool"]["queued"] == 2 and st["spool"]["processing"] == 1
    assert 590 < st["spool"]["oldest_queued_age_seconds"] < 700
    assert st["quarantined"] == 1
    assert st["inbound"]["done"] == 1
    assert [(b["mailbox"], b["failing"]) for b in st["imap"]] == [
        ("a@imap:993/INBOX", True), ("b@imap:993/INBOX", False)]
    assert st["outbox"]["failed"] == 0

    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY__DATABASE__URL"] = app.settings.database.url
    out = subprocess.run([sys.executable, "-m", "gateway", "status", "--json"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["spool"]["depth"] == 3
    human = subprocess.run([sys.executable, "-m", "gateway", "status"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert human.returncode == 0, human.stderr
    assert "3 waiting (2 queued, 1 processing), oldest queued 10m ago" in human.stdout
    assert "FAILING; last success" in human.stdout and "login failed" in human.stdout


def test_daemon_status_line(app: App) -> None:
    """The STATUS= text systemd shows, from the same view."""
    from gateway.daemon import Daemon

    daemon = Daemon(app)
    try:
        assert daemon._status_text() == "spool 0, quarantined 0, outbox failed 0 retrying 0"
    finally:
        daemon.pool.shutdown()
