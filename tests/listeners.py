"""The production SMTP/LMTP ``Listener`` run in-process for tests."""

from __future__ import annotations

import asyncio
import smtplib
import threading
from typing import Any, Self

from sqlalchemy import Engine

from gateway.app import App
from gateway.ingress.smtp import Listener, listener_config
from gateway.store.spool import Spool


class ThreadedListener:
    """The production Listener on 127.0.0.1 (a free port) in its own event
    loop thread: what aiosmtpd's Controller does, but with our
    create_server and committer. ``with ThreadedListener(app) as running:``
    then ``running.host``/``running.port`` or ``running.client()``.

    ``engine`` spools elsewhere than ``app.engine``; ``routing`` replaces
    the settings' routing table; ``smtp`` overrides ``[smtp]`` settings."""

    def __init__(
        self,
        app: App,
        engine: Engine | None = None,
        debug: bool = False,
        routing: dict[str, str] | None = None,
        **smtp: Any,
    ) -> None:
        update: dict[str, Any] = {
            "smtp": app.settings.smtp.model_copy(update={"listen": "127.0.0.1:0", **smtp})
        }
        if routing is not None:
            update["routing"] = routing
        self.config = listener_config(app.settings.model_copy(update=update))
        self.spool = Spool(engine or app.engine, app.blobs)
        self.loop = asyncio.new_event_loop()
        self.loop.set_debug(debug)
        self.loop.slow_callback_duration = 0.05
        self.listener = Listener(self.config, self.spool)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.listener.start(), self.loop).result(10)
        self.host, self.port = self.listener.address
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.listener.stop(grace=2), self.loop).result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def client(self, **kw: Any) -> smtplib.SMTP:
        return smtplib.SMTP(self.host, self.port, timeout=10, **kw)
