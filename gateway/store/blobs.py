"""Content-addressed blob store for raw mail and attachments: files named by
their SHA-256 (the default) or rows of the ``blob`` table. Identical bytes
are stored once. A file blob is durable (fsync of file and directory) before
``put`` returns, so a database row may point at it right after."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from gateway.store.models import Blob


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore(Protocol):
    def put(self, session: Session, data: bytes) -> str:
        """Store ``data``; return its SHA-256 hex digest."""
        ...

    def get(self, session: Session, digest: str) -> bytes:
        """The bytes stored under ``digest``; KeyError if absent."""
        ...


class FileBlobStore:
    """``root/ab/cd/abcd…`` files; written atomically (temp file + rename)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, digest: str) -> Path:
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise KeyError(digest)  # never let a digest become a path component
        return self.root / digest[:2] / digest[2:4] / digest

    def put(self, session: Session | None, data: bytes) -> str:
        digest = sha256_hex(data)
        target = self.path_for(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return digest

    def get(self, session: Session | None, digest: str) -> bytes:
        try:
            return self.path_for(digest).read_bytes()
        except FileNotFoundError:
            raise KeyError(digest) from None


class DatabaseBlobStore:
    """Blobs as rows, committed with the caller's transaction."""

    def put(self, session: Session, data: bytes) -> str:
        digest = sha256_hex(data)
        bind = session.get_bind()
        ins = pg_insert(Blob) if bind.dialect.name == "postgresql" else sqlite_insert(Blob)
        session.execute(ins.values(sha256=digest, data=data).on_conflict_do_nothing())
        return digest

    def get(self, session: Session, digest: str) -> bytes:
        blob = session.get(Blob, digest)
        if blob is None:
            raise KeyError(digest)
        return blob.data


def make_blob_store(setting: str) -> FileBlobStore | DatabaseBlobStore:
    if setting == "database":
        return DatabaseBlobStore()
    return FileBlobStore(setting)
