"""``python -m gateway serve`` as a real child process for the operations
tests (systemd notify, SIGHUP reload, metrics, logging): a config file in a
temp state directory, free ports, the log captured to a file."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netutil import free_port

DESK = "servicedesk@xitrust.com"
ALIAS = "support-tech@xitrust.com"


def child_env() -> dict[str, str]:
    """This process's environment for a ``gateway`` child, without the
    developer's GATEWAY_* settings (the test configures the child)."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("GATEWAY_")}


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)  # strings, numbers, booleans and lists are the same in TOML


def config_text(sections: dict[str, dict[str, Any]], imap: list[dict[str, Any]] | None = None) -> str:
    lines = []
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in table.items()]
        lines.append("")
    for box in imap or []:
        lines.append("[[imap]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in box.items()]
        lines.append("")
    return "\n".join(lines)


class GatewayProcess:
    """One daemon in ``state`` (its working directory) with a config file
    the test can rewrite before a SIGHUP."""

    def __init__(self, state: Path, **overrides: dict[str, Any]) -> None:
        self.state = state
        self.port = free_port()
        self.metrics_port = free_port()
        self.config_path = state / "gateway.toml"
        self.sections: dict[str, dict[str, Any]] = {
            "desk": {"addresses": [DESK]},
            "routing": {DESK: "other"},
            "database": {"url": f"sqlite:///{state / 'gateway.db'}"},
            "storage": {"blobs": str(state / "blobs")},
            "smtp": {"listen": f"127.0.0.1:{self.port}"},
            "outbound": {"maildir": str(state / "sent")},
            "metrics": {"listen": f"127.0.0.1:{self.metrics_port}"},
            "web": {"listen": ""},  # the portal's own tests turn it on, on a port of their own
            "workers": {"parse_processes": 1},
        }
        for name, table in overrides.items():
            self.sections.setdefault(name, {}).update(table)
        self.imap: list[dict[str, Any]] = []
        self.write_config()
        self.env = child_env()
        for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"):
            self.env.pop(key, None)
        self.env["GATEWAY_CONFIG"] = str(self.config_path)
        self.log = state / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self, text: str | None = None) -> None:
        self.config_path.write_text(text if text is not None else config_text(self.sections, self.imap))

    def start(
        self,
        wait: bool = True,
        env: dict[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        # The log is appended to across restarts: wait for one more
        # "listening" line than it already has, not for the last start's.
        ready = f"listening on 127.0.0.1:{self.port}"
        seen = self.log_text().count(ready)
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve"],
                env={**self.env, **(env or {})},
                cwd=self.state,
                stdout=err,
                stderr=err,
                preexec_fn=preexec_fn,  # only the MDWE test passes one
            )
        if wait:
            self.wait_for_log(ready, count=seen + 1)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 60, count: int = 1) -> str:
        deadline = time.monotonic() + timeout
        while True:
            log = self.log_text()
            if log.count(text) >= count:
                return log
            assert self.proc is not None
            assert self.proc.poll() is None, f"serve exited ({self.proc.returncode}):\n{log}"
            assert time.monotonic() < deadline, f"{text!r} not in the log:\n{log}"
            time.sleep(0.05)

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 60) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        url: str = self.sections["database"]["url"]
        with sqlite3.connect(url.removeprefix("sqlite:///"), timeout=10) as db:
            return list(db.execute(sql, args))

    def wait_processed(self, n: int, timeout: float = 60) -> None:
        """Until ``n`` inbound mails have left the queue."""
        deadline = time.monotonic() + timeout
        while True:
            done = self.query(
                "SELECT count(*) FROM inbound_mail WHERE status NOT IN ('queued', 'processing')"
            )
            if done[0][0] >= n:
                return
            assert time.monotonic() < deadline, f"only {done[0][0]} of {n} processed:\n{self.log_text()}"
            time.sleep(0.1)


def message(
    n: int = 1, to: str = DESK, body: str = "Hallo, der Drucker druckt nicht.", sender: str = "anna"
) -> bytes:
    return (
        f"From: Anna Berger <{sender}@bauwerk-ag.de>\r\nTo: {to}\r\nSubject: Problem {n}\r\n"
        f"Message-ID: <ops-{n}@bauwerk-ag.de>\r\nDate: Fri, 27 Nov 2026 09:30:00 +0100\r\n"
        f"\r\n{body}\r\n"
    ).encode()
