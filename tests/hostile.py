"""Generators of hostile messages that are too big to commit as fixtures:
deep MIME nesting, huge part counts, a large attachment. Each returns the raw
bytes of one message."""

from __future__ import annotations

import base64
import os

_HEAD = (
    "From: Mallory <mallory@evil.example>\r\n"
    "To: servicedesk@xitrust.com\r\n"
    "Subject: {subject}\r\n"
    "Date: Fri, 08 Mar 2024 09:00:00 +0100\r\n"
    "Message-ID: <{mid}@evil.example>\r\n"
    "MIME-Version: 1.0\r\n"
)


def deep_nesting(depth: int = 1000) -> bytes:
    """``depth`` multipart/mixed containers, each inside the previous one."""
    out = [_HEAD.format(subject="deep", mid="deep"), 'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n']
    for level in range(1, depth):
        out.append(f'--b{level - 1}\r\nContent-Type: multipart/mixed; boundary="b{level}"\r\n\r\n')
    out.append(f"--b{depth - 1}\r\nContent-Type: text/plain\r\n\r\nbottom\r\n--b{depth - 1}--\r\n")
    out.extend(f"--b{level}--\r\n" for level in range(depth - 2, -1, -1))
    return "".join(out).encode("ascii")


def deep_rfc822(depth: int = 1000) -> bytes:
    """``depth`` message/rfc822 parts, each forwarding the next (no boundaries
    at all, so only the parser's own recursion sees the depth)."""
    inner = "Content-Type: text/plain\r\n\r\nbottom\r\n"
    head = "Content-Type: message/rfc822\r\n\r\n"
    return (_HEAD.format(subject="deep rfc822", mid="deep822") + head * depth + inner).encode("ascii")


def many_parts(count: int = 20_000) -> bytes:
    """One multipart/mixed with ``count`` tiny text parts."""
    out = [_HEAD.format(subject="many parts", mid="many")]
    out.append('Content-Type: multipart/mixed; boundary="p"\r\n\r\n')
    out.extend("--p\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(count))
    out.append("--p--\r\n")
    return "".join(out).encode("ascii")


def big_attachment(size: int = 20 * 1024 * 1024) -> bytes:
    """A short text plus one ``size``-byte random binary attachment (base64)."""
    payload = base64.encodebytes(os.urandom(size))  # 76-char lines
    head = (
        _HEAD.format(subject="big attachment", mid="big")
        + 'Content-Type: multipart/mixed; boundary="big"\r\n\r\n'
        + "--big\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the dump.\r\n"
        + "--big\r\nContent-Type: application/octet-stream\r\n"
        + 'Content-Disposition: attachment; filename="dump.bin"\r\n'
        + "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode("ascii")
    return head + payload.replace(b"\n", b"\r\n") + b"--big--\r\n"
