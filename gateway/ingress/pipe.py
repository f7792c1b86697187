"""Sources for ``gateway ingest``: one message on stdin, ``.eml`` files, mbox
files (mboxrd / mboxo), Maildir folders and plain directories of ``.eml``
files. Yields raw messages with a label for error lines; size limits are
checked here so an oversize message is never read whole into memory."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from gateway.ingress.sniff import check_message


@dataclass(frozen=True)
class RawMessage:
    label: str  # where it came from, for error lines: "stdin", "a.mbox#3"
    raw: bytes | None  # None: rejected (see error)
    error: str | None = None


class SourceError(Exception):
    """A path that cannot be read as mail (missing, unreadable, not mail)."""


_MBOX_FROM = re.compile(rb"^>+From ")


def _too_big(size: int, limit: int) -> str:
    return f"message too large ({size} bytes, limit {limit})"


def _check(label: str, raw: bytes, limit: int) -> RawMessage:
    if len(raw) > limit:
        return RawMessage(label, None, _too_big(len(raw), limit))
    problem = check_message(raw)
    return RawMessage(label, None, problem) if problem else RawMessage(label, raw)


def read_stream(stream: BinaryIO, label: str, limit: int) -> RawMessage:
    raw = stream.read(limit + 1)
    if len(raw) > limit:
        return RawMessage(label, None, f"message too large (over {limit} bytes)")
    return _check(label, raw, limit)


def read_file(path: Path, limit: int) -> RawMessage:
    size = path.stat().st_size
    if size > limit:
        return RawMessage(str(path), None, _too_big(size, limit))
    return _check(str(path), path.read_bytes(), limit)


def read_mbox(path: Path, limit: int) -> Iterator[RawMessage]:
    """Messages of an mbox: each starts at a ``From `` line after a blank
    line (or at the top); ``>From`` lines are unescaped (mboxrd)."""
    n = 0
    current: list[bytes] = []
    size = 0
    oversize = False
    prev_blank = True

    def flush() -> RawMessage | None:
        nonlocal n
        if not current and not oversize:
            return None
        n += 1
        label = f"{path}#{n}"
        if oversize:
            return RawMessage(label, None, _too_big(size, limit))
        raw = b"".join(current)
        # mbox adds one blank line after each message
        if raw.endswith(b"\n\n"):
            raw = raw[:-1]
        return _check(label, raw, limit)

    with path.open("rb") as fh:
        for line in fh:
            if line.startswith(b"From ") and prev_blank:
                msg = flush()
                if msg is not None:
                    yield msg
                current, size, oversize = [], 0, False
                prev_blank = False
                continue
            prev_blank = line in (b"\n", b"\r\n")
            if _MBOX_FROM.match(line):
                line = line[1:]
            size += len(line)
            if size > limit:
                oversize = True
                current = []
            elif not oversize:
                current.append(line)
    msg = flush()
    if msg is not None:
        yield msg


def _is_mbox(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(5) == b"From "


def _maildir_files(path: Path) -> list[Path]:
    files: list[Path] = []
    for sub in ("new", "cur"):
        d = path / sub
        if d.is_dir():
            files += [p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")]
    return sorted(files, key=lambda p: p.name)


def iter_path(path_str: str, limit: int) -> Iterator[RawMessage]:
    """All messages found at one path."""
    path = Path(path_str)
    if not path.exists():
        raise SourceError(f"{path_str}: no such file or directory")
    if path.is_dir():
        if (path / "cur").is_dir() or (path / "new").is_dir():
            files = _maildir_files(path)
        else:
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".eml")
        for f in files:
            yield read_file(f, limit)
        return
    if not os.access(path, os.R_OK):
        raise SourceError(f"{path_str}: permission denied")
    if _is_mbox(path):
        yield from read_mbox(path, limit)
    else:
        yield read_file(path, limit)
