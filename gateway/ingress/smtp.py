"""SMTP/LMTP listener: accept a message only for the desk's own addresses,
commit its raw bytes durably to the spool, and only then answer ``250``.

The pieces, each small:

- ``GroupCommitter`` collects messages from all sessions and writes them to
  the spool with one ``Spool.put_many`` per batch (one database commit for
  many messages) in a thread, then resolves each session's future.
- ``DeskHandler`` is the aiosmtpd handler: RCPT policy, DATA -> committer.
- ``GatewaySMTP`` / ``GatewayLMTP`` add what aiosmtpd leaves to the
  application: connection limits, a DATA timeout, and a ``451`` (never a
  ``500`` with the exception text) when something goes wrong.
- ``Listener`` ties them together with ``loop.create_server`` inside the
  daemon's own loop and shuts down gracefully. It also serves LMTP on a
  local Unix socket (``[smtp] socket``): ``gateway ingest`` hands its
  message to the running daemon there instead of starting the pipeline
  itself (``ingress/handoff.py``), under the rules of the inline path.

Nothing here parses mail or touches tickets; that is the pipeline's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import ssl
import stat
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from email._header_value_parser import get_addr_spec, get_angle_addr  # what aiosmtpd uses
from email.errors import HeaderParseError
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session as SmtpSession, syntax

from gateway.domain import (
    RequestType,
    TemporaryFailure,
    is_desk_address,
    normalize_address,
    routed_type,
)
from gateway.ingress.smtp_data import read_data
from gateway.ingress.sniff import check_message
from gateway.store.spool import Spool, SpoolItem

log = logging.getLogger("gateway.smtp")

# Replies. Transient trouble is always 451 with a generic text: the client
# (an MTA) retries, and no internal detail leaks to the outside.
R_OK = "250 2.0.0 OK: queued"
R_RCPT_OK = "250 2.1.5 OK"
R_TEMPFAIL = "451 4.3.0 Temporary failure, please try again later"
R_NO_SUCH_USER = "550 5.1.1 Recipient address rejected: not a service desk address"
R_TOO_MANY_RCPT = "452 4.5.3 Too many recipients"
R_TOO_MANY_CONN = b"421 4.7.0 Too many connections, try again later\r\n"
R_SHUTDOWN = b"421 4.3.2 Service shutting down, try again later\r\n"
R_TOO_MUCH_JUNK = b"421 4.7.0 Too many commands without a message, closing connection\r\n"
R_SESSION_TOO_LONG = b"421 4.4.2 Session too long, closing connection\r\n"
# Commands that do nothing towards a message (Postfix's "junk commands").
JUNK_COMMANDS = ("NOOP", "RSET", "VRFY", "EXPN", "HELP", "ETRN")
R_NOT_MAIL = "554 5.6.0 {}"  # the local socket: what `gateway ingest` would reject
NULL_SENDER = "<>"


# -- group commit ---------------------------------------------------------


@dataclass
class _Pending:
    item: SpoolItem
    future: asyncio.Future[int]


class GroupCommitter:
    """One task that turns many sessions' messages into few commits.

    A session awaits ``submit``; the committer takes everything that is
    waiting (what arrived while the previous commit ran, plus ``window``
    seconds' worth), writes it with one ``put_many`` in ``executor`` and
    resolves every future with its spool id, or with the exception. At low
    load a message waits for at most ``window``; at high load batches grow
    by themselves because messages queue while a commit is in flight.
    """

    def __init__(
        self,
        spool: Spool,
        executor: Executor,
        *,
        window: float = 0.002,
        max_batch: int = 256,
        on_commit: Callable[[list[int]], None] | None = None,
        in_flight: int = 2,
    ) -> None:
        self.spool = spool
        # Commits in flight at once: the next batch's blob files are written
        # and synced while the previous one waits for its fsync; the row
        # inserts still serialise on the database.
        self._slots = asyncio.Semaphore(in_flight)
        self._inflight: set[asyncio.Task[None]] = set()
        self.executor = executor
        self.window = window
        self.max_batch = max_batch
        self.on_commit = on_commit
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # for tests and the benchmark: commits made
        self.committed = 0
        self.last_commit = 0.0  # loop time of the last commit (the daemon's "busy" signal)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="spool-committer")

    async def stop(self) -> None:
        """Commit what is queued, then end."""
        if self._task is None:
            return
        await self._queue.put(None)
        await self._task
        self._task = None

    async def submit(self, item: SpoolItem) -> int:
        """Spool ``item`` durably; returns its spool id. Raises what
        ``put_many`` raised (TemporaryFailure for disk or database trouble)."""
        if self._task is None or self._task.done():
            raise RuntimeError("spool committer is not running")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(item, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            if self.window and self._queue.empty():
                # Alone in the queue: give concurrent sessions a moment to join.
                await asyncio.sleep(self.window)
            while len(batch) < self.max_batch and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            await self._slots.acquire()
            task = loop.create_task(self._commit_and_release(loop, batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _commit_and_release(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        try:
            await self._commit(loop, batch)
        finally:
            self._slots.release()

    async def _commit(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        try:
            ids = await loop.run_in_executor(self.executor, self.spool.put_many, [p.item for p in batch])
        except Exception as exc:  # every session of the batch gets its 451
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        self.batches += 1
        self.committed += len(ids)
        self.last_commit = loop.time()
        for p, spool_id in zip(batch, ids, strict=True):
            if not p.future.done():  # the session may have gone away meanwhile
                p.future.set_result(spool_id)
        if self.on_commit is not None:
            self.on_commit(ids)


# -- the aiosmtpd handler -------------------------------------------------


@dataclass(frozen=True)
class ListenerConfig:
    """What the listener needs from Settings (the daemon builds it)."""

    host: str
    port: int
    desk_addresses: frozenset[str]
    routing: dict[str, RequestType]
    lmtp: bool = False
    max_message_size: int = 26_214_400
    max_recipients: int = 100
    trusted: bool = False
    max_connections: int = 100
    max_connections_per_ip: int = 20
    command_timeout: float = 300.0
    data_timeout: float = 600.0
    junk_command_limit: int = 100  # NOOP, RSET, VRFY ... between two messages
    max_session_seconds: float = 600.0  # a whole connection, however busy
    tls_cert: str | None = None
    tls_key: str | None = None
    hostname: str | None = None  # for the greeting; default: the FQDN
    local_socket: str = ""  # LMTP for `gateway ingest` on this Unix socket; "": none


class DeskHandler:
    """aiosmtpd handler: only the desk's addresses are recipients (never a
    relay), and DATA is answered only after the durable commit."""

    def __init__(
        self,
        config: ListenerConfig,
        committer: GroupCommitter,
        on_result: Callable[[str, str], None] | None = None,
        *,
        local: bool = False,
    ) -> None:
        self.config = config
        self.committer = committer
        # The local socket of `gateway ingest`: its messages are spooled as
        # the inline path would spool them (source "ingest", no envelope
        # sender, any --recipient the operator's MTA passes, never trusted),
        # so whether a daemon runs changes nothing but who processes them.
        self.local = local
        # (result, reason) of every answer that decides a message's fate:
        # the daemon's metrics count them.
        self.on_result = on_result

    # -- ops: counting and reloading ----------------------------------------
    def count(self, result: str, reason: str) -> None:
        if self.on_result is not None:
            self.on_result(result, reason)

    def reload(self, config: ListenerConfig) -> None:
        """New addresses and routing (SIGHUP). Open sessions see them from
        their next command: each handler call reads ``self.config`` afresh,
        and one attribute assignment is atomic on the loop."""
        self.config = config

    # -- end ops --

    async def handle_EHLO(
        self, server: SMTP, session: SmtpSession, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        """aiosmtpd's EHLO answer without AUTH: it offers LOGIN and PLAIN
        after STARTTLS although the desk has no accounts to log in with.
        Advertise only what works."""
        session.host_name = hostname  # what aiosmtpd does when there is no hook
        return [r for r in responses if not r[4:].upper().startswith("AUTH")]

    async def handle_RCPT(
        self, server: SMTP, session: SmtpSession, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if not self.local and not is_desk_address(address, self.config.desk_addresses):
            self.count("rejected", "unknown_recipient")
            return R_NO_SUCH_USER
        if len(envelope.rcpt_tos) >= self.config.max_recipients:
            self.count("tempfailed", "too_many_recipients")
            return R_TOO_MANY_RCPT
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return R_RCPT_OK

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        raw = bytes(envelope.original_content or b"")
        if self.local:
            problem = check_message(raw)
            if problem is not None:
                self.count("rejected", "not_mail")
                return self._per_recipient(R_NOT_MAIL.format(problem), envelope, lmtp=True)
            item = SpoolItem(raw=raw, source="ingest", recipient=self._pick_recipient(envelope.rcpt_tos))
        else:
            item = SpoolItem(
                raw=raw,
                source="lmtp" if self.config.lmtp else "smtp",
                envelope_from=envelope.mail_from or NULL_SENDER,
                recipient=self._pick_recipient(envelope.rcpt_tos),
                trusted=self.config.trusted,
            )
        try:
            spool_id = await self.committer.submit(item)
        except TemporaryFailure as exc:
            # Database busy or down, disk full: expected trouble with a known
            # reason; one line (no traceback) and the client retries.
            log.warning("peer=%s: message not accepted (451): %s", session.peer, exc)
            self.count("tempfailed", "spool_unavailable")
            status = R_TEMPFAIL
        except Exception:
            # A bug: the client must still retry and must not see internals;
            # the operator gets the traceback.
            log.exception("peer=%s: message not accepted (451): internal error", session.peer)
            self.count("tempfailed", "spool_unavailable")
            status = R_TEMPFAIL
        else:
            log.debug("peer=%s: spooled as %s", session.peer, spool_id, extra={"spool": spool_id})
            self.count("accepted", "ok")
            status = R_OK
        return self._per_recipient(status, envelope, lmtp=self.local or self.config.lmtp)

    @staticmethod
    def _per_recipient(status: str, envelope: Envelope, *, lmtp: bool) -> str:
        # LMTP wants one reply per accepted recipient; they share one
        # commit, so they share its outcome.
        return "\r\n".join([status] * len(envelope.rcpt_tos)) if lmtp else status

    def _pick_recipient(self, rcpt_tos: list[str]) -> str | None:
        """One spool row per message: the recipient that picks the request
        type is the most specific one (a routing alias beats the general
        address)."""
        addresses = [normalize_address(a) for a in rcpt_tos]
        for addr in addresses:
            if routed_type(self.config.routing, addr) not in (None, RequestType.other):
                return addr
        return addresses[0] if addresses else None


# -- the protocol: limits, timeouts, safe errors ---------------------------


class ConnectionTracker:
    """Open sessions, counted globally and per client IP."""

    def __init__(self, max_total: int, max_per_ip: int) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.sessions: set[_GatewayMixin] = set()
        self.per_ip: dict[str, int] = {}

    def admit(self, proto: _GatewayMixin, ip: str) -> bool:
        if len(self.sessions) >= self.max_total or self.per_ip.get(ip, 0) >= self.max_per_ip:
            return False
        self.sessions.add(proto)
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
        return True

    def release(self, proto: _GatewayMixin, ip: str) -> None:
        if proto in self.sessions:
            self.sessions.discard(proto)
            left = self.per_ip.get(ip, 1) - 1
            if left > 0:
                self.per_ip[ip] = left
            else:
                self.per_ip.pop(ip, None)


class _GatewayMixin(SMTP):
    """Behaviour shared by the SMTP and LMTP protocols of the listener."""

    def __init__(
        self,
        handler: DeskHandler,
        *,
        tracker: ConnectionTracker,
        data_timeout: float,
        junk_limit: int = 100,
        max_session: float = 600.0,
        **kwargs: Any,
    ) -> None:
        # No AUTH mechanisms: the listener takes mail for the desk, nobody logs in.
        super().__init__(handler, auth_exclude_mechanism=["LOGIN", "PLAIN"], **kwargs)
        self._tracker = tracker
        self._data_timeout = data_timeout
        self._peer_ip = ""
        self._admitted = False
        self._refused = False
        # Sessions that never end: a client sending NOOP every few seconds
        # passes every idle timeout, so one address could hold its slots
        # for good. Junk commands are counted (reset by each accepted
        # message), and the whole session has a deadline.
        self._junk_limit = junk_limit
        self._junk = 0
        self._max_session = max_session
        self._session_timer: asyncio.TimerHandle | None = None
        self._in_data = False
        self._expired = False
        for name in JUNK_COMMANDS:
            method = self._smtp_methods.get(name)
            if method is not None:
                self._smtp_methods[name] = self._counted(method)

    def _counted(self, method: Any) -> Any:
        async def junk(arg: str | None) -> None:
            self._junk += 1
            if self._junk > self._junk_limit:
                log.warning("peer=%s: closing: more than %s junk commands", self._peer_ip, self._junk_limit)
                self.event_handler.count("tempfailed", "too_many_junk_commands")
                self._close_with(R_TOO_MUCH_JUNK)
                return
            await method(arg)

        return junk

    def _close_with(self, reply: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(reply)
            transport.close()

    def _session_expired(self) -> None:
        self._expired = True
        if not self._in_data:  # a message on its way gets its answer first
            log.warning("peer=%s: closing: session longer than %ss", self._peer_ip, self._max_session)
            self.event_handler.count("tempfailed", "session_too_long")
            self._close_with(R_SESSION_TOO_LONG)

    # Connection limits: decided before the greeting, answered with 421.
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._admitted and not self._refused:  # not the STARTTLS re-entry
            peer = transport.get_extra_info("peername")
            self._peer_ip = str(peer[0]) if peer else "?"
            if not self._tracker.admit(self, self._peer_ip):
                self._refused = True
                log.warning("peer=%s: connection refused: too many connections", peer)
                self.event_handler.count("tempfailed", "too_many_connections")
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(R_TOO_MANY_CONN)
                transport.close()
                return
            self._admitted = True
            self._session_timer = asyncio.get_running_loop().call_later(
                self._max_session, self._session_expired
            )
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return  # aiosmtpd never set up a session for this connection
        if self._session_timer is not None:
            self._session_timer.cancel()
        self._tracker.release(self, self._peer_ip)
        super().connection_lost(error)

    # The DATA phase gets its own (longer) deadline; aiosmtpd's single
    # timeout would otherwise cut off a large message on a slow link, or let
    # a dribbling client hold the session as long as it sends a byte a while.
    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        self._reset_timeout(self._data_timeout)
        self._in_data = True
        try:
            if self._decode_data:
                await super().smtp_DATA(arg)  # str content: not how the gateway runs
            else:
                await self._data(arg)
        finally:
            self._in_data = False
            if self.transport is not None:
                self._reset_timeout()
            if self._expired:
                self._session_expired()

    async def _data(self, arg: str) -> None:
        """aiosmtpd's DATA command with ``smtp_data.read_data`` in place of
        its line-by-line loop; the checks, replies and handler call are
        the same."""
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            result = await read_data(self._reader, self.data_size_limit, self.line_length_limit)
        except (asyncio.CancelledError, asyncio.IncompleteReadError):
            # The client went away during DATA: nothing was accepted.
            log.info("peer=%s: connection lost during DATA", self.session.peer if self.session else None)
            self._writer.close()
            raise
        if result.content is None:
            await self.push(result.error or R_TEMPFAIL)
            self._set_post_data_state()
            return
        self.envelope.content = self.envelope.original_content = result.content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        if status is MISSING or str(status).startswith("250"):
            self._junk = 0  # a message was accepted: the client is doing real work
        await self.push("250 OK" if status is MISSING else status)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd 1.4.6's address parser for MAIL FROM and RCPT TO, minus
        the typing.Protocol class it defines on every call (~40 us, twice
        per message, for a type annotation). An address the stdlib parser
        trips over (``<`` raises IndexError there) is malformed too: 553 or
        501 rather than a session error and a 451 that invites retries."""
        if not arg:
            return "", ""
        try:
            parse = get_angle_addr if arg.lstrip().startswith("<") else get_addr_spec
            address, rest = parse(arg)
        except (HeaderParseError, IndexError):
            return None, None
        addr: str = address.addr_spec
        localpart = addr.rpartition("@")[0]
        if self.local_part_limit and len(localpart) > self.local_part_limit:
            return None, None
        return addr, rest

    async def push(self, status: Any) -> None:
        # aiosmtpd answers an oversize message (SIZE= or the DATA itself)
        # without asking the handler: count it where it is said.
        text = status.decode("ascii", "replace") if isinstance(status, bytes) else str(status)
        if text.startswith("552"):
            self.event_handler.count("rejected", "message_too_large")
        await super().push(status)

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd's default answers "500 Error: (Type) text": a permanent
        # failure that would bounce the mail and leak internals.
        log.error("peer=%s: session error", self.session.peer if self.session else None, exc_info=error)
        self.event_handler.count("tempfailed", "session_error")
        self._set_rset_state()
        return R_TEMPFAIL

    @property
    def in_transaction(self) -> bool:
        """Between MAIL FROM and the reply to DATA: shutdown waits for it."""
        return bool(self.envelope is not None and self.envelope.mail_from)

    def shut_down(self) -> None:
        """Tell an idle client we are going away and close (RFC 5321 421)."""
        self._close_with(R_SHUTDOWN)


class GatewaySMTP(_GatewayMixin):
    pass


class GatewayLMTP(_GatewayMixin, LMTP):
    pass


class LocalLMTP(GatewayLMTP):
    """LMTP on the local socket. ``gateway ingest`` takes a message with
    lines of any length (only the size limit applies), so this does too:
    whether a daemon runs must not change which messages are accepted."""

    def __init__(self, handler: DeskHandler, **kwargs: Any) -> None:
        self.line_length_limit = (kwargs.get("data_size_limit") or 2**25) + 2
        super().__init__(handler, **kwargs)


# -- the listener -----------------------------------------------------------


def make_tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


class Listener:
    """The SMTP/LMTP server inside the caller's event loop.

    ``start`` binds and returns; ``stop`` stops accepting, lets sessions in
    the middle of a transaction finish (up to ``grace`` seconds), closes the
    idle ones with 421 and flushes the committer.
    """

    def __init__(
        self,
        config: ListenerConfig,
        spool: Spool,
        *,
        on_commit: Callable[[list[int]], None] | None = None,
        commit_window: float = 0.002,
        on_result: Callable[[str, str], None] | None = None,
    ) -> None:
        self.config = config
        self.spool = spool
        # A thread, not the loop, does the blocking commit (fsync, database).
        self.commit_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="spool-commit")
        self.committer = GroupCommitter(
            spool, self.commit_executor, window=commit_window, on_commit=on_commit
        )
        self.handler = DeskHandler(config, self.committer, on_result)
        self.local_handler = DeskHandler(config, self.committer, on_result, local=True)
        self.tracker = ConnectionTracker(config.max_connections, config.max_connections_per_ip)
        self.tls_context = make_tls_context(config.tls_cert, config.tls_key) if (
            config.tls_cert and config.tls_key
        ) else None
        self.server: asyncio.Server | None = None
        self.local_server: asyncio.Server | None = None
        self._local_inode: tuple[int, int] | None = None  # (dev, ino) of the socket file we bound
        self.hostname = config.hostname or ""

    @property
    def address(self) -> tuple[str, int]:
        """The bound address (the real port when configured as 0)."""
        assert self.server is not None and self.server.sockets
        host, port = self.server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    def protocol_factory(self) -> SMTP:
        cls = GatewayLMTP if self.config.lmtp else GatewaySMTP
        return self._protocol(cls, self.handler, tls_context=self.tls_context)

    def local_protocol_factory(self) -> SMTP:
        return self._protocol(LocalLMTP, self.local_handler)

    def _protocol(self, cls: type[_GatewayMixin], handler: DeskHandler, **extra: Any) -> SMTP:
        """One session's protocol object with the listener's limits."""
        return cls(
            handler,
            tracker=self.tracker,
            data_timeout=self.config.data_timeout,
            junk_limit=self.config.junk_command_limit,
            max_session=self.config.max_session_seconds,
            data_size_limit=self.config.max_message_size,
            enable_SMTPUTF8=True,
            hostname=self.hostname,
            timeout=self.config.command_timeout,
            loop=asyncio.get_running_loop(),
            **extra,
        )

    def reload(self, config: ListenerConfig) -> None:
        """New addresses and routing for both handlers (SIGHUP)."""
        self.handler.reload(config)
        self.local_handler.reload(config)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if not self.hostname:
            # getfqdn may ask DNS: once, in a thread, not per connection.
            self.hostname = await asyncio.to_thread(socket.getfqdn)
        self.committer.start()
        self.server = await loop.create_server(
            self.protocol_factory, host=self.config.host, port=self.config.port, reuse_address=True
        )
        if self.config.local_socket:
            await self._start_local(self.config.local_socket)

    async def _start_local(self, path: str) -> None:
        """Serve LMTP on the Unix socket ``path``. Trouble here is logged and
        costs only speed: ``gateway ingest`` finds no daemon and processes
        its message itself, as it always could."""
        if len(os.fsencode(path)) > 107:  # sun_path holds 108 bytes with its NUL
            log.warning("local socket %s: path too long for a Unix socket; not serving it", path)
            return
        try:
            if not await asyncio.to_thread(_clear_stale_socket, path):
                log.warning("local socket %s: another gateway serves it; not serving it", path)
                return
            self.local_server = await asyncio.get_running_loop().create_unix_server(
                self.local_protocol_factory, path=path
            )
            # The service user (a Postfix pipe runs as it) and its group.
            os.chmod(path, 0o660)
            st = os.stat(path)
            self._local_inode = (st.st_dev, st.st_ino)
        except OSError as exc:
            log.warning("local socket %s: cannot serve it: %s", path, exc.strerror or exc)
            if self.local_server is not None:
                self.local_server.close()
                self.local_server = None
            return
        log.info("local socket %s: `gateway ingest` hands its mail to this daemon", path)

    async def stop(self, grace: float = 30.0) -> None:
        if self.server is not None:
            self.server.close()  # stop accepting; open sessions go on
        if self.local_server is not None:
            self.local_server.close()
            self._remove_local_socket()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while loop.time() < deadline:
            for proto in list(self.tracker.sessions):
                if not proto.in_transaction:
                    proto.shut_down()
            if not self.tracker.sessions:
                break
            await asyncio.sleep(0.02)
        for proto in list(self.tracker.sessions):
            proto.shut_down()  # grace is over: nothing of theirs was acknowledged
        await self.committer.stop()
        for server in (self.server, self.local_server):
            if server is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(server.wait_closed(), 5)
        self.server = self.local_server = None
        self.commit_executor.shutdown(wait=True)

    def _remove_local_socket(self) -> None:
        """Remove our socket file (not one a newer daemon bound meanwhile):
        from now on `gateway ingest` processes inline instead of knocking."""
        path = self.config.local_socket
        with contextlib.suppress(OSError):
            st = os.stat(path)
            if (st.st_dev, st.st_ino) == self._local_inode:
                os.unlink(path)
        self._local_inode = None


def _clear_stale_socket(path: str) -> bool:
    """Make room for binding ``path``: remove a socket file that nobody
    serves (a daemon that was killed). False when a live daemon answers on
    it; OSError when the path is something else (not ours to delete)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return True
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(errno.EEXIST, "exists and is not a socket", path)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
        return False
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)
        return True
    finally:
        probe.close()


def listener_config(settings: Any) -> ListenerConfig:
    """ListenerConfig from Settings (``[smtp]`` and the desk's addresses)."""
    smtp = settings.smtp
    host, _, port = smtp.listen.rpartition(":")
    return ListenerConfig(
        host=host.strip("[]") or "127.0.0.1",
        port=int(port),
        desk_addresses=settings.desk_addresses(),
        routing=dict(settings.routing),
        lmtp=smtp.lmtp,
        max_message_size=smtp.max_message_size,
        max_recipients=smtp.max_recipients,
        trusted=smtp.trusted,
        max_connections=smtp.max_connections,
        max_connections_per_ip=smtp.max_connections_per_ip,
        command_timeout=smtp.command_timeout,
        data_timeout=smtp.data_timeout,
        tls_cert=smtp.tls_cert,
        tls_key=smtp.tls_key,
        local_socket=smtp.socket,
        junk_command_limit=smtp.junk_command_limit,
        max_session_seconds=smtp.max_session_seconds,
    )
