"""Errors an operator meets on a first setup, each one line that names what
is wrong (#16): a listen address that is not host:port or is taken, a typo
in a ``GATEWAY__`` variable, a command run where there is no store, an
unreachable PostgreSQL; and ``gateway status`` telling whether a daemon
runs here and which mailboxes are configured."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import cli
from gateway.app import App
from tests.netutil import free_port


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    """The one error line (``check-config``'s warnings aside)."""
    lines = [line for line in err.splitlines() if "warning:" not in line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def config(app: App, tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"[database]\nurl = {json.dumps(app.settings.database.url)}\n"
        f"[storage]\nblobs = {json.dumps(app.settings.storage.blobs)}\n"
        f"state_dir = {json.dumps(str(tmp_path / 'state'))}\n"
        f"[smtp]\nlisten = \"127.0.0.1:{free_port()}\"\nsocket = {json.dumps(str(tmp_path / 'g.sock'))}\n"
    )
    return path


# -- configuration ----------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("SMTP__LISTEN", "127.0.0.1", "invalid config key smtp.listen: '127.0.0.1' is not host:port"),
        ("SMTP__LISTEN", "", "invalid config key smtp.listen: '' is not host:port"),
        ("SMTP__LISTEN", "127.0.0.1:70000", "port out of range (0-65535)"),
        ("WEB__LISTEN", "localhost", "invalid config key web.listen: 'localhost' is not host:port"),
        ("SMPT__LISTEN", "127.0.0.1:2525",
         "environment variable GATEWAY__SMPT__LISTEN: unknown section 'smpt'"),
        ("SMTP__LISTN", "127.0.0.1:2525", "invalid config key smtp.listn"),
    ],
)
def test_check_config_names_the_bad_setting(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, clean_env: None,
    key: str, value: str, says: str,
) -> None:
    monkeypatch.setenv(f"GATEWAY__{key}", value)
    code, out, err = run(capsys, "check-config")
    assert code == 2
    assert out == ""
    assert says in error_line(err)


@pytest.mark.parametrize("listen", ["[::1]:2525", "0.0.0.0:25", "mail.example.com:2525", "127.0.0.1:0"])
def test_check_config_takes_host_port(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, clean_env: None, listen: str
) -> None:
    monkeypatch.setenv("GATEWAY__SMTP__LISTEN", listen)
    monkeypatch.setenv("GATEWAY__WEB__LISTEN", "")  # the portal may be off
    code, out, err = run(capsys, "check-config", "--json")
    assert code == 0, err
    effective = json.loads(out)
    assert effective["smtp"]["listen"] == listen
    assert effective["web"]["listen"] == ""


def test_serve_names_a_listen_address_in_use(tmp_path: Path, clean_env: None) -> None:
    """A second daemon (or anything else on the port): the address and the
    reason, exit 1, no traceback, and the daemon's other parts are stopped."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    env = {**os.environ, "GATEWAY__SMTP__LISTEN": f"127.0.0.1:{port}", "GATEWAY__WEB__LISTEN": "",
           "GATEWAY__METRICS__LISTEN": "", "GATEWAY__WORKERS__PARSE_PROCESSES": "1"}
    try:
        done = subprocess.run([sys.executable, "-m", "gateway", "serve"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
    finally:
        taken.close()
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    # The daemon's log lines aside (its logging is configured by then).
    lines = [line for line in done.stderr.splitlines() if line.startswith("gateway:")]
    assert lines == [f"gateway: cannot listen on 127.0.0.1:{port}: Address already in use ([smtp] listen)"]


# -- where the store is -------------------------------------------------------


@pytest.mark.parametrize(
    "argv", [["ticket", "list"], ["mail", "list"], ["status"], ["account", "list", "--json"],
             ["org", "create", "Bauwerk AG"]],
)
def test_operator_commands_create_no_store(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clean_env: None,
    argv: list[str],
) -> None:
    """Run in the wrong directory, a command says which database it looked
    for and how to point at the right one; it leaves nothing behind."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 1
    assert out == ""
    line = error_line(err)
    assert f"no database at {tmp_path / 'var' / 'gateway.db'}" in line
    assert "--config" in line and "gateway db upgrade" in line
    assert not (tmp_path / "var").exists()


def test_db_upgrade_and_ingest_create_the_store(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clean_env: None
) -> None:
    monkeypatch.chdir(tmp_path)
    eml = tmp_path / "m.eml"
    eml.write_bytes(b"From: anna@bauwerk-ag.de\r\nTo: servicedesk@xitrust.com\r\nSubject: Drucker\r\n"
                    b"Message-ID: <p1@bauwerk-ag.de>\r\n\r\nDer Drucker druckt nicht.\r\n")
    code, _, err = run(capsys, "ingest", "--no-progress", str(eml))
    assert code == 0, err
    assert (tmp_path / "var" / "gateway.db").exists()
    code, out, err = run(capsys, "ticket", "list", "--json")
    assert code == 0, err
    assert [t["summary"] for t in json.loads(out)] == ["Drucker"]

    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    code, _, err = run(capsys, "db", "upgrade")
    assert code == 0, err
    code, out, err = run(capsys, "ticket", "list", "--json")
    assert (code, json.loads(out)) == (0, [])


def test_an_empty_database_file_is_not_taken_for_a_store(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clean_env: None
) -> None:
    (tmp_path / "empty.db").write_bytes(b"")
    monkeypatch.setenv("GATEWAY__DATABASE__URL", f"sqlite:///{tmp_path / 'empty.db'}")
    code, _, err = run(capsys, "mail", "list")
    assert code == 1
    assert "no gateway schema in the database" in error_line(err)


def test_unreachable_postgresql_is_named_with_its_reason(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, clean_env: None
) -> None:
    port = free_port()  # nothing listens there
    monkeypatch.setenv("GATEWAY__DATABASE__URL", f"postgresql+psycopg://desk:s3cret-pw@127.0.0.1:{port}/desk")
    code, _, err = run(capsys, "ticket", "list")
    assert code == 75
    line = error_line(err)
    assert line == (f"gateway: temporary failure: cannot reach the database "
                    f"postgresql+psycopg://desk:********@127.0.0.1:{port}/desk: connection refused")
    assert "s3cret" not in err


# -- status ------------------------------------------------------------------


def test_status_says_whether_a_daemon_runs_here_and_which_mailboxes(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path
) -> None:
    code, out, err = run(capsys, "--config", str(config), "status")
    assert code == 0, err
    assert "not running on this host" in out
    assert "no mailbox configured ([[imap]])" in out

    (tmp_path / "pw").write_text("secret")
    with config.open("a") as fh:
        fh.write(f'[[imap]]\nhost = "imap.example.com"\nusername = "desk"\n'
                 f'password_file = "{tmp_path / "pw"}"\n')
    sock_path = str(tmp_path / "g.sock")
    daemon = socket.socket(socket.AF_UNIX)  # stands where `gateway serve` puts its hand-off socket
    daemon.bind(sock_path)
    daemon.listen()
    try:
        code, out, err = run(capsys, "--config", str(config), "status")
        assert code == 0, err
        assert f"running on this host (answers on {sock_path})" in out
        assert re.search(r"^imap desk@imap\.example\.com:993/INBOX +not polled yet$", out, re.M), out
        status = json.loads(run(capsys, "--config", str(config), "status", "--json")[1])
    finally:
        daemon.close()
    assert status["daemon"] == {"running": True, "how": f"answers on {sock_path}"}
    assert status["imap"][0]["mailbox"] == "desk@imap.example.com:993/INBOX"
    assert status["imap"][0]["configured"] is True


# -- what the mail log shows ----------------------------------------------------


def test_mail_show_decodes_a_quarantined_mails_subject_and_descriptions_are_trimmed(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path
) -> None:
    """The full parser never read a quarantined mail (two From headers here):
    its subject still reads as text, not as =?utf-8?q?…?=. And a
    description does not keep the blank lines a mail client leaves."""
    bad = tmp_path / "two-froms.eml"
    bad.write_bytes(b"From: anna@bauwerk-ag.de\r\nFrom: bob@bauwerk-ag.de\r\nTo: servicedesk@xitrust.com\r\n"
                    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_M=C3=BCnchen?=\r\n"
                    b"Message-ID: <q1@bauwerk-ag.de>\r\n\r\nHallo\r\n")
    good = tmp_path / "blank-lines.eml"
    good.write_bytes(b"From: anna@bauwerk-ag.de\r\nTo: servicedesk@xitrust.com\r\nSubject: Drucker\r\n"
                     b"Message-ID: <q2@bauwerk-ag.de>\r\n\r\n\r\nDer Drucker druckt nicht.\r\n\r\n\r\n \r\n")
    code, _, err = run(capsys, "--config", str(config), "ingest", "--no-progress", str(bad), str(good))
    assert code == 0, err
    shown = json.loads(run(capsys, "--config", str(config), "mail", "show", "1", "--json")[1])
    assert (shown["status"], shown["subject"]) == ("quarantined", "Grüße aus München")
    ticket = json.loads(run(capsys, "--config", str(config), "ticket", "show", "SD-1", "--json")[1])
    assert ticket["description"] == "Der Drucker druckt nicht."
