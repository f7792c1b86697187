"""IMAP ingress: one ``Poller`` per configured ``[[imap]]`` mailbox reads new
mail with aioimaplib, commits it to the spool, and only then flags it
``\\Seen`` and moves it to the processed folder.

Exactly once. The poller keeps a cursor per mailbox (``imap_cursor``, in
``store.imap_cursors``: the folder's UIDVALIDITY and the highest UID
committed to the spool) and writes
it in the *same transaction* as the spool rows. A crash after that commit
but before the move leaves the message in the folder with a UID at or below
the cursor: the next poll only finishes it (flag + move), it does not spool
it again. A crash before the commit leaves nothing behind: the message is
fetched again. A changed UIDVALIDITY makes the cursor meaningless, so the
folder is rescanned from UID 1 and the pipeline's deduplication (same
Message-ID, sender and body) turns the copies into ``ignored: duplicate``.

Oversize mail (RFC822.SIZE above ``smtp.max_message_size``) is never
fetched: it stays in the folder with one log line, or moves to
``oversize_folder``. While such a message sits in the folder the cursor is
held below its UID, so raising the limit later can never make the poller
mistake it for an already-spooled message and move it unprocessed.

Resilience. aioimaplib neither fails pending commands when the connection
drops nor applies a timeout to every command, so every call goes through
``_call``: bounded by a timeout and raced against the connection's
"lost" future. Any failure drops the connection and retries with
exponential backoff and jitter; a refused login retries much more slowly
and logs one line per attempt. Database work runs in a thread.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import logging
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import aioimaplib

from gateway.domain import TemporaryFailure
from gateway.instance import Instance
from gateway.settings import ImapSettings
from gateway.store.imap_cursors import load_cursor, record_status, write_cursor
from gateway.store.models import utcnow
from gateway.store.spool import Spool, SpoolItem

log = logging.getLogger("gateway.imap")

# aioimaplib parses a response recursively, one stack frame per line, and
# dies with RecursionError (the transport closes) near 1,000 lines in one
# read. Every command is therefore kept to well under that many lines.
FETCH_BATCH = 10  # messages per BODY.PEEK[] fetch (one commit per batch)
FETCH_BATCH_BYTES = 32 * 1024 * 1024
SIZE_BATCH = 200  # UIDs per RFC822.SIZE fetch: one response line each
FINISH_BATCH = 100  # UIDs per STORE/MOVE: MOVE answers one EXPUNGE line each
# Servers may drop an IDLE connection after 30 minutes (RFC 2177); renew
# well before that.
IDLE_RENEW_MAX = 25 * 60.0
TRANSFER_RATE = 1024 * 1024  # bytes/s assumed when sizing a fetch timeout

T = TypeVar("T")


class ImapError(Exception):
    """The server refused a command, or spoke something we cannot use."""


class AuthError(ImapError):
    """Login refused or credentials unreadable: retrying soon will not help."""


class ConnectionLost(ImapError):
    """The connection closed (server restart, BYE, network)."""


class LeaseLost(Exception):
    """Another instance polls this mailbox now (or this one can no longer
    be sure it does not): stop touching it."""


class ImapTimeout(ImapError):
    """A command got no complete answer in time."""


# -- helpers ---------------------------------------------------------------


def uid_set(uids: Sequence[int]) -> str:
    """Compact IMAP sequence set: ``1:3,7,9:10``."""
    ordered = sorted(set(uids))
    parts: list[str] = []
    start = prev = ordered[0]
    for uid in ordered[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        parts.append(f"{start}:{prev}" if start != prev else str(start))
        start = prev = uid
    parts.append(f"{start}:{prev}" if start != prev else str(start))
    return ",".join(parts)


def quoted(name: str) -> str:
    """An IMAP quoted string (folder names may contain spaces)."""
    return aioimaplib.quoted(name)


def mailbox(name: str) -> str:
    """A folder name as IMAP4rev1 wants it on the wire: modified UTF-7
    (RFC 3501 5.1.3), quoted. "Gelöscht" is ``"Gel&APY-scht"``; sent as
    UTF-8 the server would refuse it or make a different folder."""
    return quoted(modified_utf7(name))


def modified_utf7(name: str) -> str:
    """RFC 3501 5.1.3: printable ASCII stands for itself ("&" as "&-"); any
    other run of characters is "&", its UTF-16BE in base64 with "," for "/"
    and no padding, then "-"."""
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            encoded = base64.b64encode("".join(run).encode("utf-16-be")).decode("ascii")
            out.append("&" + encoded.rstrip("=").replace("/", ",") + "-")
            run.clear()

    for ch in name:
        if " " <= ch <= "~":
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


def _text(response: Any) -> str:
    """The human part of a tagged response, for log lines."""
    lines = [ln for ln in response.lines if isinstance(ln, bytes)]
    return (lines[-1].decode(errors="replace") if lines else "").strip()[:200] or str(response.result)


def _chunks(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


_UID = re.compile(rb"UID (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_FETCH_LITERAL = re.compile(rb"^\d+ FETCH \(.*\{\d+\}$")
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_NEW_MAIL = re.compile(rb"^\d+ (EXISTS|RECENT)\b")


def parse_sizes(lines: Sequence[Any]) -> dict[int, int]:
    sizes: dict[int, int] = {}
    for line in lines:
        if isinstance(line, bytes):
            uid, size = _UID.search(line), _SIZE.search(line)
            if uid and size:
                sizes[int(uid.group(1))] = int(size.group(1))
    return sizes


def parse_bodies(lines: Sequence[Any]) -> list[tuple[int, bytes]]:
    """(uid, raw) from a ``UID FETCH … (UID BODY.PEEK[])`` response. The UID
    item may come before the literal or after it (on the closing line)."""
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if isinstance(line, bytes) and _FETCH_LITERAL.match(line) and i + 1 < len(lines):
            literal = lines[i + 1]
            if isinstance(literal, bytearray):  # aioimaplib hands literals over as bytearray
                m = _UID.search(line)
                if m is None and i + 2 < len(lines) and isinstance(lines[i + 2], bytes):
                    m = _UID.search(lines[i + 2])
                if m is not None:
                    out.append((int(m.group(1)), bytes(literal)))
                i += 2
                continue
        i += 1
    return out


# -- the poller ------------------------------------------------------------


class Poller:
    """Reads one mailbox folder into the spool. ``poll`` is one scheduled
    pass (never raises); ``run_idle`` is the long-running IDLE loop."""

    def __init__(
        self,
        cfg: ImapSettings,
        spool: Spool,
        *,
        max_message_size: int,
        on_commit: Callable[[list[int]], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
        instance: Instance | None = None,
    ) -> None:
        self.cfg = cfg
        # Several gateways on one database: only the holder of this
        # mailbox's lease connects, fetches and moves (None: alone).
        self.instance = instance
        self.spool = spool
        self.engine = spool.engine
        self.max_message_size = max_message_size
        self.on_commit = on_commit
        self.ssl_context = ssl_context
        self.timeout = timeout
        self.key = cfg.key
        self.lease = f"imap:{self.key}"
        self._standing_by = False
        # Retry policy (attributes so tests can shrink them).
        self.backoff_base = 1.0
        self.backoff_max = 300.0
        self.auth_retry = 300.0  # a wrong password does not fix itself
        self.idle_renew = IDLE_RENEW_MAX
        self.stats: collections.Counter[str] = collections.Counter()
        self.task: asyncio.Task[None] | None = None  # the IDLE task, set by gateway.jobs

        self._client: aioimaplib.IMAP4 | None = None
        self._lost: asyncio.Future[None] | None = None
        self._uidvalidity = 0
        self._cursor: tuple[int, int] | None = None  # what the last sync left
        self._failures = 0
        self._not_before = 0.0  # time.monotonic() before which no attempt starts
        self._oversize_logged: set[tuple[int, int]] = set()

    # -- entry points ----------------------------------------------------
    async def poll(self) -> int:
        """One pass: connect if needed, spool new mail, finish it. Returns
        how many messages were spooled. Errors are logged and recorded,
        never raised (a broken mailbox must not disturb anything else)."""
        if time.monotonic() < self._not_before:
            return 0  # still backing off after a failure
        if not await self._take_turn():
            return 0
        try:
            await self._ensure_connected()
            spooled = await self._sync()
            await self._record_success()
        except asyncio.CancelledError:
            await self._drop(polite=False)
            raise
        except LeaseLost:
            await self._stand_by("lost its lease")
            return 0
        except Exception as exc:  # noqa: BLE001 - every failure is logged and retried
            # The scheduler calls again after poll_seconds at the earliest.
            await self._failed(exc, floor=float(self.cfg.poll_seconds))
            return 0
        self._failures = 0
        return spooled

    async def run_idle(self) -> bool:
        """Sync, IDLE until the server reports new mail (or the renewal
        interval passes), repeat; reconnect with backoff on any failure.
        Returns False at once if the server offers no IDLE (the caller
        then schedules ``poll``); otherwise runs until cancelled."""
        while True:
            delay = self._not_before - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if not await self._take_turn():
                await asyncio.sleep(self.cfg.poll_seconds)
                continue
            try:
                await self._ensure_connected()
                if not self._has("IDLE"):
                    log.info(
                        "imap %s: server offers no IDLE; polling every %ss", self.key, self.cfg.poll_seconds
                    )
                    return False
                # Until a pass finds nothing new: mail arriving after the
                # last SEARCH is then reported inside the IDLE below.
                while await self._sync():
                    pass
                await self._record_success()
                self._failures = 0
                await self._idle_once()
            except asyncio.CancelledError:
                await self._drop(polite=False)
                raise
            except LeaseLost:
                await self._stand_by("lost its lease")
            except Exception as exc:  # noqa: BLE001 - logged, recorded, retried
                await self._failed(exc)

    async def close(self) -> None:
        """Log out (politely, briefly) and forget the connection."""
        await self._drop(polite=True)

    # -- one poller per mailbox among instances ------------------------------
    async def _take_turn(self) -> bool:
        """Take (or renew) this mailbox's lease; without it, let go of the
        mailbox and stand by."""
        if self.instance is None:
            return True
        if await self.instance.acquire(self.lease):
            if self._standing_by:
                log.info("imap %s: this instance polls it now", self.key)
                self._standing_by = False
            return True
        await self._stand_by("another instance polls it")
        return False

    async def _stand_by(self, why: str) -> None:
        if not self._standing_by:
            log.info("imap %s: %s; standing by", self.key, why)
            self._standing_by = True
        await self._drop(polite=True)

    def _check_turn(self) -> None:
        """Before anything that fetches or changes the folder."""
        if self.instance is not None and not self.instance.holds(self.lease):
            raise LeaseLost(self.lease)

    def idle_renew_seconds(self) -> float:
        """How long one IDLE lasts: under the 29 minutes servers allow, and
        no longer than poll_seconds, so a push the server failed to send
        costs at most one poll interval."""
        return float(min(self.idle_renew, self.cfg.poll_seconds, IDLE_RENEW_MAX))

    # -- connection --------------------------------------------------------
    def _alive(self) -> bool:
        return (
            self._client is not None
            and self._lost is not None
            and not self._lost.done()
            and self._client.get_state() == aioimaplib.SELECTED
        )

    def _has(self, capability: str) -> bool:
        return self._client is not None and self._client.has_capability(capability)

    async def _ensure_connected(self) -> None:
        if self._alive():
            return
        await self._drop(polite=False)
        await self._connect()

    async def _connect(self) -> None:
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[None] = loop.create_future()

        def on_lost(_exc: Exception | None) -> None:
            if not lost.done():
                lost.set_result(None)

        ctx = None
        if cfg.tls != "none":
            # The system's CAs, or the file naming the CA of an internal server.
            ctx = self.ssl_context or ssl.create_default_context(cafile=cfg.ca_file)
        client = aioimaplib.IMAP4(
            host=cfg.host,
            port=cfg.port,
            timeout=self.timeout,
            conn_lost_cb=on_lost,
            ssl_context=ctx if cfg.tls == "tls" else None,
        )
        self._client, self._lost = client, lost
        self.stats["connects"] += 1
        await self._call(client.wait_hello_from_server())
        if cfg.tls == "starttls":
            assert ctx is not None
            await self._starttls(client, ctx)
        password = self._password()
        if self._has("LOGINDISABLED"):
            raise AuthError(
                'server refuses LOGIN on this connection (LOGINDISABLED): set tls = "tls" or "starttls"'
            )
        response = await self._call(client.login(quoted(cfg.username), password))
        if response.result != "OK":
            raise AuthError(f"login as {cfg.username} refused: {_text(response)}")
        # The capabilities after login can differ (IDLE, MOVE, UIDPLUS).
        await self._call(client.protocol.capability())
        for folder in (cfg.processed_folder, cfg.oversize_folder):
            if folder:
                await self._ensure_folder(folder)
        response = await self._call(client.select(mailbox(cfg.folder)))
        if response.result != "OK":
            raise ImapError(f"cannot select folder {cfg.folder!r}: {_text(response)}")
        validity = next(
            (
                int(m.group(1))
                for ln in response.lines
                if isinstance(ln, bytes)
                if (m := _UIDVALIDITY.search(ln))
            ),
            None,
        )
        if validity is None:
            raise ImapError(f"folder {cfg.folder!r} has no UIDVALIDITY")
        self._uidvalidity = validity

    async def _starttls(self, client: aioimaplib.IMAP4, ctx: ssl.SSLContext) -> None:
        """aioimaplib has no STARTTLS: send the command, then upgrade the
        transport under the same protocol object."""
        if not self._has("STARTTLS"):
            raise ImapError("server does not offer STARTTLS")
        proto = client.protocol
        response = await self._call(
            proto.execute(aioimaplib.Command("STARTTLS", proto.new_tag(), loop=proto.loop))
        )
        if response.result != "OK":
            raise ImapError(f"STARTTLS refused: {_text(response)}")
        loop = asyncio.get_running_loop()
        proto.transport = await self._call(
            loop.start_tls(proto.transport, proto, ctx, server_hostname=self.cfg.host)
        )
        # RFC 3501 6.2.1: forget what was said before TLS.
        await self._call(proto.capability())

    def _password(self) -> str:
        """Read on every connect, so a rotated password file takes effect."""
        path = Path(self.cfg.password_file).expanduser()
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise AuthError(f"cannot read password_file {path}: {exc.strerror}") from None

    async def _ensure_folder(self, folder: str) -> None:
        assert self._client is not None
        response = await self._call(self._client.list('""', mailbox(folder)))
        # Untagged "* LIST (flags) delim name" arrives without "* LIST".
        if any(isinstance(ln, bytes) and ln.startswith((b"(", b"LIST")) for ln in response.lines[:-1]):
            return
        response = await self._call(self._client.create(mailbox(folder)))
        if response.result != "OK" and b"ALREADYEXISTS" not in b" ".join(
            ln for ln in response.lines if isinstance(ln, bytes)
        ):
            raise ImapError(f"cannot create folder {folder!r}: {_text(response)}")
        log.info("imap %s: created folder %r", self.key, folder)

    async def _drop(self, polite: bool) -> None:
        client, lost = self._client, self._lost
        self._client = self._lost = None
        if client is None:
            return
        alive = lost is not None and not lost.done()
        if polite and alive and client.get_state() in (aioimaplib.AUTH, aioimaplib.SELECTED):
            with contextlib.suppress(Exception):
                if client.has_pending_idle():
                    client.idle_done()
                await asyncio.wait_for(client.logout(), 2.0)
        transport = client.protocol.transport
        if transport is not None:
            transport.close()
        # aioimaplib's own helper tasks would otherwise wait forever on a
        # connection that is gone.
        for task in (*client.tasks, *client.protocol.tasks, client._client_task):
            task.cancel()

    async def _call(self, aw: Awaitable[T], timeout: float | None = None) -> T:
        """Await one IMAP operation, bounded by ``timeout`` and by the
        connection: a dropped connection fails it at once instead of
        leaving it pending forever (aioimaplib never fails it)."""
        lost = self._lost
        task = asyncio.ensure_future(aw)
        try:
            waiters: set[asyncio.Future[Any]] = {task} if lost is None else {task, lost}
            done, _ = await asyncio.wait(
                waiters, timeout=timeout or self.timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if task in done:
                return task.result()
            if lost is not None and lost in done:
                raise ConnectionLost("connection closed by the server")
            raise ImapTimeout(f"no answer within {timeout or self.timeout:.0f}s")
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    # -- one pass over the folder ----------------------------------------
    async def _sync(self) -> int:
        """Spool what is new, finish what was spooled; returns how many
        messages were spooled."""
        validity = self._uidvalidity
        stored = await asyncio.to_thread(load_cursor, self.engine, self.key)
        last = 0
        if stored is not None and stored[0] == validity:
            last = stored[1]
        elif stored is not None and stored[0] not in (0, validity):
            log.warning(
                "imap %s: UIDVALIDITY changed (%s -> %s): rescanning the folder; "
                "copies of mail already processed are dropped as duplicates",
                self.key,
                stored[0],
                validity,
            )
        uids = await self._search_all()
        sizes = await self._sizes(uids)
        limit = self.max_message_size
        oversize = [u for u in uids if sizes.get(u, 0) > limit]
        parked = await self._oversize(oversize, sizes)
        # Hold the cursor below mail left in the folder (see module doc).
        cap = min(parked) - 1 if parked else None
        fits = [u for u in uids if u in sizes and sizes[u] <= limit]
        leftovers = [u for u in fits if u <= last]
        if leftovers:
            log.info(
                "imap %s: finishing %d message(s) spooled before an interruption", self.key, len(leftovers)
            )
            await self._finish(leftovers)
        spooled = 0
        high = last
        for batch in self._batches([u for u in fits if u > last], sizes):
            fetched = await self._fetch(batch, sum(sizes[u] for u in batch))
            if not fetched:
                continue  # expunged by someone else meanwhile
            high = max(high, *(uid for uid, _ in fetched))
            cursor_uid = high if cap is None else min(high, cap)
            ids = await self._commit(fetched, validity, cursor_uid)
            spooled += len(ids)
            await self._finish([uid for uid, _ in fetched])
        self._cursor = (validity, high if cap is None else min(high, cap))
        return spooled

    async def _search_all(self) -> list[int]:
        assert self._client is not None
        response = await self._call(self._client.uid_search("ALL", charset=None))
        if response.result != "OK":
            raise ImapError(f"UID SEARCH failed: {_text(response)}")
        # aioimaplib strips "* SEARCH" from the untagged line; the last line
        # is the tagged completion text.
        uids: list[int] = []
        for line in response.lines[:-1]:
            if isinstance(line, bytes):
                tokens = line.split()
                if tokens and tokens[0] == b"SEARCH":
                    tokens = tokens[1:]
                if all(tok.isdigit() for tok in tokens):
                    uids.extend(int(tok) for tok in tokens)
        return sorted(set(uids))

    async def _sizes(self, uids: list[int]) -> dict[int, int]:
        assert self._client is not None
        sizes: dict[int, int] = {}
        for chunk in _chunks(uids, SIZE_BATCH):
            response = await self._call(self._client.uid("fetch", uid_set(chunk), "(UID RFC822.SIZE)"))
            if response.result != "OK":
                raise ImapError(f"UID FETCH RFC822.SIZE failed: {_text(response)}")
            sizes.update((u, s) for u, s in parse_sizes(response.lines).items() if u in chunk)
        return sizes

    def _batches(self, uids: list[int], sizes: dict[int, int]) -> Iterator[list[int]]:
        batch: list[int] = []
        total = 0
        for uid in uids:
            if batch and (len(batch) >= FETCH_BATCH or total + sizes[uid] > FETCH_BATCH_BYTES):
                yield batch
                batch, total = [], 0
            batch.append(uid)
            total += sizes[uid]
        if batch:
            yield batch

    async def _fetch(self, batch: list[int], nbytes: int) -> list[tuple[int, bytes]]:
        assert self._client is not None
        self._check_turn()
        timeout = self.timeout + nbytes / TRANSFER_RATE
        response = await self._call(
            self._client.uid("fetch", uid_set(batch), "(UID BODY.PEEK[])"), timeout=timeout
        )
        if response.result != "OK":
            raise ImapError(f"UID FETCH BODY.PEEK[] failed: {_text(response)}")
        wanted = set(batch)
        return sorted((uid, raw) for uid, raw in parse_bodies(response.lines) if uid in wanted)

    async def _commit(self, fetched: list[tuple[int, bytes]], validity: int, cursor_uid: int) -> list[int]:
        # A lease lost while fetching: the new holder fetches these again,
        # and an old cursor must not overwrite the one it writes.
        self._check_turn()
        items = [
            SpoolItem(raw=raw, source="imap", recipient=self.cfg.recipient, trusted=self.cfg.trusted)
            for _, raw in fetched
        ]
        values = {"uidvalidity": validity, "last_uid": cursor_uid}
        ids = await asyncio.to_thread(
            self.spool.put_many_with, items, partial(write_cursor, key=self.key, values=values)
        )
        self.stats["spooled"] += len(ids)
        log.info("imap %s: spooled %d message(s) as %s", self.key, len(ids), ids)
        if self.on_commit is not None:
            self.on_commit(ids)
        return ids

    async def _finish(self, uids: list[int]) -> None:
        """Committed mail: ``\\Seen``, then out of the folder."""
        for chunk in _chunks(uids, FINISH_BATCH):
            await self._store(chunk, "(\\Seen)")
            await self._move(chunk, self.cfg.processed_folder)
            self.stats["finished"] += len(chunk)

    async def _store(self, uids: list[int], flags: str) -> None:
        assert self._client is not None
        self._check_turn()
        response = await self._call(self._client.uid("store", uid_set(uids), "+FLAGS.SILENT", flags))
        if response.result != "OK":
            raise ImapError(f"UID STORE {flags} failed: {_text(response)}")

    async def _move(self, uids: list[int], folder: str) -> None:
        assert self._client is not None
        self._check_turn()
        target = mailbox(folder)
        if self._has("MOVE"):
            response = await self._call(self._client.uid("move", uid_set(uids), target))
            if response.result != "OK":
                raise ImapError(f"UID MOVE to {folder!r} failed: {_text(response)}")
            return
        # RFC 6851's fallback. A crash between COPY and EXPUNGE leaves a
        # second copy in the target folder: harmless, it is never read.
        response = await self._call(self._client.uid("copy", uid_set(uids), target))
        if response.result != "OK":
            raise ImapError(f"UID COPY to {folder!r} failed: {_text(response)}")
        await self._store(uids, "(\\Deleted)")
        if self._has("UIDPLUS"):
            response = await self._call(self._client.uid("expunge", uid_set(uids)))
        else:
            response = await self._call(self._client.expunge())
        if response.result != "OK":
            raise ImapError(f"EXPUNGE failed: {_text(response)}")

    async def _oversize(self, uids: list[int], sizes: dict[int, int]) -> list[int]:
        """Move oversize mail to ``oversize_folder`` or leave it (one log
        line per message and process). Returns the UIDs left in place."""
        if not uids:
            return []
        limit = self.max_message_size
        if self.cfg.oversize_folder:
            for uid in uids:
                log.warning(
                    "imap %s: UID %s is %d bytes (limit %d): moved to %r, not processed",
                    self.key, uid, sizes[uid], limit, self.cfg.oversize_folder,
                )  # fmt: skip
            await self._move(uids, self.cfg.oversize_folder)
            return []
        for uid in uids:
            if (self._uidvalidity, uid) not in self._oversize_logged:
                self._oversize_logged.add((self._uidvalidity, uid))
                log.warning(
                    "imap %s: UID %s is %d bytes (limit %d): left in %r, not processed",
                    self.key, uid, sizes[uid], limit, self.cfg.folder,
                )  # fmt: skip
        return uids

    # -- IDLE --------------------------------------------------------------
    async def _idle_once(self) -> None:
        """One IDLE: returns on new mail or renewal; raises ConnectionLost on
        BYE or a dropped connection."""
        client = self._client
        assert client is not None
        queue = client.protocol.idle_queue
        while not queue.empty():  # pushes from an earlier IDLE are stale now
            queue.get_nowait()
        renew = self.idle_renew_seconds()
        idle = await self._call(client.idle_start(timeout=renew))
        self.stats["idle_started"] += 1
        try:
            while True:
                try:
                    push = await self._call(client.wait_server_push(timeout=renew + 5), timeout=renew + 10)
                except TimeoutError:
                    break
                if push == aioimaplib.STOP_WAIT_SERVER_PUSH:
                    break  # renewal time
                lines = [ln for ln in push if isinstance(ln, bytes)]
                if any(ln.startswith(b"BYE") for ln in lines):
                    raise ConnectionLost("server said BYE: " + lines[0].decode(errors="replace")[:100])
                if any(_NEW_MAIL.match(ln) for ln in lines):
                    self.stats["idle_pushes"] += 1
                    break
                # "* OK Still here", EXPUNGE, FLAGS: nothing to fetch
        finally:
            if client.has_pending_idle() and self._lost is not None and not self._lost.done():
                client.idle_done()
        response = await self._call(idle)
        if response.result != "OK":
            raise ImapError(f"IDLE ended badly: {_text(response)}")

    # -- bookkeeping ---------------------------------------------------
    async def _failed(self, exc: BaseException, floor: float = 0.0) -> None:
        self._failures += 1
        delay = min(self.backoff_max, self.backoff_base * 2 ** (self._failures - 1))
        # Jitter: desks whose server restarted do not all come back in step.
        delay *= random.uniform(0.5, 1.0)
        auth = isinstance(exc, AuthError)
        if auth:
            delay = max(delay, self.auth_retry)
        self._not_before = time.monotonic() + delay
        delay = max(delay, floor)  # what the log line promises
        reason = _describe(exc)
        if auth:
            log.error("imap %s: %s; next attempt in %.1fs", self.key, reason, delay)
        elif isinstance(exc, _EXPECTED):
            log.warning("imap %s: %s; reconnecting in %.1fs", self.key, reason, delay)
        else:  # a bug: show where, once per attempt, and keep going
            log.error("imap %s: %s; reconnecting in %.1fs", self.key, reason, delay, exc_info=exc)
        self.stats["failures"] += 1
        await self._drop(polite=False)
        try:
            await asyncio.to_thread(
                record_status, self.engine, self.key, {"last_error": reason[:1000], "last_error_at": utcnow()}
            )
        except Exception as db_exc:  # noqa: BLE001 - the database may be the trouble
            log.debug("imap %s: cannot record the error: %s", self.key, db_exc)

    async def _record_success(self) -> None:
        values: dict[str, Any] = {"last_success_at": utcnow()}
        if self._cursor is not None:
            values.update(uidvalidity=self._cursor[0], last_uid=self._cursor[1])
        await asyncio.to_thread(record_status, self.engine, self.key, values)


_EXPECTED = (
    ImapError,
    OSError,
    TimeoutError,
    ssl.SSLError,
    TemporaryFailure,
    aioimaplib.AioImapException,
    RecursionError,
)


def _describe(exc: BaseException) -> str:
    """One line, no traceback, no password."""
    if isinstance(exc, ImapError | TemporaryFailure):
        return str(exc)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {exc.verify_message}"
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    if isinstance(exc, RecursionError):
        return "response too large for the IMAP client"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
