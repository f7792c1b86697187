"""Serialise a message byte for byte: RFC 2047 encoded words, header
folding, quoted-printable / base64 / 8bit / 7bit bodies, multiparts with
the client's boundary, RFC 2231 and RFC 2047 file names. Written by hand
rather than with ``email.generator`` so that each client's header order,
quirks and encoding habits survive unchanged (and it is faster)."""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from dataclasses import dataclass, field

MAX_LINE = 78
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
# characters that force a quoted display name
_SPECIALS = frozenset('()<>[]:;@\\,."')


def _q(data: bytes) -> str:
    return "".join(chr(b) if b in _Q_SAFE else "_" if b == 0x20 else f"={b:02X}" for b in data)


def encoded_words(text: str, charset: str, enc: str) -> list[str]:
    """``text`` as RFC 2047 encoded words of at most 75 characters, split
    between characters (never inside a multi-byte sequence)."""
    enc = enc.upper()
    overhead = len(charset) + 7  # =?cs?Q?...?=
    words: list[str] = []
    chunk = ""
    for ch in text:
        trial = chunk + ch
        raw = trial.encode(charset)
        size = len(_q(raw)) if enc == "Q" else (len(raw) + 2) // 3 * 4
        if chunk and size + overhead > 75:
            words.append(chunk)
            chunk = ch
        else:
            chunk = trial
    if chunk:
        words.append(chunk)
    out = []
    for w in words:
        raw = w.encode(charset)
        payload = _q(raw) if enc == "Q" else base64.b64encode(raw).decode("ascii")
        out.append(f"=?{charset}?{enc}?{payload}?=")
    return out


def fold(value: str, used: int) -> str:
    """Fold a header value at spaces so lines stay within 78 characters
    (``used``: the length of ``Name: `` on the first line)."""
    if used + len(value) <= MAX_LINE or "\n" in value:  # short, or encoded words already folded
        return value
    out: list[str] = []
    line = ""
    width = MAX_LINE - used
    for word in value.split(" "):
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
            width = MAX_LINE - 1
        else:
            line = f"{line} {word}" if line else word
    out.append(line)
    return "\n ".join(out)


def text_header(text: str, charset: str, enc: str = "Q", whole: bool = True) -> str:
    """An unstructured header value (Subject): plain when ASCII, else encoded
    words, either the whole text (Outlook, Gmail) or from the first word that
    needs it (Thunderbird, Apple Mail)."""
    if text.isascii():
        return text
    if whole:
        return "\n ".join(encoded_words(text, charset, enc))
    words = text.split(" ")
    first = next(i for i, w in enumerate(words) if not w.isascii())
    plain = " ".join(words[:first])
    encoded = encoded_words(" ".join(words[first:]), charset, enc)
    return (plain + " " if plain else "") + "\n ".join(encoded)


def address(name: str, addr: str, charset: str, enc: str = "Q", quoted_words: bool = False) -> str:
    """``Name <addr>``; a non-ASCII name as encoded words. ``quoted_words``:
    put the encoded words in double quotes, as old Outlook versions do
    (wrong by RFC 2047, common in the wild)."""
    if not name:
        return addr
    if name.isascii():
        if any(ch in _SPECIALS for ch in name):
            return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + f'" <{addr}>'
        return f"{name} <{addr}>"
    words = " ".join(encoded_words(name, charset, enc))
    return f'"{words}" <{addr}>' if quoted_words else f"{words} <{addr}>"


def filename_params(filename: str, style: str, charset: str = "utf-8") -> tuple[str, str]:
    """(Content-Type ``name`` parameter, Content-Disposition ``filename``
    parameter) for ``filename``: ``rfc2231`` (Thunderbird, Apple Mail,
    Roundcube; continued over several parameters when long) or ``rfc2047``
    (Outlook, Gmail: an encoded word inside the quotes)."""
    if filename.isascii():
        return f'name="{filename}"', f'filename="{filename}"'
    if style == "rfc2047":
        word = "".join(encoded_words(filename, charset, "B" if charset == "utf-8" else "Q"))
        return f'name="{word}"', f'filename="{word}"'
    quoted = urllib.parse.quote(filename.encode("utf-8"), safe="")
    if len(quoted) <= 50:
        return f"name*=utf-8''{quoted}", f"filename*=utf-8''{quoted}"
    # continuation: never split a %XX escape
    pieces: list[str] = []
    rest = quoted
    while rest:
        cut = min(40, len(rest))
        while "%" in rest[max(0, cut - 2) : cut]:
            cut -= 1
        pieces.append(rest[:cut])
        rest = rest[cut:]
    params = [f"filename*{i}*={'utf-8' + chr(39) * 2 if i == 0 else ''}{p}" for i, p in enumerate(pieces)]
    return f"name*=utf-8''{quoted}", ";\n\t".join(params)


def encode_body(text: str, charset: str, cte: str) -> bytes:
    data = text.encode(charset)
    if cte in ("7bit", "8bit"):
        return data
    if cte == "quoted-printable":
        return binascii.b2a_qp(data, istext=True)
    if cte == "base64":
        return base64.encodebytes(data)
    raise ValueError(cte)


def encode_binary(data: bytes) -> bytes:
    return base64.encodebytes(data)


@dataclass
class Part:
    """A MIME entity: headers, then either a body or sub-parts."""

    headers: list[tuple[str, str]]
    body: bytes = b""
    parts: list[Part] = field(default_factory=list)
    boundary: str = ""
    preamble: str = ""

    def to_bytes(self) -> bytes:
        head = "".join(f"{k}: {v}\n" for k, v in self.headers).encode("ascii")
        if not self.parts:
            body = self.body if self.body.endswith(b"\n") else self.body + b"\n"
            return head + b"\n" + body
        b = self.boundary.encode("ascii")
        out = [head, b"\n"]
        if self.preamble:
            out.append(self.preamble.encode("ascii") + b"\n\n")
        for part in self.parts:
            # the line break before a delimiter belongs to the delimiter (RFC 2046)
            out += [b"--" + b + b"\n", part.to_bytes(), b"\n"]
        out.append(b"--" + b + b"--\n")
        return b"".join(out)
