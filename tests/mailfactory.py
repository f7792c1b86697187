"""Test-only ParsedMail builders: ``parsed_from_bytes`` turns a fixture into a
ParsedMail with the stdlib ``email`` package (so stage tests do not depend on
``pipeline.parse``), ``make_mail`` builds one from keywords."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any

from gateway.domain import DeliveryReport, ParsedMail, normalize_address, normalize_message_id

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def parsed_from_bytes(raw: bytes) -> ParsedMail:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    headers: dict[str, list[str]] = {}
    for name, value in msg.items():
        headers.setdefault(name.lower(), []).append(str(value))
    from_addr, from_name = _first_address(msg, "from")
    mid = msg.get("message-id")
    text = _text(msg)
    return ParsedMail(
        message_id=normalize_message_id(str(mid)) if mid else None,
        subject=str(msg.get("subject", "")),
        from_addr=from_addr,
        from_name=from_name,
        to=_addresses(msg, "to"),
        cc=_addresses(msg, "cc"),
        reply_to=_addresses(msg, "reply-to"),
        in_reply_to=str(msg.get("in-reply-to", "")).split(),
        references=str(msg.get("references", "")).split(),
        headers=headers,
        text=text,
        reply_text=text,
        report=_report(msg),
    )


def make_mail(**kw: Any) -> ParsedMail:
    """A plain customer mail; any ParsedMail field can be overridden.
    ``headers`` keys are lower-cased and single strings wrapped in a list."""
    headers = {k.lower(): ([v] if isinstance(v, str) else list(v)) for k, v in kw.pop("headers", {}).items()}
    text = kw.pop("text", "Hallo,\n\ndie Anmeldung funktioniert nicht.\n\nGruß\nAnna\n")
    defaults: dict[str, Any] = {
        "message_id": "<a1b2c3@mail.bauwerk-ag.de>",
        "subject": "Anmeldung funktioniert nicht",
        "from_addr": "anna.berger@bauwerk-ag.de",
        "from_name": "Anna Berger",
        "to": ["servicedesk@xitrust.com"],
        "headers": headers,
        "text": text,
        "reply_text": kw.pop("reply_text", text),
    }
    defaults.update(kw)
    return ParsedMail(**defaults)


def _addresses(msg: EmailMessage, name: str) -> list[str]:
    header = msg.get(name)
    if header is None:
        return []
    return [normalize_address(a.addr_spec) for a in header.addresses if a.addr_spec]


def _first_address(msg: EmailMessage, name: str) -> tuple[str, str]:
    header = msg.get(name)
    if header is None or not header.addresses:
        return "", ""
    addr = header.addresses[0]
    return normalize_address(addr.addr_spec), addr.display_name


def _text(msg: EmailMessage) -> str:
    body = msg.get_body(preferencelist=("plain", "html"))
    if body is None:
        return ""
    content = body.get_content()
    return content if isinstance(content, str) else ""


def _report(msg: EmailMessage) -> DeliveryReport | None:
    if msg.get_content_type() != "multipart/report":
        return None
    if str(msg.get_param("report-type", "")).lower() != "delivery-status":
        return None
    failed: list[str] = []
    status: str | None = None
    original: str | None = None
    for part in msg.iter_parts():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            # The stdlib gives one Message per block: per-message, then one
            # per recipient.
            for block in part.get_payload():
                assert isinstance(block, Message)
                if str(block.get("action", "")).strip().lower() != "failed":
                    continue
                rcpt = str(block.get("final-recipient") or block.get("original-recipient") or "")
                failed.append(normalize_address(rcpt.rpartition(";")[2]))
                status = status or str(block.get("status", "")).strip() or None
        elif ctype in ("message/rfc822", "text/rfc822-headers"):
            inner: Message
            if ctype == "message/rfc822":
                payload = part.get_payload()
                assert isinstance(payload, list) and isinstance(payload[0], Message)
                inner = payload[0]
            else:
                inner = email.message_from_string(part.get_content(), policy=email.policy.default)
            mid = inner.get("message-id")
            if mid:
                original = normalize_message_id(str(mid))
    return DeliveryReport(failed_recipients=tuple(failed), original_message_id=original, status=status)
