"""Reading the DATA section of an SMTP transaction in a few large steps.

aiosmtpd reads DATA one line at a time (a coroutine step, a debug log call
and a few list operations per line): for a typical support mail that was
the largest single cost of accepting it, larger than the durable commit.
This reader asks the stream for everything up to the next ``.<CRLF>`` (a
handful of calls per message), and keeps aiosmtpd 1.4.6's rules exactly:

- Lines end only at CRLF. DATA ends at a line that is exactly ``.<CRLF>``
  (the start of DATA or right after a CRLF), never at a bare LF: the fix
  for SMTP smuggling (CVE-2024-27305) stays in force.
- A line longer than ``line_limit`` bytes (with its CRLF) -> ``500``;
  more than ``size_limit`` bytes -> ``552``. Either way the rest of the
  DATA is read and dropped, so the connection stays in step. (aiosmtpd
  answers whichever it met first; this reader says 552 when both apply.)
- One leading dot is removed from every line (RFC 5321 4.5.2).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

END = b".\r\n"
CRLF = b"\r\n"
R_TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"
R_TOO_MUCH = "552 Error: Too much mail data"


@dataclass(frozen=True)
class DataResult:
    """The message as received (dots removed), or the error reply."""

    content: bytes | None
    error: str | None = None


async def read_data(reader: asyncio.StreamReader, size_limit: int | None, line_limit: int) -> DataResult:
    """Read DATA up to and including its end line; raises
    IncompleteReadError if the client goes away first."""
    parts: list[bytes] = []
    size = 0
    too_much = False
    at_line_start = True  # DATA starts at the start of a line
    while True:
        try:
            block = await reader.readuntil(END)
            ends = block.endswith(b"\r\n.\r\n") or (at_line_start and block == END)
        except asyncio.LimitOverrunError as exc:
            # More than the stream's limit before the next ".<CRLF>": take
            # what has been searched (it holds no end line) and go on.
            block = await reader.readexactly(exc.consumed)
            ends = False
        body = block[: -len(END)] if ends else block
        size += len(body)
        if size_limit and size > size_limit:
            too_much = True
            parts.clear()  # drop the data at once, keep reading to the end
        elif not too_much:
            parts.append(body)
        if ends:
            break
        at_line_start = block.endswith(CRLF)
    if too_much:
        return DataResult(None, R_TOO_MUCH)
    received = b"".join(parts)
    if _longest_line(received) > line_limit:
        return DataResult(None, R_TOO_LONG)
    return DataResult(unstuff(received))


def _longest_line(data: bytes) -> int:
    """Length of the longest CRLF-terminated line, CRLF included."""
    if not data:
        return 0
    return max(map(len, data.split(CRLF))) + len(CRLF)


def unstuff(data: bytes) -> bytes:
    """Remove the transparency dot from each line that starts with one."""
    if data.startswith(b"."):
        data = data[1:]
    return data.replace(b"\r\n.", CRLF)
