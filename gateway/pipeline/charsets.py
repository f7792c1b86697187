"""Charset repair for mail text and headers: decode bytes whatever their
declared charset says (western labels read as UTF-8 first, then cp1252, as
browsers do), RFC 2047 encoded words with the usual breakage, raw 8-bit
header bytes. Used by the parse stage and by anything that shows inbound
header text (the outbound renderer sanitises with it too)."""

from __future__ import annotations

import binascii
import codecs
import re

# Browsers treat these labels as windows-1252 (WHATWG encoding standard), and
# so do we; unlabelled 8-bit text is tried as UTF-8 first, then cp1252.
_WESTERN_LABELS = frozenset(
    {
        "", "us-ascii", "ascii", "ansi_x3.4-1968", "iso-8859-1", "iso8859-1", "iso_8859-1",
        "latin1", "latin-1", "l1", "windows-1252", "cp1252", "unknown-8bit", "x-unknown",
        "unknown", "default", "8bit", "x-user-defined", "iso-8859-15", "iso8859-15", "latin9",
    }
)
_CHARSET_ALIASES = {
    "utf8": "utf-8",
    "unicode-1-1-utf-8": "utf-8",
    "ks_c_5601-1987": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-sjis": "shift_jis",
    "shift-jis": "shift_jis",
    "iso-8859-8-i": "iso-8859-8",
}

# cp1252 decode of every byte; its five undefined bytes become U+FFFD.
_CP1252 = tuple(bytes([b]).decode("cp1252", "replace") for b in range(256))


def _cp1252_fallback(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: bytes that are not valid UTF-8 are read as cp1252,
    so a UTF-8 body with a few stray latin-1 bytes stays readable."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    return "".join(_CP1252[b] for b in bad), exc.end


codecs.register_error("gateway_cp1252", _cp1252_fallback)

_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # C0 except TAB and LF, and DEL
_HEADER_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_BASE64_CHARS = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
FOLD = re.compile(r"\r?\n(?=[ \t])")


def _norm_charset(charset: str | None) -> str:
    cs = (charset or "").strip().strip("\"'").lower()
    cs = cs.split("*", 1)[0]  # RFC 2231 language suffix: utf-8*de
    return _CHARSET_ALIASES.get(cs, cs)


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Bytes -> text, surviving wrong or missing charset declarations."""
    if data.isascii():
        return data.decode("ascii")
    cs = _norm_charset(charset)
    if cs in _WESTERN_LABELS:
        # 8-bit text under a western (or no) label is very often really UTF-8;
        # a latin-1 text that happens to be valid UTF-8 is vanishingly rare.
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            if cs in ("iso-8859-15", "iso8859-15", "latin9"):
                return data.decode("iso8859_15")
            return data.decode("utf-8", "gateway_cp1252") if _mostly_utf8(data) else _decode_cp1252(data)
    if cs == "utf-8":
        return data.decode("utf-8", "gateway_cp1252")
    try:
        return data.decode(cs, "replace")
    except (LookupError, ValueError):  # unknown charset, or a NUL in its name
        return decode_bytes(data, None)


def _decode_cp1252(data: bytes) -> str:
    return data.decode("cp1252", "gateway_cp1252")


def _mostly_utf8(data: bytes) -> bool:
    """True when the 8-bit bytes mostly form UTF-8 sequences (a UTF-8 text
    with a few stray latin-1 bytes), so per-byte cp1252 fallback is better
    than reading the whole text as cp1252."""
    text = data.decode("utf-8", "replace")
    return text.count("\ufffd") * 4 < sum(1 for ch in text if ord(ch) > 0x7F)


def clean_text(text: str) -> str:
    return _CONTROLS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def fix_8bit(value: str) -> str:
    """compat32 keeps raw 8-bit header bytes as surrogate escapes."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return decode_bytes(value.encode("ascii", "surrogateescape"), None)


def decode_encoded_words(value: str) -> str:
    """RFC 2047 decoding that tolerates the usual breakage: encoded words
    inside quotes or glued to text, missing base64 padding, unknown charsets,
    a multi-byte character split over two adjacent words."""
    if "=?" not in value:
        return value
    out: list[str] = []
    pending: list[tuple[str, bytes]] = []  # adjacent words, joined before decoding
    pos = 0

    def flush() -> None:
        if pending:
            merged: list[tuple[str, bytes]] = []
            for cs, chunk in pending:
                if merged and merged[-1][0] == cs:
                    merged[-1] = (cs, merged[-1][1] + chunk)
                else:
                    merged.append((cs, chunk))
            out.extend(decode_bytes(chunk, cs or None) for cs, chunk in merged)
            pending.clear()

    for m in _ENCODED_WORD.finditer(value):
        between = value[pos : m.start()]
        if not (pending and not between.strip()):  # whitespace between words is dropped
            flush()
            out.append(between)
        charset, enc, payload = m.group(1), m.group(2).lower(), m.group(3)
        try:
            if enc == "b":
                payload = "".join(payload.split())
                if not _BASE64_CHARS.match(payload):
                    raise ValueError("not base64")
                chunk = binascii.a2b_base64((payload + "=" * (-len(payload) % 4)).encode("ascii", "ignore"))
            else:
                chunk = binascii.a2b_qp(payload.encode("utf-8"), header=True)
        except (binascii.Error, ValueError):
            flush()
            out.append(m.group(0))
        else:
            pending.append((_norm_charset(charset), chunk))
        pos = m.end()
    flush()
    out.append(value[pos:])
    return "".join(out)


def decode_header_value(value: object) -> str:
    """One header value as display text: 8-bit repaired, unfolded, encoded
    words decoded, control characters replaced by spaces."""
    text = FOLD.sub("", fix_8bit(str(value)))
    text = decode_encoded_words(text)
    return " ".join(text.replace("\x00", "").split()) if _HEADER_CONTROLS.search(text) else text.strip()
