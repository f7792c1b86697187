"""The listener's DATA reader against stock aiosmtpd 1.4.6, over real
sockets: the same seeded random DATA sections (dot lines, bare CR and LF,
smuggling attempts, over-long lines, over-size messages, non-UTF-8 bytes),
sent in random pieces to both servers, must give the same replies and the
same stored bytes. The one intended difference: when a message is both
too large and has an over-long line, aiosmtpd answers whichever it met
first and ours always says 552 (see ``gateway.ingress.smtp_data``)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

from aiosmtpd.smtp import SMTP

from gateway.ingress.smtp import ConnectionTracker, GatewaySMTP
from gateway.ingress.smtp_data import R_TOO_LONG, R_TOO_MUCH

SIZE_LIMIT = 4000
CASES = 300
TOKENS = [
    b"", b".", b"..", b".x", b"x.", b"Hallo Welt, der Drucker druckt nicht.", b"a" * 999, b"a" * 1000,
    b"b" * 1500, b"\n", b"\r", b".\n", b"\n.", b"\r\n.\n", b"\n.\r\n", b"MAIL FROM:<evil@example.com>",
    b"\xc3\xa4\xff\xfe", b" . ", b"QUIT", b"RCPT TO:<x@y>",
]
SEPARATORS = [b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b""]


class Capture:
    """Handler for both servers: keep what DATA delivered."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(bytes(envelope.original_content))
        return "250 OK"

    def count(self, result: str, reason: str) -> None:  # the gateway protocol's metrics hook
        pass


def data_section(rng: random.Random) -> bytes:
    parts = [rng.choice(TOKENS) + rng.choice(SEPARATORS) for _ in range(rng.randint(0, 8))]
    return b"".join(parts)


def pieces(rng: random.Random, data: bytes) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), k=min(len(data) - 1, rng.randint(0, 5))))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


async def transcript(port: int, chunks: list[bytes]) -> list[bytes]:
    """One session: envelope, DATA sent in ``chunks`` (which end with the
    end line and QUIT); every reply line until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies: list[bytes] = []

    async def reply() -> None:
        while True:
            line = await reader.readline()
            replies.append(line)
            if line[3:4] != b"-":
                return

    try:
        await reply()
        for cmd in (b"EHLO client.example\r\n", b"MAIL FROM:<anna@bauwerk-ag.de>\r\n",
                    b"RCPT TO:<servicedesk@xitrust.com>\r\n", b"DATA\r\n"):
            writer.write(cmd)
            await reply()
        for chunk in chunks:
            try:
                writer.write(chunk)
                await writer.drain()
            except ConnectionError:
                break  # a QUIT inside the data (after an early end line) closed it
            await asyncio.sleep(0.002)  # let the server read what it has
        with contextlib.suppress(ConnectionError):
            while line := await reader.readline():
                replies.append(line)
    finally:
        writer.close()
    return replies


def test_data_reader_matches_aiosmtpd() -> None:
    rng = random.Random(20261128)

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        stock, ours = Capture(), Capture()
        tracker = ConnectionTracker(1000, 1000)
        servers = [
            await loop.create_server(
                lambda: SMTP(stock, data_size_limit=SIZE_LIMIT, enable_SMTPUTF8=True, hostname="t"),
                "127.0.0.1", 0,
            ),
            await loop.create_server(
                lambda: GatewaySMTP(ours, tracker=tracker, data_timeout=30, data_size_limit=SIZE_LIMIT,
                                    enable_SMTPUTF8=True, hostname="t"),
                "127.0.0.1", 0,
            ),
        ]
        ports = [s.sockets[0].getsockname()[1] for s in servers]
        problems: list[str] = []
        try:
            for case in range(CASES):
                data = data_section(rng)
                stream = data + b"\r\n.\r\nQUIT\r\n"
                chunks = pieces(rng, stream)
                before = (len(stock.messages), len(ours.messages))
                expected = await asyncio.wait_for(transcript(ports[0], chunks), 10)
                got = await asyncio.wait_for(transcript(ports[1], chunks), 10)
                stored = (stock.messages[before[0]:], ours.messages[before[1]:])
                if got != expected and len(data) > SIZE_LIMIT:
                    # the intended difference: both limits broken, ours says 552
                    too_long = (R_TOO_LONG + "\r\n").encode()
                    expected = [(R_TOO_MUCH + "\r\n").encode() if r == too_long else r for r in expected]
                if got != expected or stored[0] != stored[1]:
                    problems.append(f"case {case}: {data!r}\n  aiosmtpd {expected}\n  ours     {got}")
        finally:
            for s in servers:
                s.close()
        return problems

    problems = asyncio.run(main())
    assert not problems, "\n".join(problems[:5])


ADDRESSES = [
    "", "<>", "<anna@bauwerk-ag.de>", "anna@bauwerk-ag.de", "<anna@bauwerk-ag.de> SIZE=1000 BODY=8BITMIME",
    '<"anna berger"@bauwerk-ag.de>', "<@relay.example:anna@bauwerk-ag.de>", "<anna@[192.0.2.1]>", "<",
    "<anna@bauwerk-ag.de", "anna berger@x.de", "<jürgen@müller.de> SMTPUTF8", "<" + "l" * 300 + "@x.de>",
    "<a@b@c>", "<a..b@x.de>", " <a@x.de>", "<a@x.de>>", "<(comment)a@x.de>",
]


def test_address_parser_matches_aiosmtpd() -> None:
    async def main() -> None:
        stock = SMTP(Capture(), hostname="t")
        ours = GatewaySMTP(Capture(), tracker=ConnectionTracker(1, 1), data_timeout=30, hostname="t")
        for limit in (0, 64):
            stock.local_part_limit = ours.local_part_limit = limit
            for arg in ADDRESSES:
                try:
                    expected = stock._getaddr(arg)
                except IndexError:  # aiosmtpd: a session error; ours: malformed
                    expected = (None, None)
                assert ours._getaddr(arg) == expected, arg

    asyncio.run(main())
