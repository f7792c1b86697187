"""``gateway ingest`` as a thin client: hand the message on stdin to the
running daemon over its local LMTP socket (``[smtp] socket``) and exit with
the daemon's answer, as Request Tracker's ``rt-mailgate`` hands mail to its
server. The daemon answers ``250`` only after the durable spool commit, so
exit 0 still means "committed".

Starting the pipeline in every ``ingest`` process (SQLAlchemy, pydantic, the
parser, a worker pool) costs over a second per message; this path imports
the standard library's socket code and reads two configuration keys
(``config_peek``). When no daemon answers, nothing was handed over and the
caller spools and processes the message itself, as it always could.

Exit codes are those of the inline path, and so are its one-line messages:
0 committed, 65 rejected (not mail, too large: an MTA bounces it), 75
temporary failure (the MTA retries). A reply lost after the message was sent
is 75, never a second inline copy: the retry is the same bytes, which the
pipeline drops as a duplicate if the first copy was committed after all.
"""

from __future__ import annotations

import re
import socket

from gateway.config_peek import Peek
from gateway.ingress.sniff import check_message

# typing costs ~5 ms at start; the type checker reads this block anyway.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO, TextIO

EX_OK, EX_DATAERR, EX_TEMPFAIL = 0, 65, 75
CONNECT_TIMEOUT = 10.0  # seconds for the greeting and each command before DATA
COMMIT_TIMEOUT = 120.0  # seconds for the answer to DATA (the daemon's commit)
_BARE_LF = re.compile(rb"(?<!\r)\n")
# An address we can put on an RCPT line as it is; anything else (spaces,
# controls, brackets) goes the inline way, which normalizes what it can.
_PLAIN_ADDRESS = re.compile(r"[^\s<>()\[\]\\,;:\"@]+@[^\s<>()\[\]\\,;:\"@]+")


class NoDaemon(Exception):
    """Nothing was handed over: no daemon answers, or it cannot take the
    message now. ``data`` holds what was already read from stdin."""

    def __init__(self, reason: str, data: bytes | None = None) -> None:
        super().__init__(reason)
        self.data = data


class _Session:
    """One LMTP session over a Unix socket, with blocking I/O."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(CONNECT_TIMEOUT)
        try:
            self.sock.connect(path)
        except OSError as exc:  # no socket file, nobody listening, no permission
            self.sock.close()
            raise NoDaemon(f"cannot connect to {path}: {exc.strerror or exc}") from None
        self.reader = self.sock.makefile("rb")

    def reply(self) -> tuple[int, str, list[str]]:
        """Code, text of the last line, and all lines of one reply."""
        lines: list[str] = []
        while True:
            line = self.reader.readline(4096)
            if not line.endswith(b"\n"):
                raise ConnectionError("connection closed")
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(text[4:])
            if len(text) < 4 or text[3] != "-":
                try:
                    return int(text[:3]), text, lines
                except ValueError:
                    raise ConnectionError(f"not an LMTP reply: {text[:40]!r}") from None

    def command(self, line: str) -> tuple[int, str, list[str]]:
        self.sock.sendall(line.encode("utf-8") + b"\r\n")
        return self.reply()

    def close(self) -> None:
        try:
            self.sock.settimeout(1.0)
            self.sock.sendall(b"QUIT\r\n")
        except OSError:
            pass
        self.reader.close()
        self.sock.close()


def _size_limit(lhlo_lines: list[str]) -> int | None:
    for line in lhlo_lines:
        name, _, value = line.partition(" ")
        if name.upper() == "SIZE" and value.strip().isdigit():
            return int(value)
    return None


def _read_stdin(stdin: BinaryIO, limit: int | None) -> bytes:
    return stdin.read() if limit is None else stdin.read(limit + 1)


def data_section(raw: bytes) -> bytes:
    """The message as LMTP DATA: lines end in CRLF (as on the wire), a line
    starting with a dot gets one more (RFC 5321 4.5.2), and the end line."""
    data = _BARE_LF.sub(b"\r\n", raw)
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def hand_off(config_path: str | None, recipient: str | None, stdin: BinaryIO, err: TextIO) -> int:
    """Hand the message on ``stdin`` to the daemon; the exit code. Raises
    NoDaemon when nothing was handed over (the caller processes inline)."""
    peek = Peek(config_path)
    path = peek.local_socket()
    rcpt = (recipient or "").strip() or peek.first_desk_address()
    if path is None or rcpt is None:
        raise NoDaemon("no local socket configured")
    if not _PLAIN_ADDRESS.fullmatch(rcpt):
        raise NoDaemon("recipient needs the inline path's normalization")
    session = _Session(path)
    raw: bytes | None = None
    try:
        code, text, _ = session.reply()
        if code != 220:
            raise NoDaemon(f"greeting: {text}")
        code, text, lines = session.command("LHLO localhost")
        if code != 250:
            raise NoDaemon(f"LHLO: {text}")
        limit = _size_limit(lines)
        raw = _read_stdin(stdin, limit)
        if limit is not None and len(raw) > limit:
            print(f"gateway: rejected stdin: message too large (over {limit} bytes)", file=err)
            return EX_DATAERR
        problem = check_message(raw)
        if problem is not None:
            print(f"gateway: rejected stdin: {problem}", file=err)
            return EX_DATAERR
        # No envelope sender: `gateway ingest` has none (the daemon records
        # none for this socket, so "<>" does not make the mail a bounce).
        for line in ("MAIL FROM:<>", f"RCPT TO:<{rcpt}>"):
            code, text, _ = session.command(line)
            if code != 250:
                raise NoDaemon(f"{line.split(':')[0]}: {text}", raw)
        code, text, _ = session.command("DATA")
        if code != 354:
            raise NoDaemon(f"DATA: {text}", raw)
        return _send(session, raw, err)
    except (OSError, ConnectionError) as exc:  # before the message was sent
        raise NoDaemon(f"daemon went away: {exc}", raw) from None
    finally:
        session.close()


def _send(session: _Session, raw: bytes, err: TextIO) -> int:
    try:
        session.sock.settimeout(COMMIT_TIMEOUT)
        session.sock.sendall(data_section(raw))
        code, text, _ = session.reply()
    except (OSError, ConnectionError):
        print("gateway: temporary failure: the daemon did not answer; try again", file=err)
        return EX_TEMPFAIL
    if 200 <= code < 300:
        return EX_OK
    if 400 <= code < 500:
        print(f"gateway: temporary failure: {text[4:].strip() or 'try again later'}", file=err)
        return EX_TEMPFAIL
    print(f"gateway: rejected stdin: {_reason(text)}", file=err)
    return EX_DATAERR


def _reason(reply: str) -> str:
    """``554 5.6.0 not an e-mail message`` -> ``not an e-mail message``."""
    rest = reply[4:].strip()
    first, _, tail = rest.partition(" ")
    return tail if first.count(".") == 2 and first[:1].isdigit() else rest
