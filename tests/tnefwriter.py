"""A small TNEF ([MS-OXTNEF]) writer for the tests: builds ``winmail.dat``
streams the way Outlook lays them out (version, OEM code page, message
class, the message's MAPI properties, then per attachment its rendering
data, title, bytes and MAPI properties), so the decoder is tested on
deterministic input without a binary sample of unknown origin. Written from
the format's description, independently of ``gateway.pipeline.tnef``.

Also ``compress_rtf`` (an LZFu stream of literals only, which every reader
must accept) and ``mail_with_winmail`` (a MIME mail carrying a stream)."""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SIGNATURE = struct.pack("<I", 0x223E9F78)

# attribute tags: type << 16 | id
ATT_TNEF_VERSION = 0x00089006
ATT_OEM_CODEPAGE = 0x00069007
ATT_MESSAGE_CLASS = 0x00078008
ATT_BODY = 0x0002800C
ATT_MSG_PROPS = 0x00069003
ATT_ATTACH_REND_DATA = 0x00069002
ATT_ATTACH_TITLE = 0x00018010
ATT_ATTACH_DATA = 0x0006800F
ATT_ATTACHMENT = 0x00069005

PT_SHORT, PT_LONG, PT_BOOLEAN, PT_SYSTIME = 0x0002, 0x0003, 0x000B, 0x0040
PT_OBJECT, PT_STRING8, PT_UNICODE, PT_BINARY = 0x000D, 0x001E, 0x001F, 0x0102
MV = 0x1000

PR_BODY, PR_RTF_COMPRESSED, PR_BODY_HTML = 0x1000, 0x1009, 0x1013
PR_SUBJECT, PR_INTERNET_CPID = 0x0037, 0x3FDE
PR_DISPLAY_NAME, PR_ATTACH_DATA, PR_ATTACH_FILENAME, PR_ATTACH_METHOD = 0x3001, 0x3701, 0x3704, 0x3705
PR_ATTACH_LONG_FILENAME, PR_ATTACH_MIME_TAG, PR_ATTACH_CONTENT_ID = 0x3707, 0x370E, 0x3712
PR_ATTACH_FLAGS, PR_ATTACHMENT_HIDDEN = 0x3714, 0x7FFE

IID_IMESSAGE = bytes.fromhex("0703020000000000c000000000000046")
PS_PUBLIC_STRINGS = bytes.fromhex("2903020000000000c000000000000046")


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def attribute(level: int, tag: int, data: bytes) -> bytes:
    """One attribute: level, tag, length, data, checksum (sum of the data bytes)."""
    return struct.pack("<BII", level, tag, len(data)) + data + struct.pack("<H", sum(data) & 0xFFFF)


def prop(ptype: int, pid: int, value: Any, name: str | int | None = None) -> bytes:
    """One MAPI property value in TNEF's encoding. ``name``: for a named
    property (``pid`` >= 0x8000), its string or numeric name."""
    out = struct.pack("<HH", ptype, pid)
    if name is not None:
        out += PS_PUBLIC_STRINGS
        if isinstance(name, int):
            out += struct.pack("<II", 0, name)
        else:
            encoded = name.encode("utf-16-le") + b"\0\0"
            out += struct.pack("<II", 1, len(encoded)) + _pad(encoded)
    base = ptype & ~MV
    if base in (PT_SHORT, PT_BOOLEAN):
        values = value if ptype & MV else [value]
        body = b"".join(_pad(struct.pack("<h", int(v))) for v in values)
        return out + (struct.pack("<I", len(values)) if ptype & MV else b"") + body
    if base == PT_LONG:
        return out + struct.pack("<i", int(value))
    if base == PT_SYSTIME:
        return out + struct.pack("<Q", int(value))
    values = list(value) if ptype & MV else [value]
    out += struct.pack("<I", len(values))
    for v in values:
        if base == PT_UNICODE:
            raw = str(v).encode("utf-16-le") + b"\0\0"
        elif base == PT_STRING8:
            raw = (v if isinstance(v, bytes) else str(v).encode("cp1252")) + b"\0"
        else:
            raw = bytes(v)
        out += struct.pack("<I", len(raw)) + _pad(raw)
    return out


def props(*items: bytes) -> bytes:
    return struct.pack("<I", len(items)) + b"".join(items)


@dataclass
class Attachment:
    name: str
    data: bytes
    mime_type: str | None = None
    title: str | None = None  # attAttachTitle; the 8.3 name Outlook writes
    method: int | None = 1
    content_id: str | None = None
    flags: int | None = None
    hidden: bool | None = None
    data_in_props: bool = False  # PR_ATTACH_DATA_BIN instead of attAttachData
    embedded: bytes | None = None  # an embedded message (PT_OBJECT, IID_IMessage)


def tnef(
    attachments: Sequence[Attachment] = (),
    *,
    body: str | None = None,
    body_string8: bytes | None = None,
    html: bytes | None = None,
    cpid: int | None = None,
    rtf: bytes | None = None,
    legacy_body: bytes | None = None,
    codepage: int = 1252,
    extra_props: Sequence[bytes] = (),
) -> bytes:
    """A whole stream. ``body``: PR_BODY as Unicode; ``html``: PR_BODY_HTML
    bytes (in ``cpid``); ``rtf``: a PR_RTF_COMPRESSED value;
    ``legacy_body``: the attBody attribute."""
    out = SIGNATURE + struct.pack("<H", 0x0001)
    out += attribute(1, ATT_TNEF_VERSION, struct.pack("<I", 0x00010000))
    out += attribute(1, ATT_OEM_CODEPAGE, struct.pack("<II", codepage, 0))
    out += attribute(1, ATT_MESSAGE_CLASS, b"IPM.Microsoft Mail.Note\0")
    if legacy_body is not None:
        out += attribute(1, ATT_BODY, legacy_body)
    message = [prop(PT_UNICODE, PR_SUBJECT, "Betreff"), *extra_props]
    if body is not None:
        message.append(prop(PT_UNICODE, PR_BODY, body))
    if body_string8 is not None:
        message.append(prop(PT_STRING8, PR_BODY, body_string8))
    if html is not None:
        message.append(prop(PT_BINARY, PR_BODY_HTML, html))
    if cpid is not None:
        message.append(prop(PT_LONG, PR_INTERNET_CPID, cpid))
    if rtf is not None:
        message.append(prop(PT_BINARY, PR_RTF_COMPRESSED, rtf))
    out += attribute(1, ATT_MSG_PROPS, props(*message))
    for att in attachments:
        out += attachment(att)
    return out


def attachment(att: Attachment) -> bytes:
    """An attachment's attributes, as Outlook orders them."""
    out = attribute(2, ATT_ATTACH_REND_DATA, struct.pack("<HIIHHI", 1, 0xFFFFFFFF, 0, 0, 0, 1))
    out += attribute(2, ATT_ATTACH_TITLE, (att.title or att.name).encode("cp1252", "replace") + b"\0")
    if not att.data_in_props and att.embedded is None:
        out += attribute(2, ATT_ATTACH_DATA, att.data)
    items = [
        prop(PT_UNICODE, PR_ATTACH_LONG_FILENAME, att.name),
        prop(PT_UNICODE, PR_DISPLAY_NAME, att.name),
        prop(PT_STRING8, PR_ATTACH_FILENAME, (att.title or att.name).encode("cp1252", "replace")),
    ]
    if att.method is not None:
        items.append(prop(PT_LONG, PR_ATTACH_METHOD, att.method))
    if att.mime_type is not None:
        items.append(prop(PT_STRING8, PR_ATTACH_MIME_TAG, att.mime_type.encode("ascii")))
    if att.content_id is not None:
        items.append(prop(PT_UNICODE, PR_ATTACH_CONTENT_ID, att.content_id))
    if att.flags is not None:
        items.append(prop(PT_LONG, PR_ATTACH_FLAGS, att.flags))
    if att.hidden is not None:
        items.append(prop(PT_BOOLEAN, PR_ATTACHMENT_HIDDEN, int(att.hidden)))
    if att.data_in_props:
        items.append(prop(PT_BINARY, PR_ATTACH_DATA, att.data))
    if att.embedded is not None:
        items.append(prop(PT_OBJECT, PR_ATTACH_DATA, IID_IMESSAGE + att.embedded))
    return out + attribute(2, ATT_ATTACHMENT, props(*items))


def compress_rtf(rtf: bytes, uncompressed: bool = False) -> bytes:
    """A PR_RTF_COMPRESSED value: "MELA" (stored) or "LZFu" with literal
    runs only (valid, if not small). The CRC is left 0: readers that only
    want the text need not check it."""
    if uncompressed:
        return struct.pack("<IIII", len(rtf) + 12, len(rtf), 0x414C454D, 0) + rtf
    body = bytearray()
    for start in range(0, len(rtf), 8):
        chunk = rtf[start : start + 8]
        control = 0
        if len(chunk) < 8:  # room in this group for the end marker
            control = 1 << len(chunk)
        body.append(control)
        body += chunk
    end_ref = struct.pack(">H", ((207 + len(rtf)) % 4096) << 4)
    if len(rtf) % 8 == 0:
        body.append(1)
    body += end_ref
    return struct.pack("<IIII", len(body) + 12, len(rtf), 0x75465A4C, 0) + bytes(body)


def mail_with_winmail(
    stream: bytes | list[bytes],
    *,
    text: str = "",
    subject: str = "Outlook RTF mail",
    message_id: str = "<winmail@meridian-audit.com>",
    content_type: str = "application/ms-tnef",
    filename: str = "winmail.dat",
) -> bytes:
    """A multipart/mixed mail from an Outlook user: a text part (left out
    when ``text`` is empty) and the stream (or each of a list) as an attachment."""
    parts = []
    if text:
        parts.append(f"--t\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n")
    for one in stream if isinstance(stream, list) else [stream]:
        encoded = base64.encodebytes(one).decode("ascii").replace("\n", "\r\n")
        parts.append(
            f'--t\r\nContent-Type: {content_type}; name="{filename}"\r\n'
            f'Content-Disposition: attachment; filename="{filename}"\r\n'
            f"Content-Transfer-Encoding: base64\r\n\r\n{encoded}"
        )
    head = (
        'From: "Outlook User" <user@meridian-audit.com>\r\n'
        "To: servicedesk@xitrust.com\r\n"
        f"Subject: {subject}\r\n"
        "Date: Wed, 13 Mar 2024 08:30:00 +0100\r\n"
        f"Message-ID: {message_id}\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="t"\r\n\r\n'
    )
    return (head + "".join(parts) + "--t--\r\n").encode("utf-8")
