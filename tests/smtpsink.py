"""A real SMTP server for tests of what the desk sends: aiosmtpd's
``Controller`` (its own loop in a thread) with a handler that keeps every
message, or answers with a chosen error. Can be stopped and started again on
the same port to play a relay that is down for a while."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from netutil import free_port


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg

    def text(self) -> str:
        body = self.message.get_body(("plain",))
        assert body is not None
        return str(body.get_content()).replace("\r\n", "\n")  # type: ignore[attr-defined]

    def html(self) -> str:
        body = self.message.get_body(("html",))
        assert body is not None
        return str(body.get_content()).replace("\r\n", "\n")  # type: ignore[attr-defined]


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.sink.delay:
            await asyncio.sleep(self.sink.delay)  # a slow relay: the reply comes late
        if self.sink.reply is not None:
            return self.sink.reply
        raw = envelope.original_content or envelope.content
        with self.sink.lock:
            self.sink.received.append(Received(envelope.mail_from, tuple(envelope.rcpt_tos), bytes(raw)))
        return "250 2.0.0 OK: queued"


class SmtpSink:
    """``with SmtpSink() as sink:`` … ``sink.received``; ``sink.reply =
    "451 …"`` makes it refuse; ``sink.delay`` makes it slow; ``stop()``/``start()``
    take it down and up."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: list[Received] = []
        self.reply: str | None = None
        self.delay = 0.0  # seconds before the reply to DATA
        self.lock = threading.Lock()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def take(self) -> list[Received]:
        with self.lock:
            out, self.received = self.received, []
        return out

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
