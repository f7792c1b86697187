"""``gateway ingest`` while ``gateway serve`` runs: the message on stdin is
handed to the daemon over its local LMTP socket (``[smtp] socket``), the
command exits with the daemon's answer after the durable commit, and the
daemon processes it. Without a daemon, or with a dead one's socket file
left behind, the command processes inline exactly as before. The exit codes
and one-line messages are the inline path's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from gatewayproc import ALIAS, DESK, GatewayProcess, child_env, message

# Runs `gateway ingest` in-process and reports which heavy modules it
# imported: the hand-off must not load the store, the pipeline or pydantic.
_PROBE = """
import json, sys
from gateway.cli import main
code = main(sys.argv[1:])
heavy = sorted(m for m in ("sqlalchemy", "sqlmodel", "pydantic", "gateway.pipeline.runner",
                           "gateway.store.db", "gateway.settings") if m in sys.modules)
print(json.dumps({"code": code, "heavy": heavy}))
"""


def ingest(
    gw: GatewayProcess, raw: bytes, *args: str, probe: bool = False
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", _PROBE] if probe else [sys.executable, "-m", "gateway"]
    return subprocess.run(
        [*argv, "ingest", *args],
        input=raw.decode("latin-1"),
        encoding="latin-1",
        capture_output=True,
        cwd=gw.state,
        env=gw.env,
        timeout=120,
    )


@pytest.fixture
def gw(tmp_path: Path) -> GatewayProcess:
    proc = GatewayProcess(tmp_path, routing={DESK: "other", ALIAS: "technical_support"})
    proc.start()
    yield proc  # type: ignore[misc]
    assert proc.stop() == 0
    assert not (tmp_path / "var" / "gateway.sock").exists(), "the daemon removes its socket when it stops"


def test_ingest_hands_the_message_to_the_running_daemon(gw: GatewayProcess) -> None:
    raw = message(1) + b".a line that starts with a dot\r\n" + b"x" * 3000 + b"\r\n"
    result = ingest(gw, raw, probe=True)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == {"code": 0, "heavy": []}, "the hand-off loads nothing of the store or the pipeline"
    assert result.stderr == ""
    gw.wait_processed(1)
    rows = gw.query("SELECT source, status, disposition, envelope_from FROM inbound_mail")
    assert rows == [("ingest", "done", "created SD-1", None)]
    # the bytes arrive as they were (dot-stuffing undone, a 3,000-byte line kept)
    shown = subprocess.run(
        [sys.executable, "-m", "gateway", "mail", "show", "1", "--raw"],
        capture_output=True, cwd=gw.state, env=gw.env, timeout=60, check=True,
    ).stdout
    assert shown == raw


def test_recipient_picks_the_request_type_and_lf_input_works(gw: GatewayProcess) -> None:
    raw = message(2).replace(b"\r\n", b"\n")  # a file from disk, as Postfix's pipe writes it
    result = ingest(gw, raw, "--recipient", ALIAS.upper())
    assert result.returncode == 0, result.stderr
    gw.wait_processed(1)
    assert gw.query("SELECT request_type FROM ticket") == [("technical_support",)]
    assert gw.query("SELECT recipient FROM inbound_mail") == [(ALIAS,)]


def test_the_same_message_twice_has_one_effect(gw: GatewayProcess) -> None:
    assert ingest(gw, message(3)).returncode == 0
    assert ingest(gw, message(3)).returncode == 0
    gw.wait_processed(2)
    dispositions = sorted(d for (d,) in gw.query("SELECT disposition FROM inbound_mail"))
    assert dispositions == ["created SD-1", "ignored: duplicate of mail 1"]


def test_a_retry_through_the_inline_path_is_a_duplicate(tmp_path: Path) -> None:
    """The daemon got the message (CRLF on the wire) but the answer was lost,
    so the MTA retries (75); meanwhile the daemon is gone and the retry is
    spooled inline from the LF file. One message, one effect."""
    gw = GatewayProcess(tmp_path)
    gw.start()
    try:
        assert ingest(gw, message(10).replace(b"\r\n", b"\n")).returncode == 0
        gw.wait_processed(1)
    finally:
        assert gw.stop() == 0
    assert ingest(gw, message(10).replace(b"\r\n", b"\n") + b"\n").returncode == 0
    dispositions = [d for (d,) in gw.query("SELECT disposition FROM inbound_mail ORDER BY id")]
    assert dispositions == ["created SD-1", "ignored: duplicate of mail 1"]


def test_not_mail_and_oversize_are_rejected_like_inline(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path, smtp={"max_message_size": 2000})
    gw.start()
    try:
        garbage = ingest(gw, b"this is not mail\n")
        assert (garbage.returncode, garbage.stderr) == (
            65, "gateway: rejected stdin: not an e-mail message (no header)\n"
        )
        big = ingest(gw, message(4, body="x" * 3000))
        assert (big.returncode, big.stderr) == (
            65, "gateway: rejected stdin: message too large (over 2000 bytes)\n"
        )
        assert gw.query("SELECT count(*) FROM inbound_mail") == [(0,)]
    finally:
        assert gw.stop() == 0
    # the same answers from the inline path, with no daemon running
    inline = ingest(gw, b"this is not mail\n")
    assert (inline.returncode, inline.stderr) == (65, garbage.stderr)
    inline_big = ingest(gw, message(4, body="x" * 3000))
    assert inline_big.returncode == 65 and "message too large" in inline_big.stderr


def test_without_a_daemon_ingest_processes_inline(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path)  # configured, never started
    result = ingest(gw, message(5), probe=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["heavy"], "inline: the pipeline ran in this process"
    rows = gw.query("SELECT source, status, disposition FROM inbound_mail")
    assert rows == [("ingest", "done", "created SD-1")]


def test_a_killed_daemons_socket_is_no_obstacle(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path)
    gw.start()
    gw.kill()  # SIGKILL: the socket file stays behind
    sock = tmp_path / "var" / "gateway.sock"
    assert sock.exists()
    result = ingest(gw, message(6))
    assert result.returncode == 0, result.stderr  # nobody answers: inline
    assert gw.query("SELECT status FROM inbound_mail") == [("done",)]
    gw.start()  # the next daemon clears the stale file and serves the socket
    try:
        assert ingest(gw, message(7)).returncode == 0
        gw.wait_processed(2)
        # once per start: the second daemon served the socket too
        assert gw.log_text().count("local socket var/gateway.sock: `gateway ingest` hands its mail") == 2
    finally:
        assert gw.stop() == 0


def test_socket_disabled_by_config(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path, smtp={"socket": ""})
    gw.start()
    try:
        assert not (tmp_path / "var" / "gateway.sock").exists()
        result = ingest(gw, message(8), probe=True)
        assert result.returncode == 0 and json.loads(result.stdout)["heavy"]
    finally:
        assert gw.stop() == 0


def test_a_second_daemon_leaves_a_live_socket_alone(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = GatewayProcess(tmp_path / "a")
    second = GatewayProcess(tmp_path / "b")
    # both state directories' daemons, but the second is told to use the first's socket
    second.sections["smtp"]["socket"] = str(tmp_path / "a" / "var" / "gateway.sock")
    second.write_config()
    first.start()
    try:
        second.start()
        second.wait_for_log("another gateway serves it")
        assert second.stop() == 0
        assert (tmp_path / "a" / "var" / "gateway.sock").exists(), "the second daemon removed it"
        assert ingest(first, message(9)).returncode == 0
        first.wait_processed(1)
    finally:
        assert first.stop() == 0


def test_ingest_help_needs_nothing(tmp_path: Path) -> None:
    env = {**child_env(), "GATEWAY_CONFIG": str(tmp_path / "missing.toml")}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, "--help"], capture_output=True, text=True, env=env, cwd=tmp_path,
        timeout=60,
    )
    assert out.returncode == 0
    assert json.loads(out.stdout.splitlines()[-1]) == {"code": 0, "heavy": []}
    assert not os.path.exists(tmp_path / "var"), "--help created state"
