"""Outlook's compressed RTF ([MS-OXRTFCP]) and the readable text of an RTF
document: the body of a ``winmail.dat`` (see ``tnef``) that carries neither
plain text nor HTML, which Outlook sends for mail written in its RTF editor.

Both steps are bounded, whatever the input claims: decompression stops at
``limit`` output bytes (the header's size field is not trusted), and the
text pass is one left-to-right scan that stops at ``max_chars``. The text
is a reading copy for the ticket's description, not a renderer: groups that
hold no text (font and colour tables, pictures, ``{\\*...}`` destinations,
which includes the HTML tags of Outlook's encapsulated HTML) are dropped,
paragraphs become line breaks, ``\\'hh`` and ``\\uN`` become characters."""

from __future__ import annotations

import codecs
import re
import struct

# The dictionary every compressed stream starts from (MS-OXRTFCP 2.1.2.1).
_INITIAL_DICTIONARY = (
    rb"{\rtf1\ansi\mac\deff0\deftab720{\fonttbl;}{\f0\fnil \froman \fswiss \fmodern \fscript "
    rb"\fdecor MS Sans SerifSymbolArialTimes New RomanCourier{\colortbl\red0\green0\blue0"
    b"\r\n"
    rb"\par \pard\plain\f0\fs20\b\i\u\tab\tx"
)
assert len(_INITIAL_DICTIONARY) == 207
_COMPRESSED = 0x75465A4C  # "LZFu"
_UNCOMPRESSED = 0x414C454D  # "MELA"
_HEADER = struct.Struct("<IIII")  # compressed size, raw size, type, CRC


class RtfError(ValueError):
    """Not a compressed RTF stream this decoder knows."""


def decompress(data: bytes, limit: int) -> bytes:
    """The RTF in a PR_RTF_COMPRESSED value, at most ``limit`` bytes of it.
    A stream cut short yields what was decoded up to the cut (it is only
    read for text); the CRC is not checked for the same reason."""
    if len(data) < _HEADER.size:
        raise RtfError("compressed RTF shorter than its header")
    comp_size, raw_size, kind, _crc = _HEADER.unpack_from(data)
    cap = min(raw_size, limit)
    # comp_size counts the bytes after its own field: the rest of the header and the data
    body = memoryview(data)[_HEADER.size : 4 + comp_size]
    if kind == _UNCOMPRESSED:
        return bytes(body[:cap])
    if kind != _COMPRESSED:
        raise RtfError(f"unknown compressed RTF type {kind:#010x}")
    dictionary = bytearray(4096)
    dictionary[: len(_INITIAL_DICTIONARY)] = _INITIAL_DICTIONARY
    write = len(_INITIAL_DICTIONARY)
    out = bytearray()
    pos, end = 0, len(body)
    while pos < end and len(out) < cap:
        control = body[pos]
        pos += 1
        for bit in range(8):
            if control & (1 << bit):  # a reference: 12 bits offset, 4 bits length - 2
                if pos + 2 > end:
                    return bytes(out[:cap])
                ref = (body[pos] << 8) | body[pos + 1]
                pos += 2
                offset, length = ref >> 4, (ref & 0xF) + 2
                if offset == write:  # the end marker
                    return bytes(out[:cap])
                # byte by byte: a reference may overlap the bytes it writes
                for _ in range(length):
                    byte = dictionary[offset]
                    offset = (offset + 1) & 0xFFF
                    out.append(byte)
                    dictionary[write] = byte
                    write = (write + 1) & 0xFFF
            else:  # a literal byte
                if pos >= end:
                    return bytes(out[:cap])
                byte = body[pos]
                pos += 1
                out.append(byte)
                dictionary[write] = byte
                write = (write + 1) & 0xFFF
    return bytes(out[:cap])


# -- RTF to text -------------------------------------------------------------
_TOKEN = re.compile(
    rb"\\([a-zA-Z]{1,32})(-?\d{1,10})? ?"  # control word with optional parameter
    rb"|\\'([0-9a-fA-F]{2})"  # a byte in the document's code page
    rb"|\\(.)"  # control symbol
    rb"|([{}])"
    rb"|[\r\n]+"  # line ends in the source mean nothing
    rb"|([^\\{}\r\n]+)",  # text
    re.DOTALL,
)
# Destinations whose content is not text of the document.
_SKIP_DESTINATIONS = frozenset(
    b"fonttbl colortbl stylesheet info pict object header headerl headerr headerf footer footerl "
    b"footerr footerf listtable listoverridetable rsidtbl generator xmlnstbl themedata "
    b"colorschememapping latentstyles datastore fldinst filetbl revtbl mmathPr nonshppict "
    b"shppict shpinst blipuid bkmkstart bkmkend pgdsctbl operator author password".split()
)
_NEWLINE_WORDS = frozenset({b"par", b"line", b"sect", b"page", b"row"})
_CHARACTER_WORDS = {
    b"tab": "\t",
    b"cell": "\t",
    b"emdash": "\u2014",
    b"endash": "\u2013",
    b"bullet": "\u2022",
    b"lquote": "\u2018",
    b"rquote": "\u2019",
    b"ldblquote": "\u201c",
    b"rdblquote": "\u201d",
    b"emspace": " ",
    b"enspace": " ",
}
_SYMBOLS = {b"~": "\u00a0", b"-": "", b"_": "-", b"\n": "\n", b"\r": "\n"}
_BLANK_LINES = re.compile(r"\n[ \t]*(?:\n[ \t]*){2,}")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")


def _codec(codepage: int) -> str:
    name = "utf-8" if codepage == 65001 else f"cp{codepage}"
    try:
        codecs.lookup(name)
    except LookupError:
        return "cp1252"
    return name


class _Text:
    """Output with a byte buffer: consecutive ``\\'hh`` bytes and 8-bit text
    are decoded together, so double-byte code pages come out whole."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pending = bytearray()
        self.size = 0
        self.codec = "cp1252"

    def flush(self) -> None:
        if self.pending:
            self.add(self.pending.decode(self.codec, "replace"))
            self.pending.clear()

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)

    def result(self) -> str:
        self.flush()
        # \uN gives UTF-16 code units: pair the surrogates
        text = "".join(self.parts).encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        text = _TRAILING_SPACE.sub("\n", text.replace("\r\n", "\n"))
        return _BLANK_LINES.sub("\n\n", text).strip()


def to_text(rtf: bytes, max_chars: int) -> str:
    """The readable text of an RTF document, at most about ``max_chars``
    characters of it. Never raises on malformed RTF: unbalanced groups and
    unknown control words are read past."""
    out = _Text()
    stack: list[tuple[bool, int]] = []
    skip = False  # inside a destination without text
    uc = 1  # fallback bytes after each \uN (\ucN)
    fallback = 0  # of those, still to drop
    group_start = False  # the last token was "{": a "\*" here marks an optional destination
    pos, end = 0, len(rtf)
    while pos < end and out.size + len(out.pending) < max_chars:
        m = _TOKEN.match(rtf, pos)
        if m is None:  # a lone backslash at the very end
            break
        pos = m.end()
        word, param, hexbyte, symbol, brace, text = m.groups()
        at_group_start, group_start = group_start, False
        if brace == b"{":
            stack.append((skip, uc))
            group_start = True
        elif brace == b"}":
            if stack:
                skip, uc = stack.pop()
            fallback = 0
        elif word is not None:
            if word == b"bin" and param:  # binary data: skip its bytes unread
                pos += max(int(param), 0)
                continue
            if skip:
                continue
            if word in _SKIP_DESTINATIONS:
                skip = True
            elif word == b"ansicpg" and param:
                out.flush()
                out.codec = _codec(int(param))
            elif word == b"uc" and param:
                uc = max(int(param), 0)
            elif word == b"u" and param:
                out.flush()
                out.add(chr(int(param) % 65536))
                fallback = uc
            elif word in _NEWLINE_WORDS:
                out.flush()
                out.add("\n")
            elif word in _CHARACTER_WORDS:
                out.flush()
                out.add(_CHARACTER_WORDS[word])
        elif symbol is not None:
            if symbol == b"*" and at_group_start:
                skip = True
            elif skip:
                continue
            elif symbol in _SYMBOLS:
                out.flush()
                out.add(_SYMBOLS[symbol])
            elif symbol in (b"\\", b"{", b"}"):
                out.pending += symbol
        elif skip:
            continue
        elif hexbyte is not None:
            if fallback:
                fallback -= 1
            else:
                out.pending.append(int(hexbyte, 16))
        elif text is not None:
            if fallback:
                dropped = min(fallback, len(text))
                text, fallback = text[dropped:], fallback - dropped
            out.pending += text
    return out.result()[:max_chars]
