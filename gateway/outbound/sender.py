"""The outbox worker: claims due outbound mails, renders them and hands them
to the relay (aiosmtplib) or writes them to a Maildir (the default, so a
laptop run loses nothing and shows what the desk would send).

Claiming is safe with several workers and processes: one short transaction
selects due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite runs every
write transaction under ``BEGIN IMMEDIATE``, see ``store.db``), moves their
``next_attempt_at`` forward by a lease and counts the attempt. A sender that
dies mid-send thus gives its rows back when the lease runs out, and every
later update names the attempt it belongs to, so a sender whose lease was
taken over cannot overwrite the new owner's result.

Outcomes: delivered → ``sent``; connection trouble, timeouts and 4xx →
``retrying`` with exponential backoff, ``failed`` once the mail is older than
``outbound.max_retry_hours`` or had ``max_attempts``; a 5xx → ``failed`` at
once. Rows marked ``bounced`` (by the pipeline, when a DSN names their
Message-ID) are never picked up again. The per-recipient hourly cap is
enforced again here for rows queued by paths other than ``notify``: such a
row waits until the hour has room.

DB work runs in threads (``asyncio.to_thread``) so the daemon's event loop
never blocks on it."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import logging
import mailbox
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import aiosmtplib
import jinja2
from sqlalchemy import Connection, Engine

from gateway import verp
from gateway.domain import AccountState, OutboxStatus, is_desk_address
from gateway.outbound.render import Renderer, RenderError, envelope_sender, load_context, new_message_id
from gateway.settings import OutboundSettings, Settings
from gateway.signup import PURPOSE_RESET, PURPOSE_SIGNUP, discard_token, issue_token, reset_url, signup_url
from gateway.store import outbox, repo
from gateway.store.blobs import make_blob_store
from gateway.store.db import connection
from gateway.store.models import as_utc, utcnow
from gateway.store.outbox import OutboxRow

if TYPE_CHECKING:
    from gateway.services import Services

log = logging.getLogger("gateway.outbound")

HOUR = dt.timedelta(hours=1)


# Mails about an active account's access (they carry no ticket).
ACCOUNT_MAILS = frozenset({"account_exists", "password_reset"})


class TransientSendError(Exception):
    """Try again later (connection refused or lost, timeout, 4xx)."""


class PermanentSendError(Exception):
    """The relay refused this mail for good (5xx)."""


# -- transports ------------------------------------------------------------------


class Transport(Protocol):
    async def send(self, data: bytes, mail_from: str, rcpt: str) -> None: ...

    async def close(self) -> None: ...


class MaildirTransport:
    """Writes each mail as one file into ``outbound.maildir`` (``new/``)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path).expanduser()

    def _write(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Files in a Maildir use the local line ending, as a delivery agent writes them.
        mailbox.Maildir(str(self.path), create=True).add(data.replace(b"\r\n", b"\n"))

    async def send(self, data: bytes, mail_from: str, rcpt: str) -> None:
        try:
            await asyncio.to_thread(self._write, data)
        except OSError as exc:  # disk full, permissions: an operator can fix it
            raise TransientSendError(f"maildir: {exc.strerror or exc}") from exc

    async def close(self) -> None:
        return None


class SmtpTransport:
    """One relay connection, opened on demand, reused for a batch and
    dropped after any error (the next mail reconnects)."""

    def __init__(self, settings: OutboundSettings) -> None:
        self.settings = settings
        self._client: aiosmtplib.SMTP | None = None

    def _password(self) -> str | None:
        path = self.settings.password_file
        if not path:
            return None
        try:
            return Path(path).expanduser().read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise TransientSendError(f"cannot read outbound.password_file: {exc.strerror}") from exc

    async def _connect(self) -> aiosmtplib.SMTP:
        o = self.settings
        client = aiosmtplib.SMTP(
            hostname=o.host,
            port=o.port,
            start_tls=o.starttls,
            validate_certs=o.validate_certs,
            timeout=o.timeout,
            username=o.username,
            password=self._password() if o.username else None,
        )
        await client.connect()
        return client

    async def send(self, data: bytes, mail_from: str, rcpt: str) -> None:
        stage = "connect"
        try:
            if self._client is None or not self._client.is_connected:
                self._client = await self._connect()
            stage = "send"
            await self._client.sendmail(mail_from, [rcpt], data)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            await self._drop()
            first = exc.recipients[0] if exc.recipients else None
            code = first.code if first is not None else 450
            raise _by_code(code, f"recipient refused: {code} {first.message if first else ''}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            await self._drop()
            # A refusal while connecting or logging in is the relay's state
            # or our configuration, not this mail's fault: retry.
            if stage == "connect" or isinstance(exc, aiosmtplib.SMTPAuthenticationError):
                raise TransientSendError(f"relay: {exc.code} {exc.message}") from exc
            raise _by_code(exc.code, f"relay: {exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await self._drop()
            raise TransientSendError(f"relay {self.settings.host}:{self.settings.port}: {exc}") from exc

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            try:
                await client.quit()
            except Exception:  # noqa: BLE001 - leaving anyway
                client.close()


def _by_code(code: int, text: str) -> Exception:
    text = " ".join(text.split())[:500]
    return PermanentSendError(text) if 500 <= code < 600 else TransientSendError(text)


def make_transport(settings: Settings) -> Transport:
    if settings.outbound.transport == "smtp":
        return SmtpTransport(settings.outbound)
    return MaildirTransport(settings.outbound.maildir)


# -- the worker ------------------------------------------------------------------


@dataclass
class Prepared:
    """A rendered mail ready for the transport."""

    row_id: int
    attempt: int
    to_addr: str
    data: bytes
    token: str | None
    mail_from: str  # the VERP return path of this row


class OutboxSender:
    """Sends due outbox rows. ``now`` fixes the clock (tests travel in time)."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        transport: Transport | None = None,
        now: dt.datetime | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.transport = transport or make_transport(settings)
        self.renderer = Renderer(settings)
        self.blobs = make_blob_store(settings.storage.blobs)  # a reply's files go out with it
        self._now = now
        self.mail_from = envelope_sender(settings)

    def now(self) -> dt.datetime:
        return self._now or utcnow()

    async def close(self) -> None:
        await self.transport.close()

    async def run_once(
        self, stop: asyncio.Event | None = None, yield_to: Callable[[], Awaitable[None]] | None = None
    ) -> collections.Counter[str]:
        """Send everything due now (each row at most once per call).
        ``yield_to`` is awaited before each batch: the daemon uses it to let
        inbound mail go first (rendering competes with the listener for the
        process's GIL)."""
        counts: collections.Counter[str] = collections.Counter()
        seen: set[int] = set()
        while stop is None or not stop.is_set():
            if yield_to is not None:
                await yield_to()
            claimed = await asyncio.to_thread(self.claim, seen)
            if not claimed:
                break
            pending = dict(claimed)  # what the renewal keeps leased
            renewal = asyncio.create_task(self._renew(pending), name="outbox-lease")
            try:
                for row_id, attempt in claimed:
                    seen.add(row_id)
                    if stop is not None and stop.is_set():
                        break  # the rest come back when their lease ends
                    counts[await self.process(row_id, attempt)] += 1
                    pending.pop(row_id, None)
            finally:
                renewal.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewal
        return counts

    async def _renew(self, pending: dict[int, int]) -> None:
        """Every third of ``lease_seconds``, move the lease of the batch's
        rows not yet done forward: a slow relay never lets another sender
        take a row this one is still sending, and a dead sender's rows come
        back within one lease. (The one window a mail can go out twice: the
        relay said 250 and the sender died before recording it.)"""
        lease = self.settings.outbound.lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            until = self.now() + dt.timedelta(seconds=lease)
            try:
                await asyncio.to_thread(self._extend, list(pending.items()), until)
            except Exception as exc:  # noqa: BLE001 - the rows come back when the lease ends; no harm
                log.warning("outbox: cannot renew the lease of %s mail(s): %s", len(pending), exc)

    def _extend(self, claimed: list[tuple[int, int]], until: dt.datetime) -> None:
        with connection(self.engine) as conn:
            outbox.extend_leases(conn, claimed, until)

    # -- steps (sync ones run in a thread) --------------------------------------
    def claim(self, exclude: set[int] | None = None) -> list[tuple[int, int]]:
        """Lease up to ``batch_size`` due rows; returns (id, attempt number)."""
        now = self.now()
        o = self.settings.outbound
        lease_until = now + dt.timedelta(seconds=o.lease_seconds)
        with connection(self.engine) as conn:
            return outbox.claim_due(conn, now, o.batch_size, lease_until, exclude or ())

    async def process(self, row_id: int, attempt: int) -> str:
        """One claimed row to its outcome: sent, retrying, failed, deferred
        or skipped (no longer ours)."""
        prepared = await asyncio.to_thread(self.prepare, row_id, attempt)
        if isinstance(prepared, str):
            return prepared
        try:
            await self.transport.send(prepared.data, prepared.mail_from, prepared.to_addr)
        except TransientSendError as exc:
            log.warning("outbox=%s to=%s: attempt %s failed: %s", row_id, prepared.to_addr, attempt, exc)
            return await asyncio.to_thread(self.finish_error, prepared, str(exc), False)
        except PermanentSendError as exc:
            log.warning("outbox=%s to=%s: refused: %s", row_id, prepared.to_addr, exc)
            return await asyncio.to_thread(self.finish_error, prepared, str(exc), True)
        await asyncio.to_thread(self.finish_sent, prepared)
        log.info("outbox=%s to=%s: sent", row_id, prepared.to_addr)
        return "sent"

    def _load(self, conn: Connection, row_id: int, attempt: int) -> OutboxRow | None:
        return outbox.load_attempt(conn, row_id, attempt)

    def _set(self, conn: Connection, row_id: int, attempt: int, **values: object) -> bool:
        return outbox.update_attempt(conn, row_id, attempt, **values)

    def prepare(self, row_id: int, attempt: int) -> Prepared | str:
        """Check, render and record the mail in one transaction, committed
        before anything is sent: the signup token must exist when the mail
        arrives, and so must the Message-ID a quick reply will name."""
        now = self.now()
        with connection(self.engine) as conn:
            row = self._load(conn, row_id, attempt)
            if row is None:
                return "skipped"  # bounced, retried by an operator, or the lease was lost
            refusal = self._refusal(conn, row, now)
            if refusal is not None:
                self._set(conn, row_id, attempt, status=OutboxStatus.failed.value, last_error=refusal,
                          next_attempt_at=None)
                return "failed"
            wait_until = self._capped_until(conn, row, now)
            if wait_until is not None:
                return self._defer(conn, row, attempt, now, wait_until)
            wait_until = self._desk_capped_until(conn, row, now)
            if wait_until is not None:
                return self._defer_backscatter(conn, row, attempt, now, wait_until)
            try:
                return self._render(conn, row, attempt, now)
            except (RenderError, jinja2.TemplateError) as exc:
                error = f"cannot render: {exc}"[:500]
                log.error("outbox=%s: %s", row_id, error)
                self._set(conn, row_id, attempt, status=OutboxStatus.failed.value, last_error=error,
                          next_attempt_at=None)
                return "failed"

    def _refusal(self, conn: Connection, row: OutboxRow, now: dt.datetime) -> str | None:
        """Why this row must not be sent at all, or None."""
        if is_desk_address(row.to_addr, self.settings.desk_addresses()):
            return "not sent: the recipient is the desk itself"
        account = repo.account_by_email(conn, row.to_addr)
        if account is not None:
            if account.bounced_at is not None:
                return "not sent: the address bounced before"
            if account.is_robot or account.state == AccountState.disabled:
                return "not sent: the recipient is disabled or a robot"
            if row.template == "signup_confirmation" and account.state != AccountState.unverified:
                return "not sent: the account is already active"
            if row.template in ACCOUNT_MAILS and account.state != AccountState.active:
                return "not sent: the account is not active"
        elif row.template.startswith("signup_") or row.template in ACCOUNT_MAILS:
            return "not sent: no account for a signup mail"
        return None

    def _capped_until(self, conn: Connection, row: OutboxRow, now: dt.datetime) -> dt.datetime | None:
        """When the hourly cap has room again, or None if it has room now."""
        cap = self.settings.security.max_auto_mails_per_hour
        if not row.automatic:
            return None
        sent, first = outbox.automatic_mails_sent_to(conn, row.to_addr, now - HOUR)
        if sent < cap:
            return None
        oldest = as_utc(first) if first is not None else now
        return max(oldest + HOUR, now + dt.timedelta(seconds=1))

    def _desk_capped_until(self, conn: Connection, row: OutboxRow, now: dt.datetime) -> dt.datetime | None:
        """Backscatter: when the desk-wide hourly cap on automatic mail to
        unverified addresses has room again, or None (room now, or the
        recipient has signed up)."""
        cap = self.settings.security.max_unverified_mails_per_hour
        if not row.automatic or cap == 0:
            return None
        account = repo.account_by_email(conn, row.to_addr)
        if account is not None and account.state != AccountState.unverified:
            return None
        if row.last_error == repo.BACKSCATTER_DEFERRED and self._waited_too_long(row, now):
            return now  # it waited for the cap a day: dropped, even if there is room now
        sent, oldest = repo.unverified_mails_sent_since(conn, now - HOUR)
        if sent < cap:
            return None
        return max(as_utc(oldest) + HOUR if oldest else now, now + dt.timedelta(seconds=1))

    def _waited_too_long(self, row: OutboxRow, now: dt.datetime) -> bool:
        max_wait = dt.timedelta(hours=self.settings.security.unverified_mail_max_wait_hours)
        return now - as_utc(row.created_at) >= max_wait

    def _defer_backscatter(
        self, conn: Connection, row: OutboxRow, attempt: int, now: dt.datetime, until: dt.datetime
    ) -> str:
        """Wait for the desk-wide cap, keeping the order (every waiting row
        gets the same time and the claim orders by it, then by id); drop
        the mail once it has waited ``unverified_mail_max_wait_hours``."""
        if self._waited_too_long(row, now):
            log.warning("outbox=%s to=%s: dropped: %s", row.id, row.to_addr, repo.BACKSCATTER_DROPPED)
            self._set(conn, row.id, attempt, status=OutboxStatus.failed.value, next_attempt_at=None,
                      last_error=repo.BACKSCATTER_DROPPED)
            return "failed"
        self._set(conn, row.id, attempt, attempts=attempt - 1, next_attempt_at=until,
                  last_error=repo.BACKSCATTER_DEFERRED)
        return "deferred"

    def _defer(
        self, conn: Connection, row: OutboxRow, attempt: int, now: dt.datetime, until: dt.datetime
    ) -> str:
        if self._expired(row, now):
            self._set(conn, row.id, attempt, status=OutboxStatus.failed.value, next_attempt_at=None,
                      last_error="not sent: hourly mail limit for this address until the mail expired")
            return "failed"
        # Waiting for the cap is not a failed attempt.
        self._set(conn, row.id, attempt, attempts=attempt - 1, next_attempt_at=until,
                  last_error="deferred: hourly mail limit for this address")
        return "deferred"

    def _render(self, conn: Connection, row: OutboxRow, attempt: int, now: dt.datetime) -> Prepared:
        account = repo.account_by_email(conn, row.to_addr)
        signed_up = account is not None and account.state != AccountState.unverified
        if row.template == "signup_invitation" and signed_up:
            # Signed up meanwhile: the plain acknowledgement is what fits now.
            row = dataclasses.replace(row, template="request_created")
        token = link = None
        if row.template.startswith("signup_") and account is not None:
            lifetime = dt.timedelta(hours=self.settings.security.signup_token_hours)
            token = issue_token(conn, account.id, PURPOSE_SIGNUP, lifetime, now)
            link = signup_url(self.settings, token)
        elif row.template == "password_reset" and account is not None:
            lifetime = dt.timedelta(hours=self.settings.security.reset_token_hours)
            token = issue_token(conn, account.id, PURPOSE_RESET, lifetime, now)
            link = reset_url(self.settings, token)
        message_id = row.message_id
        if message_id is None:
            # Kept across retries: a DSN or a reply names the first one.
            message_id = new_message_id(self.settings)
            if row.ticket_id is not None:
                repo.remember_message_id(conn, message_id, row.ticket_id, direction="outbound")
        ctx = load_context(conn, self.settings, row, account, message_id, link, self.blobs)
        msg = self.renderer.render(ctx, now)
        self._set(conn, row.id, attempt, message_id=message_id, subject=str(msg["Subject"])[:998])
        mail_from = verp.return_path(self.mail_from, row.id, message_id)
        return Prepared(row.id, attempt, row.to_addr, msg.as_bytes(), token, mail_from)

    def _expired(self, row: OutboxRow, now: dt.datetime) -> bool:
        return now - as_utc(row.created_at) >= dt.timedelta(hours=self.settings.outbound.max_retry_hours)

    def finish_sent(self, p: Prepared) -> None:
        now = self.now()
        with connection(self.engine) as conn:
            if not self._set(conn, p.row_id, p.attempt, status=OutboxStatus.sent.value, sent_at=now,
                             last_error=None, next_attempt_at=None):
                log.warning("outbox=%s: sent, but the row changed meanwhile", p.row_id)

    def finish_error(self, p: Prepared, error: str, permanent: bool) -> str:
        now = self.now()
        o = self.settings.outbound
        with connection(self.engine) as conn:
            if p.token is not None:
                discard_token(conn, p.token)  # its mail never arrived
            row = self._load(conn, p.row_id, p.attempt)
            if row is None:
                return "skipped"
            if permanent or p.attempt >= o.max_attempts or self._expired(row, now):
                self._set(conn, p.row_id, p.attempt, status=OutboxStatus.failed.value, last_error=error[:500],
                          next_attempt_at=None)
                return "failed"
            delay = min(o.retry_base_seconds * 2 ** min(p.attempt - 1, 30), o.retry_max_seconds)
            self._set(conn, p.row_id, p.attempt, status=OutboxStatus.retrying.value, last_error=error[:500],
                      next_attempt_at=now + dt.timedelta(seconds=delay))
            return "retrying"


# -- entry points ------------------------------------------------------------------


async def _flush(app: Services, now: dt.datetime | None) -> collections.Counter[str]:
    sender = OutboxSender(app.settings, app.engine, now=now)
    try:
        return await sender.run_once()
    finally:
        await sender.close()


def flush_outbox(app: Services, now: dt.datetime | None = None) -> dict[str, int]:
    """Send every due outbox row once (``gateway outbox flush``, tests);
    returns counts by outcome (sent, retrying, failed, deferred, skipped)."""
    return dict(asyncio.run(_flush(app, now)))


async def run_sender(
    app: Services, stop_event: asyncio.Event, yield_to: Callable[[], Awaitable[None]] | None = None
) -> None:
    """The daemon's outbox loop: send what is due, sleep
    ``outbound.poll_seconds`` (or until stopped), repeat. Database or relay
    trouble is logged and retried; it never ends the loop."""
    sender = OutboxSender(app.settings, app.engine)
    poll = app.settings.outbound.poll_seconds
    try:
        while not stop_event.is_set():
            if app.settings is not sender.settings:
                # A reload (SIGHUP) replaced the settings: [desk], [outbound]
                # and [security] reach the next mail. Between passes, so no
                # mail is rendered with one configuration and sent with another.
                await sender.close()
                sender = OutboxSender(app.settings, app.engine)
                poll = app.settings.outbound.poll_seconds
                log.info("outbox: sending with the reloaded configuration")
            try:
                counts = await sender.run_once(stop_event, yield_to)
                if counts:
                    log.info("outbox: %s", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
            except Exception:  # noqa: BLE001 - the loop must survive anything a pass hits
                log.exception("outbox pass failed; retrying in %ss", poll)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), timeout=poll)
    finally:
        await sender.close()
