"""The daemon under systemd, without systemd as PID 1: the unit file passes
``systemd-analyze verify`` and rates "OK" in ``systemd-analyze security``;
``gateway serve`` speaks the notify protocol (READY=1 only once the port
accepts connections, WATCHDOG=1 pings at half of WATCHDOG_USEC, STOPPING=1
and exit 0 on SIGTERM) to a real AF_UNIX datagram socket; and it runs,
mail and all, under the kernel's W^X lock that MemoryDenyWriteExecute=
stands for."""

from __future__ import annotations

import ctypes
import re
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from privileges import require_tool

from gateway.sdnotify import Notifier
from tests.gatewayproc import DESK, GatewayProcess, message

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "gateway.service"
EXEC_START = "ExecStart=/opt/servicedesk-gateway/bin/gateway serve"


# -- the unit file --------------------------------------------------------


def unit_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing to a stub executable in tmp_path:
    ``verify`` checks that the binary exists, and the real venv path is for
    the target machine. Only that one line differs from the shipped file."""
    stub = tmp_path / "bin" / "gateway"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = UNIT.read_text()
    assert text.count(EXEC_START) == 1, "ExecStart must be the documented venv path"
    copy = tmp_path / "servicedesk-gateway.service"
    copy.write_text(text.replace(EXEC_START, f"ExecStart={stub} serve"))
    return copy


def settings_of(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_unit_file_verifies(tmp_path: Path) -> None:
    require_tool("systemd-analyze", "systemd")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit_copy(tmp_path))], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_unit_file_is_hardened(tmp_path: Path) -> None:
    """Exposure 2.5 or better on systemd's 0-10 scale ("OK")."""
    require_tool("systemd-analyze", "systemd")
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=25", str(unit_copy(tmp_path))],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Overall exposure level for .*: [0-2]\.\d OK", result.stdout), result.stdout


def test_unit_file_settings() -> None:
    s = settings_of(UNIT.read_text())
    assert s["Type"] == ["notify"]
    assert s["Restart"] == ["on-failure"]
    assert s["KillMode"] == ["mixed"]
    assert s["TimeoutStopSec"] == ["60s"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["ExecStart"] == ["/opt/servicedesk-gateway/bin/gateway serve"]
    assert s["StateDirectory"] == s["ConfigurationDirectory"] == ["servicedesk-gateway"]
    assert s["WorkingDirectory"] == ["%S/servicedesk-gateway"]
    assert s["Environment"] == ["GATEWAY_CONFIG=%E/servicedesk-gateway/gateway.toml"]
    for key in ("ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges", "MemoryDenyWriteExecute",
                "ProtectKernelTunables", "ProtectControlGroups", "LockPersonality", "RestrictRealtime"):
        assert key in s, key
    assert s["CapabilityBoundingSet"] == s["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert s["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]


# -- the notify protocol ----------------------------------------------------


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    # A short directory: an AF_UNIX path must fit in 108 bytes.
    with tempfile.TemporaryDirectory(prefix="sdn") as tmp:
        path = str(Path(tmp) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        try:
            yield sock, path
        finally:
            sock.close()


def receive(sock: socket.socket, until: str, timeout: float = 60) -> list[tuple[float, dict[str, str]]]:
    """Datagrams (arrival time, fields) up to and including one that sets ``until``."""
    got = []
    deadline = time.monotonic() + timeout
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(4096)
        except TimeoutError:
            raise AssertionError(f"no {until} within {timeout}s; got {got}") from None
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
        got.append((time.monotonic(), fields))
        if until in fields:
            return got


def drain(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        while True:
            sock.recv(4096)
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)


def test_serve_notifies_systemd(tmp_path: Path, notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    gw = GatewayProcess(tmp_path)
    try:
        gw.start(wait=False, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
        before = receive(sock, "READY")
        # READY means listening: a client connects at once and is greeted.
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as client:
            assert client.recv(512).startswith(b"220 ")
        ready = before[-1][1]
        assert ready["READY"] == "1"
        assert ready["STATUS"] == f"listening on 127.0.0.1:{gw.port}"

        # Mail goes through while the pings go on.
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=10) as c:
            c.sendmail("anna@bauwerk-ag.de", [DESK], message(1))
        gw.wait_processed(1)
        drain(sock)  # pings queued meanwhile arrive in a burst: measure fresh ones
        pings = []
        while len(pings) < 4:
            pings += [t for t, f in receive(sock, "WATCHDOG", timeout=5) if f.get("WATCHDOG") == "1"]
        # Every 0.2 s (half of WATCHDOG_USEC); generous bounds for a busy CI box.
        gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
        assert all(0.05 < g < 1.5 for g in gaps), gaps

        gw.signal(signal.SIGTERM)
        stopping = receive(sock, "STOPPING", timeout=30)[-1][1]
        assert stopping["STOPPING"] == "1"
        assert gw.stop() == 0
    finally:
        gw.kill()


def test_notifier_is_silent_without_systemd() -> None:
    n = Notifier({})
    assert not n.enabled
    assert n.watchdog_interval() is None
    assert n.send(READY=1) is False


def test_notifier_abstract_socket_and_watchdog_pid() -> None:
    name = f"gateway-test-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    try:
        n = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "30000000"})
        assert n.watchdog_interval() == 15.0
        assert n.send(STATUS="two\nlines", READY=1)
        sock.settimeout(5)
        assert sock.recv(4096) == b"STATUS=two lines\nREADY=1\n"
        n.close()
    finally:
        sock.close()
    # WATCHDOG_PID names another process (we inherited the environment):
    # that process pings, not this one.
    other = Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval() is None


# -- MemoryDenyWriteExecute -------------------------------------------------

PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1


def _deny_write_execute() -> None:
    """In the child before exec: no memory may become writable and
    executable (inherited by exec and by the spawned workers)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")


MDWE_PROBE = r"""
import mmap
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    print("W+X allowed")
except OSError:
    print("W+X refused")
import argon2, psycopg
assert argon2.PasswordHasher().verify(argon2.PasswordHasher().hash("pw"), "pw")
print("psycopg", psycopg.pq.__impl__)
"""


def test_daemon_runs_with_memory_deny_write_execute(tmp_path: Path) -> None:
    """The kernel's PR_SET_MDWE is what MemoryDenyWriteExecute= enforces
    (systemd uses it, or an equivalent seccomp filter): the daemon, its
    spawned workers, psycopg's binary build and argon2's cffi bindings all
    work under it."""
    probe = subprocess.run(
        [sys.executable, "-c", MDWE_PROBE], preexec_fn=_deny_write_execute,
        capture_output=True, text=True, timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split("\n")[:2] == ["W+X refused", "psycopg binary"], probe.stdout

    gw = GatewayProcess(tmp_path)
    try:
        gw.start(preexec_fn=_deny_write_execute)
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=10) as c:
            c.sendmail("anna@bauwerk-ag.de", [DESK], message(1))
        gw.wait_processed(1)
        assert gw.query("SELECT status, disposition FROM inbound_mail") == [("done", "created SD-1")]
        assert gw.stop() == 0
    finally:
        gw.kill()
    assert "Traceback" not in gw.log_text()
