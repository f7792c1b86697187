"""The parse step: a spooled message's raw bytes become ``Parsed`` (the
parsed mail, or the reason it cannot be read, and the key that makes a
second copy of the same message a no-op). CPU-bound and free of the
database, so it runs in a process pool when there is a backlog."""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import hashlib
from dataclasses import dataclass

from gateway.domain import ParsedMail, Quarantine, normalize_address, normalize_message_id
from gateway.pipeline.charsets import decode_header_value
from gateway.pipeline.parse import parse_mail
from gateway.settings import LimitsSettings


@dataclass
class Parsed:
    """What the parse step hands to the database step."""

    mail: ParsedMail | None
    error: str | None
    dedup_key: str
    message_id: str | None
    from_addr: str | None
    subject: str | None


def dedup_key(raw: bytes, message_id: str | None, from_addr: str | None) -> str:
    """Same Message-ID, sender and content (the body after the header block;
    trace headers differ between two deliveries of the same message). Line
    ends do not count: the copy that came over SMTP or the daemon's local
    socket has CRLF, the same message read from a file by ``gateway ingest``
    may have LF, and the last line may or may not end in one."""
    split = raw.find(b"\r\n\r\n")
    split = raw.find(b"\n\n") if split < 0 else split
    body = raw[split:].replace(b"\r\n", b"\n").rstrip(b"\n") if split >= 0 else b""
    h = hashlib.sha256()
    h.update((message_id or "").encode("utf-8", "replace") + b"\0")
    h.update((from_addr or "").encode("utf-8", "replace") + b"\0")
    h.update(body)
    return h.hexdigest()


def _header_peek(raw: bytes) -> tuple[str | None, str | None, str | None]:
    """Message-ID, From and Subject from the header block only, for the mail
    log of a message the full parser could not read."""
    try:
        head = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw[:65536])
        mid = head.get("Message-ID")
        frm = email.utils.parseaddr(str(head.get("From", "")))[1]
        # Decoded as the parser would (operators read it in `mail list/show`).
        subject = decode_header_value(head.get("Subject", ""))[:998]
        return (normalize_message_id(str(mid)) if mid else None, normalize_address(frm) or None, subject)
    except Exception:  # noqa: BLE001 - a header we cannot read is no reason to fail
        return None, None, None


def parse_job(raw: bytes, limits: LimitsSettings) -> Parsed:
    """Parse one raw message; runs in a worker process. Never raises."""
    try:
        mail = parse_mail(raw, limits)
    except Quarantine as q:
        mid, frm, subject = _header_peek(raw)
        return Parsed(None, q.reason, dedup_key(raw, mid, frm), mid, frm, subject)
    except Exception as exc:  # noqa: BLE001 - any parser failure quarantines
        mid, frm, subject = _header_peek(raw)
        reason = f"parser error: {type(exc).__name__}"
        return Parsed(None, reason, dedup_key(raw, mid, frm), mid, frm, subject)
    return Parsed(
        mail,
        None,
        dedup_key(raw, mail.message_id, mail.from_addr),
        mail.message_id,
        mail.from_addr,
        mail.subject,
    )


def parse_job_star(args: tuple[bytes | str, LimitsSettings]) -> Parsed:
    """Pool entry point. A str is a blob file path: the worker reads the
    file itself, so the raw bytes are not pickled through the parent."""
    raw, limits = args
    if isinstance(raw, str):
        with open(raw, "rb") as fh:
            raw = fh.read()
    return parse_job(raw, limits)
