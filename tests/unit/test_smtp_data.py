"""The DATA reader on its own: end of data, transparency dots, the smuggling
rule (only CRLF.CRLF ends DATA), limits, and what it leaves in the stream
for the next command, whatever the chunks the bytes arrive in."""

from __future__ import annotations

import asyncio

import pytest

from gateway.ingress.smtp_data import R_TOO_LONG, R_TOO_MUCH, DataResult, read_data, unstuff

LINE_LIMIT = 1001  # aiosmtpd's line_length_limit, also its stream limit


def run(chunks: list[bytes], size_limit: int | None = 10_000) -> tuple[DataResult, bytes]:
    """Feed ``chunks`` to a StreamReader as aiosmtpd creates it, read DATA,
    and return the result and what is left in the stream."""

    async def go() -> tuple[DataResult, bytes]:
        reader = asyncio.StreamReader(limit=LINE_LIMIT)

        async def feed() -> None:
            for chunk in chunks:
                reader.feed_data(chunk)
                await asyncio.sleep(0)
            reader.feed_eof()

        feeder = asyncio.create_task(feed())
        result = await read_data(reader, size_limit, LINE_LIMIT)
        await feeder
        return result, await reader.read()

    return asyncio.run(go())


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


@pytest.mark.parametrize("split", [False, True], ids=["whole", "byte-by-byte"])
def test_message_ends_at_dot_line_and_leaves_the_next_command(split: bool) -> None:
    data = b"Subject: hi\r\n\r\nbody.\r\n.\r\nQUIT\r\n"
    result, rest = run(bytewise(data) if split else [data])
    assert result == DataResult(b"Subject: hi\r\n\r\nbody.\r\n")
    assert rest == b"QUIT\r\n"


def test_empty_message() -> None:
    assert run([b".\r\nRSET\r\n"]) == (DataResult(b""), b"RSET\r\n")


def test_transparency_dots_are_removed_once() -> None:
    data = b"..leading\r\n...two\r\nmid.dle\r\n.\r\n"
    assert run([data])[0].content == b".leading\r\n..two\r\nmid.dle\r\n"


def test_line_ending_in_a_dot_does_not_end_data() -> None:
    result, rest = run([b"Gruss.\r\n", b"x.\r\n", b".\r\n"])
    assert result.content == b"Gruss.\r\nx.\r\n"
    assert rest == b""


@pytest.mark.parametrize(
    ("smuggled", "kept"),
    [
        (b"a\n.\nMAIL FROM:<x@y>\r\n", b"a\n.\nMAIL FROM:<x@y>\r\n"),
        # ".<LF>MAIL..." is one line starting with a dot: the dot goes, as in aiosmtpd
        (b"a\r\n.\nMAIL FROM:<x@y>\r\n", b"a\r\n\nMAIL FROM:<x@y>\r\n"),
        (b"a\n.\r\nMAIL FROM:<x@y>\r\n", b"a\n.\r\nMAIL FROM:<x@y>\r\n"),
    ],
    ids=["LF.LF", "CRLF.LF", "LF.CRLF"],
)
def test_bare_lf_never_ends_data(smuggled: bytes, kept: bytes) -> None:
    """CVE-2024-27305: only CRLF.CRLF ends DATA; the 'smuggled' command stays
    part of the message."""
    result, rest = run([smuggled + b".\r\n"])
    assert result.content == kept
    assert rest == b""


def test_long_stretches_without_an_end_are_read_in_pieces() -> None:
    """More than the stream limit between two '.CRLF': LimitOverrunError is
    handled, nothing is lost at the piece boundaries."""
    lines = [f"{i:04d} ".encode() + b"y" * 90 + b"\r\n" for i in range(200)]
    body = b"".join(lines)
    for chunks in ([body + b".\r\n"], [body[:1500], body[1500:] + b".\r\n"], bytewise(body + b".\r\n")):
        assert run(chunks, size_limit=None)[0].content == body


def test_a_dot_line_right_after_a_piece_boundary_ends_data() -> None:
    body = b"z" * 1500 + b"\r\n"  # one piece ends right after this CRLF
    result, rest = run([body, b".\r\n", b"NOOP\r\n"], size_limit=None)
    assert result.error == R_TOO_LONG  # 1502 bytes on one line
    assert rest == b"NOOP\r\n"
    ok = b"z" * 998 + b"\r\n"
    result, rest = run([ok * 2, b".\r\n", b"NOOP\r\n"], size_limit=None)
    assert result.content == ok * 2
    assert rest == b"NOOP\r\n"


def test_line_limit_counts_the_crlf() -> None:
    assert run([b"a" * 999 + b"\r\n.\r\n"])[0].content == b"a" * 999 + b"\r\n"
    assert run([b"a" * 1000 + b"\r\n.\r\n"])[0].error == R_TOO_LONG


def test_over_size_is_552_and_the_rest_is_drained() -> None:
    body = b"x" * 70 + b"\r\n"
    result, rest = run([body * 200 + b".\r\nQUIT\r\n"], size_limit=5000)
    assert result == DataResult(None, R_TOO_MUCH)
    assert rest == b"QUIT\r\n"


def test_client_gone_mid_data() -> None:
    with pytest.raises(asyncio.IncompleteReadError):
        run([b"half a message\r\n"])


def test_unstuff() -> None:
    assert unstuff(b"") == b""
    assert unstuff(b".\r\n..\r\n") == b"\r\n.\r\n"
    assert unstuff(b"a.b\r\n.c\r\n") == b"a.b\r\nc\r\n"
