"""Run the portal in processes of its own: page work (templates, argon2,
form parsing) never competes with the SMTP listener's event loop.

``WebProcesses`` binds ``[web] listen`` once and starts ``[web] processes``
uvicorn workers on that socket (spawned, so they share nothing else with the
daemon), restarts a worker that dies, and stops them with the daemon
(``gateway serve``) or on its own (``gateway web``). A listen address that
cannot be bound is logged with the reason and does not stop the mail side."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.process import BaseProcess

from gateway.settings import Settings

log = logging.getLogger("gateway.web")

WEB_NICE = 10  # the portal's processes run below the listener's priority
RESTART_PAUSE = 2.0  # seconds before a worker that died is started again
STOP_GRACE = 10.0  # seconds a worker gets to finish its requests on stop


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def bind(listen: str) -> socket.socket:
    """The listening socket for ``host:port`` (IPv4 or IPv6)."""
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(512)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _worker(settings: Settings, sock: socket.socket, parent: int) -> None:
    """One portal process: uvicorn serving the app on the shared socket."""
    import uvicorn

    from gateway import logging_setup
    from gateway.children import die_with
    from gateway.web.app import make_app

    die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; SIGTERM stops uvicorn
    # Pages yield the CPU to the SMTP listener (the pipeline workers do the
    # same): a burst of sign-ins (argon2) must not delay a 250.
    with contextlib.suppress(OSError):
        os.nice(WEB_NICE)
    if not logging_setup.is_configured_elsewhere():
        logging_setup.configure(settings.logging)
    config = uvicorn.Config(
        make_app(settings),
        log_config=None,
        access_log=False,
        proxy_headers=False,  # X-Forwarded-* only from [web] trusted_proxies (web/security.py)
        lifespan="off",
        timeout_graceful_shutdown=int(STOP_GRACE) - 1,
        server_header=False,
    )
    uvicorn.Server(config).run(sockets=[sock])


class WebProcesses:
    """The portal's worker processes, supervised."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sock: socket.socket | None = None
        self.procs: list[BaseProcess | None] = [None] * settings.web.processes
        self.ctx = multiprocessing.get_context("spawn")
        self._died_at: dict[int, float] = {}

    @property
    def address(self) -> tuple[str, int]:
        assert self.sock is not None
        host, port = self.sock.getsockname()[:2]
        return host, port

    def start(self) -> None:
        """Bind and start the workers; OSError (address in use, not
        permitted) when the socket cannot be bound."""
        from gateway.web.security import secret_key

        secret_key(self.settings)  # made once, here, before the workers read it
        self.sock = bind(self.settings.web.listen)
        for i in range(len(self.procs)):
            self._spawn(i)

    def _spawn(self, i: int) -> None:
        assert self.sock is not None
        args = (self.settings, self.sock, os.getpid())
        proc = self.ctx.Process(target=_worker, args=args, name=f"gateway-web-{i}", daemon=False)
        proc.start()
        self.procs[i] = proc

    def check(self) -> None:
        """Start again the workers that died (after a short pause, so that a
        worker that cannot start does not spin)."""
        if self.sock is None:
            return
        now = time.monotonic()
        for i, proc in enumerate(self.procs):
            if proc is None or proc.is_alive():
                continue
            died = self._died_at.setdefault(i, now)
            if now - died < RESTART_PAUSE:
                continue
            log.error("web worker %s exited (code %s); starting it again", i, proc.exitcode)
            self._died_at.pop(i, None)
            self._spawn(i)

    def stop(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for proc in self.procs:
            if proc is not None:
                proc.join(max(0.0, deadline - time.monotonic()))
                if proc.is_alive():
                    proc.kill()
                    proc.join(5)
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def run_alone(settings: Settings) -> int:
    """``gateway web``: the portal without the mail side, until SIGTERM or
    SIGINT; the exit code."""
    import sys

    web = WebProcesses(settings)
    try:
        web.start()
    except OSError as exc:
        print(f"gateway: cannot listen on {settings.web.listen}: {exc.strerror or exc}", file=sys.stderr)
        return 75
    host, port = web.address
    print(f"gateway: web listening on {host}:{port}", file=sys.stderr, flush=True)
    stop = signal.SIGTERM, signal.SIGINT
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    try:
        while signal.sigtimedwait(stop, 1.0) is None:
            web.check()
    finally:
        web.stop()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop)
    return 0
