"""Outlook/Exchange's TNEF container ([MS-OXTNEF]): the ``winmail.dat``
(application/ms-tnef) that Outlook sends instead of ordinary MIME parts
when a mail is written in RTF, with the mail's real attachments and its
body inside. This module reads that container and nothing else; ``parse``
turns what it finds into attachments and body text.

Our own reader rather than tnefparse (1.4.0): tnefparse is LGPL-3.0, copies
the rest of the stream for every attribute it reads (quadratic on a file of
many small attributes), needs another package for compressed RTF, logs
warnings of its own, and lets some malformed input escape as other errors
(an attachment attribute before any attachment: UnboundLocalError). What the
gateway needs is ~200 lines: the attribute stream, the MAPI property lists
of the message and its attachments, and a handful of properties.

Hostile input is the normal case: every length is checked against the
bytes that are there, the work is bounded (attributes and properties read,
attachments found), and anything malformed raises ``TnefError`` and
nothing else. Decoding is all or nothing for the attribute stream (a cut
file yields no partial list of attachments, the caller keeps the original),
but lenient inside one property list (its length is known, so a property
this reader cannot parse ends that list, not the file)."""

from __future__ import annotations

import codecs
import struct
from dataclasses import dataclass, field

SIGNATURE = b"\x78\x9f\x3e\x22"  # 0x223E9F78, little-endian
CONTENT_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})

# Work one message's streams may cost together: attributes plus properties
# plus values read. A real winmail.dat has a few dozen per attachment; this
# is ~0.15 s of Python.
MAX_STEPS = 100_000

_LEVEL_MESSAGE, _LEVEL_ATTACHMENT = 1, 2

# Attribute ids: the low 16 bits of an attribute's tag (the high 16 are its type).
_ATT_BODY = 0x800C  # plain text body, in the OEM code page
_ATT_ATTACH_DATA = 0x800F  # an attachment's bytes
_ATT_ATTACH_TITLE = 0x8010  # an attachment's file name (often 8.3)
_ATT_ATTACH_REND_DATA = 0x9002  # starts the next attachment
_ATT_MSG_PROPS = 0x9003  # the message's MAPI properties
_ATT_ATTACHMENT = 0x9005  # an attachment's MAPI properties
_ATT_OEM_CODEPAGE = 0x9007

# MAPI property ids.
_PR_BODY = 0x1000
_PR_RTF_COMPRESSED = 0x1009
_PR_BODY_HTML = 0x1013
_PR_DISPLAY_NAME = 0x3001
_PR_ATTACH_DATA = 0x3701  # PT_BINARY bytes, or PT_OBJECT (embedded message, OLE storage)
_PR_ATTACH_FILENAME = 0x3704
_PR_ATTACH_METHOD = 0x3705
_PR_ATTACH_LONG_FILENAME = 0x3707
_PR_ATTACH_MIME_TAG = 0x370E
_PR_ATTACH_CONTENT_ID = 0x3712
_PR_ATTACH_FLAGS = 0x3714
_PR_INTERNET_CPID = 0x3FDE
_PR_ATTACHMENT_HIDDEN = 0x7FFE
_WANTED = frozenset(
    {
        _PR_BODY, _PR_RTF_COMPRESSED, _PR_BODY_HTML, _PR_DISPLAY_NAME, _PR_ATTACH_DATA,
        _PR_ATTACH_FILENAME, _PR_ATTACH_METHOD, _PR_ATTACH_LONG_FILENAME, _PR_ATTACH_MIME_TAG,
        _PR_ATTACH_CONTENT_ID, _PR_ATTACH_FLAGS, _PR_INTERNET_CPID, _PR_ATTACHMENT_HIDDEN,
    }
)

_ATTACH_BY_VALUE = 1  # PR_ATTACH_METHOD: the bytes are in the attachment
_ATT_MHTML_REF = 0x4  # PR_ATTACH_FLAGS: referenced by the HTML body (an inline image)

# MAPI property types.
_PT_OBJECT, _PT_STRING8, _PT_UNICODE, _PT_BINARY = 0x000D, 0x001E, 0x001F, 0x0102
_MULTI_VALUE = 0x1000
_VARIABLE = frozenset({_PT_OBJECT, _PT_STRING8, _PT_UNICODE, _PT_BINARY})
# Fixed-size types and their sizes; every value is padded to 4 bytes in TNEF.
_FIXED = {
    0x0002: 2, 0x0003: 4, 0x0004: 4, 0x0005: 8, 0x0006: 8, 0x0007: 8, 0x000A: 4,
    0x000B: 2, 0x0014: 8, 0x0040: 8, 0x0048: 16,
}
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_ATTRIBUTE_HEAD = struct.Struct("<BII")  # level, tag, length; data and a 2-byte checksum follow


class TnefError(ValueError):
    """Not a TNEF stream this reader can unpack; the reason in one line."""


@dataclass(frozen=True)
class TnefAttachment:
    """One attachment as the stream names it: ``name`` and ``mime_type``
    are untrusted and unsanitised ("" when absent)."""

    name: str
    mime_type: str
    data: bytes
    content_id: str | None = None
    inline: bool = False


@dataclass
class Tnef:
    """What a stream holds. ``skipped``: attachments that are not files
    (embedded Outlook items, OLE objects, links); they stay in the original."""

    attachments: list[TnefAttachment] = field(default_factory=list)
    text: str = ""
    html: str = ""
    rtf_compressed: bytes = b""
    skipped: int = 0
    steps: int = 0  # the work it cost, against ``max_steps``


def looks_like_tnef(content_type: str, filename: str | None, data: bytes) -> bool:
    """A part to unpack: declared TNEF, or named winmail.dat (some relays
    relabel it application/octet-stream), and starting with the signature."""
    declared = content_type in CONTENT_TYPES or (filename or "").strip().lower() == "winmail.dat"
    return declared and data.startswith(SIGNATURE)


def decode(data: bytes, max_attachments: int, max_steps: int = MAX_STEPS) -> Tnef:
    """Unpack a TNEF stream. Raises ``TnefError`` for anything malformed,
    for more than ``max_attachments`` files, or past ``max_steps``."""
    return _Reader(data, max_attachments, max_steps).read()


def _codec(codepage: int) -> str:
    """Python's codec for a Windows code page; cp1252 when it has none."""
    name = {65001: "utf-8", 20127: "ascii", 28591: "latin-1", 1200: "utf-16-le"}.get(codepage)
    name = name or f"cp{codepage}"
    try:
        codecs.lookup(name)
    except LookupError:
        return "cp1252"
    return name


@dataclass
class _Pending:
    """An attachment while its attributes arrive."""

    title: bytes = b""
    data: bytes | None = None
    props: dict[int, tuple[int, object]] = field(default_factory=dict)


class _Reader:
    def __init__(self, data: bytes, max_attachments: int, max_steps: int) -> None:
        self.data = data
        self.max_attachments = max_attachments
        self.max_steps = max_steps
        self.steps = 0
        self.codec = "cp1252"  # of 8-bit strings, until attOemCodepage says otherwise
        self.pending: list[_Pending] = []
        self.body = b""
        self.message: dict[int, tuple[int, object]] = {}

    def _step(self, n: int = 1) -> None:
        self.steps += n
        if self.steps > self.max_steps:
            raise TnefError(f"TNEF too complex (more than {self.max_steps} attributes and properties)")

    # -- the attribute stream --------------------------------------------
    def read(self) -> Tnef:
        data = self.data
        if not data.startswith(SIGNATURE):
            raise TnefError("no TNEF signature")
        pos = 6  # signature and the 2-byte legacy key
        while len(data) - pos >= 11:  # level, tag, length, checksum: a whole attribute
            self._step()
            level, tag, length = _ATTRIBUTE_HEAD.unpack_from(data, pos)
            start = pos + _ATTRIBUTE_HEAD.size
            if level not in (_LEVEL_MESSAGE, _LEVEL_ATTACHMENT):
                raise TnefError(f"bad TNEF attribute level {level} at byte {pos}")
            if start + length + 2 > len(data):
                raise TnefError(f"TNEF stream cut short (attribute at byte {pos} needs {length} bytes)")
            # The checksum is not verified: summing every byte of a 25 MB file
            # costs more than it tells (the original is kept either way).
            self._attribute(level, tag & 0xFFFF, data[start : start + length])
            pos = start + length + 2
        # Less than an attribute left: zero padding, or a stream cut short.
        if data[pos:].strip(b"\0"):
            raise TnefError(f"TNEF stream cut short (a partial attribute at byte {pos})")
        return self._result()

    def _attribute(self, level: int, att: int, value: bytes) -> None:
        if att == _ATT_ATTACH_REND_DATA:
            if len(self.pending) >= self.max_attachments:
                raise TnefError(f"too many attachments in TNEF (more than {self.max_attachments})")
            self.pending.append(_Pending())
            return
        if level == _LEVEL_ATTACHMENT:
            if not self.pending:  # an attachment attribute before any attachment began
                raise TnefError("TNEF attachment attribute outside an attachment")
            current = self.pending[-1]
            if att == _ATT_ATTACH_TITLE:
                current.title = value
            elif att == _ATT_ATTACH_DATA:
                current.data = value
            elif att == _ATT_ATTACHMENT:
                current.props.update(self._properties(value))
            return
        if att == _ATT_OEM_CODEPAGE and len(value) >= 4:
            self.codec = _codec(_U32.unpack_from(value)[0])
        elif att == _ATT_BODY:
            self.body = value
        elif att == _ATT_MSG_PROPS:
            self.message.update(self._properties(value))

    # -- MAPI property lists ----------------------------------------------
    def _properties(self, block: bytes) -> dict[int, tuple[int, object]]:
        """The wanted properties of one list: id -> (type, value). A value
        of a variable-size type is its first value, as bytes."""
        found: dict[int, tuple[int, object]] = {}
        try:
            (count,) = _U32.unpack_from(block)
            pos = 4
            for _ in range(count):
                self._step()
                ptype, pid = _U16.unpack_from(block, pos)[0], _U16.unpack_from(block, pos + 2)[0]
                pos += 4
                if pid >= 0x8000:  # a named property: GUID, kind, then an id or a name
                    (kind,) = _U32.unpack_from(block, pos + 16)
                    pos += 20
                    if kind == 0:
                        pos += 4
                    else:
                        (size,) = _U32.unpack_from(block, pos)
                        pos += 4 + _padded(size)
                value, pos = self._value(block, pos, ptype)
                if pid in _WANTED and pid < 0x8000:
                    found[pid] = (ptype, value)
        except (struct.error, _BadProperty):
            pass  # the rest of this list is unreadable; what came before it stands
        return found

    def _value(self, block: bytes, pos: int, ptype: int) -> tuple[object, int]:
        base = ptype & ~_MULTI_VALUE
        multi = ptype & _MULTI_VALUE
        if base in _FIXED:
            n = 1
            if multi:  # skipped by arithmetic, whatever the count: one step
                (n,) = _U32.unpack_from(block, pos)
                pos += 4
            first = block[pos : pos + _FIXED[base]]
            pos += n * _padded(_FIXED[base])
            if pos > len(block):
                raise _BadProperty
            return first, pos
        if base in _VARIABLE:
            # variable-size values always carry a count, multi-valued or not
            (n,) = _U32.unpack_from(block, pos)
            pos += 4
            values = []
            for _ in range(n):
                self._step()
                (size,) = _U32.unpack_from(block, pos)
                pos += 4
                if pos + size > len(block):
                    raise _BadProperty
                values.append(block[pos : pos + size])
                pos += _padded(size)
            return (values[0] if values else b""), pos
        raise _BadProperty  # a type whose size this reader does not know

    # -- results --------------------------------------------------------------
    def _string(self, props: dict[int, tuple[int, object]], pid: int) -> str:
        ptype, value = props.get(pid, (0, None))
        if not isinstance(value, bytes) or ptype & _MULTI_VALUE:
            return ""
        if ptype == _PT_UNICODE:
            return value.decode("utf-16-le", "replace").split("\0", 1)[0]
        if ptype in (_PT_STRING8, _PT_BINARY):
            return value.decode(self.codec, "replace").split("\0", 1)[0]
        return ""

    def _int(self, props: dict[int, tuple[int, object]], pid: int) -> int | None:
        ptype, value = props.get(pid, (0, None))
        if isinstance(value, bytes) and ptype in (0x0002, 0x0003, 0x000B) and len(value) >= 2:
            return int.from_bytes(value[: 2 if ptype != 0x0003 else 4], "little")
        return None

    def _result(self) -> Tnef:
        out = Tnef(steps=self.steps)
        for item in self.pending:
            attachment = self._attachment(item)
            if attachment is None:
                out.skipped += 1
            else:
                out.attachments.append(attachment)
        message = self.message
        out.text = self._string(message, _PR_BODY) or self.body.decode(self.codec, "replace").rstrip("\0")
        ptype, html = message.get(_PR_BODY_HTML, (0, None))
        if ptype == _PT_UNICODE:
            out.html = self._string(message, _PR_BODY_HTML)
        elif isinstance(html, bytes) and html:
            # an 8-bit HTML body is in the message's Internet code page
            cpid = self._int(message, _PR_INTERNET_CPID)
            out.html = html.decode(_codec(cpid) if cpid else self.codec, "replace").rstrip("\0")
        _, rtf = message.get(_PR_RTF_COMPRESSED, (0, None))
        if isinstance(rtf, bytes):
            out.rtf_compressed = rtf
        return out

    def _attachment(self, item: _Pending) -> TnefAttachment | None:
        text = self._string
        method = self._int(item.props, _PR_ATTACH_METHOD)
        data = item.data
        ptype, prop_data = item.props.get(_PR_ATTACH_DATA, (0, None))
        if data is None and ptype == _PT_BINARY and isinstance(prop_data, bytes):
            data = prop_data
        # Embedded messages (5), OLE objects (6) and links (2-4) are no files.
        if data is None or (method is not None and method != _ATTACH_BY_VALUE):
            return None
        name = (
            text(item.props, _PR_ATTACH_LONG_FILENAME)
            or text(item.props, _PR_DISPLAY_NAME)
            or item.title.decode(self.codec, "replace").split("\0", 1)[0]
            or text(item.props, _PR_ATTACH_FILENAME)
        )
        content_id = text(item.props, _PR_ATTACH_CONTENT_ID).strip().strip("<>").strip() or None
        hidden = bool(self._int(item.props, _PR_ATTACHMENT_HIDDEN))
        referenced = bool((self._int(item.props, _PR_ATTACH_FLAGS) or 0) & _ATT_MHTML_REF)
        return TnefAttachment(
            name=name,
            mime_type=text(item.props, _PR_ATTACH_MIME_TAG).strip().lower(),
            data=data,
            content_id=content_id,
            inline=content_id is not None and (hidden or referenced),
        )


class _BadProperty(Exception):
    """A property this reader cannot size: ends its property list."""


def _padded(size: int) -> int:
    return (size + 3) & ~3
