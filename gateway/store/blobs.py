"""Content-addressed blob store for raw mail and attachments: files named by
their SHA-256 (the default) or rows of the ``blob`` table. Identical bytes
are stored once. A file blob is durable (fsync of file and directory) before
``put`` returns, so a database row may point at it right after.

Because identical bytes are stored once, removing a blob (retention,
``store/retention.py``) races with a ``put`` of the same bytes for a row
not yet committed. A ``put`` that finds its bytes there therefore marks
them as wanted: a file gets a new modification time (``set_aside`` leaves
recently wanted files alone), a ``blob`` row is locked until the
transaction ends (retention locks before it checks for rows that refer to
a blob)."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, bindparam, delete, select
from sqlmodel import Session

from gateway.store.db import dialect_insert
from gateway.store.models import Blob


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore(Protocol):
    # Whether blobs are files outside the database: then they can be
    # written before a transaction (and synced together), and another
    # process can read one by its path (``file_path``).
    holds_files: bool

    def put(self, session: Session | Connection | None, data: bytes) -> str:
        """Store ``data``; return its SHA-256 hex digest. ``session`` may be
        None only when ``holds_files``."""
        ...

    def get(self, session: Session | Connection | None, digest: str) -> bytes:
        """The bytes stored under ``digest``; KeyError if absent."""
        ...

    def file_path(self, digest: str) -> str | None:
        """The file holding ``digest``'s bytes, or None (not a file)."""
        ...

    def delete(self, session: Session | Connection | None, digest: str) -> bool:
        """Remove ``digest``'s bytes (erasure: the caller has made sure no
        row refers to them any more); whether there were any."""
        ...

    def group(self) -> contextlib.AbstractContextManager[None]:
        """Puts inside the block become durable together at its end."""
        ...


class FileBlobStore:
    """``root/ab/abcd…`` files; written atomically (temp file + rename).

    Each ``put`` is durable on return, unless it runs inside ``group()``:
    then the files are made durable together when the group ends (one
    ``syncfs`` instead of two fsyncs per file). Callers that commit a
    database row pointing at a blob end the group before the commit."""

    holds_files = True

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._dirs: set[Path] = set()  # fan-out directories known to exist

    def path_for(self, digest: str) -> Path:
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise KeyError(digest)  # never let a digest become a path component
        # One level of 256 fan-out directories: enough to keep directories
        # small, and few enough that creating them is a one-off cost.
        return self.root / digest[:2] / digest

    def file_path(self, digest: str) -> str | None:
        return str(self.path_for(digest))

    @contextlib.contextmanager
    def group(self) -> Iterator[None]:
        """Defer durability of the puts inside to the end of the block."""
        if getattr(self._local, "pending", None) is not None:
            yield  # nested: the outer group syncs
            return
        self._local.pending = []
        try:
            yield
            pending: list[Path] = self._local.pending
            if pending:
                _sync_paths(self.root, pending)
        finally:
            self._local.pending = None

    def put(self, session: Session | Connection | None, data: bytes) -> str:
        digest = sha256_hex(data)
        target = self.path_for(digest)
        try:
            # There already: wanted again now (see set_aside). One system
            # call, as the existence check it replaces.
            os.utime(target)
            return digest
        except FileNotFoundError:
            pass
        except PermissionError:
            return digest  # there, but another user's file (a restore as root): the same bytes
        pending: list[Path] | None = getattr(self._local, "pending", None)
        if target.parent not in self._dirs:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(target.parent)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                if pending is None:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if pending is None:
            _fsync_dir(target.parent)
        else:
            pending.append(target)
        return digest

    def get(self, session: Session | Connection | None, digest: str) -> bytes:
        try:
            return self.path_for(digest).read_bytes()
        except FileNotFoundError:
            raise KeyError(digest) from None

    def delete(self, session: Session | Connection | None, digest: str) -> bool:
        path = self.path_for(digest)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        # Erased means gone: the removal survives a crash like a put does.
        _fsync_dir(path.parent)
        return True

    def set_aside(self, digests: Iterable[str], wanted_since: float) -> SetAside:
        """Move the files of ``digests`` out of the way (renamed in their
        directory: a ``put`` from now on writes them anew), except those a
        ``put`` touched at or after ``wanted_since`` (a timestamp): a row
        that needs them may be on its way to a commit. The caller, having
        checked in its transaction that no row refers to the digests,
        commits and then calls ``drop()``, or ``restore()`` if it failed."""
        aside = SetAside()
        for digest in digests:
            path = self.path_for(digest)
            moved = path.with_name(f".expire-{digest}")
            try:
                os.rename(path, moved)
            except FileNotFoundError:
                continue  # nothing to remove
            if os.stat(moved).st_mtime >= wanted_since:
                os.replace(moved, path)  # a concurrent put's new copy holds the same bytes
                aside.wanted.add(digest)
            else:
                aside.moved[digest] = (moved, path)
        return aside


@dataclass
class SetAside:
    """Blob files ``FileBlobStore.set_aside`` moved out of the way, and the
    digests it left because a ``put`` wanted them recently."""

    moved: dict[str, tuple[Path, Path]] = field(default_factory=dict)  # digest -> (now, before)
    wanted: set[str] = field(default_factory=set)

    def drop(self) -> int:
        """Delete the moved files (durably: a crash must not bring removed
        mail back); how many."""
        for moved, _ in self.moved.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(moved)
        parents = {moved.parent for moved, _ in self.moved.values()}
        if _syncfs is not None and len(parents) > SYNCFS_THRESHOLD:
            # One syncfs for a batch spread over many of the 256 directories.
            fd = os.open(next(iter(parents)).parent, os.O_RDONLY)
            try:
                synced = _syncfs(fd) == 0
            finally:
                os.close(fd)
            parents = set() if synced else parents
        for parent in parents:
            _fsync_dir(parent)
        count = len(self.moved)
        self.moved.clear()
        return count

    def restore(self) -> None:
        """Put the moved files back (the transaction that removed their
        rows' references did not commit)."""
        for moved, path in self.moved.values():
            with contextlib.suppress(FileNotFoundError):
                os.replace(moved, path)
        self.moved.clear()


def _fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


_libc: ctypes.CDLL | None = None
try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _syncfs = getattr(_libc, "syncfs", None)
except OSError:  # pragma: no cover - not Linux
    _syncfs = None


SYNCFS_THRESHOLD = 16


def _sync_paths(root: Path, paths: list[Path]) -> None:
    """Make written files and their directory entries durable: fsync each
    for a few files (~0.2 ms apiece here), one syncfs of the whole
    filesystem for many (measured ~2-6 ms, whatever the count)."""
    if _syncfs is not None and len(paths) > SYNCFS_THRESHOLD:
        fd = os.open(root, os.O_RDONLY)
        try:
            if _syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for parent in {p.parent for p in paths}:
        _fsync_dir(parent)


_BLOB = Blob.__table__  # type: ignore[attr-defined]
_HOLD = (
    select(_BLOB.c.sha256)
    .where(_BLOB.c.sha256 == bindparam("b_digest"))
    .with_for_update(read=True, key_share=True)
)
_LOCK = (
    select(_BLOB.c.sha256)
    .where(_BLOB.c.sha256.in_(bindparam("b_digests", expanding=True)))
    .order_by(_BLOB.c.sha256)
    .with_for_update()
)


class DatabaseBlobStore:
    """Blobs as rows, committed with the caller's transaction."""

    holds_files = False

    def put(self, session: Session | Connection | None, data: bytes) -> str:
        if session is None:
            raise ValueError("database blobs are written in a transaction")
        digest = sha256_hex(data)
        dialect = session.dialect if isinstance(session, Connection) else session.get_bind().dialect
        ins = dialect_insert(dialect.name, Blob).values(sha256=digest, data=data).on_conflict_do_nothing()
        if dialect.name != "postgresql":
            # SQLite: this runs in a write transaction, which excludes
            # retention's for its whole length.
            session.execute(ins)
            return digest
        while session.execute(ins.returning(_BLOB.c.sha256)).first() is None:
            # The bytes are there: hold them until this transaction ends
            # (FOR KEY SHARE: other puts share it, a delete waits). If
            # retention removed them in between, store them again.
            if session.execute(_HOLD, {"b_digest": digest}).first() is not None:
                break
        return digest

    @contextlib.contextmanager
    def group(self) -> Iterator[None]:
        """Rows are durable with the transaction; nothing to defer."""
        yield

    def lock(self, conn: Connection, digests: Iterable[str]) -> None:
        """Before deleting ``digests`` if no row refers to them: wait for the
        transactions of puts that hold them (``put``'s FOR KEY SHARE lock
        lasts until its row is committed) and keep new puts waiting until
        this transaction ends, so the check for references that follows
        sees every row that needs the bytes. (SQLite: the write transaction
        already excludes every put.)"""
        wanted = sorted(set(digests))
        if wanted:
            conn.execute(_LOCK, {"b_digests": wanted}).all()

    def get(self, session: Session | Connection | None, digest: str) -> bytes:
        if session is None:
            raise ValueError("database blobs are read in a transaction")
        table = Blob.__table__  # type: ignore[attr-defined]
        data = session.execute(select(table.c.data).where(table.c.sha256 == digest)).scalar_one_or_none()
        if data is None:
            raise KeyError(digest)
        return bytes(data)

    def delete(self, session: Session | Connection | None, digest: str) -> bool:
        if session is None:
            raise ValueError("database blobs are deleted in a transaction")
        table = Blob.__table__  # type: ignore[attr-defined]
        result: Any = session.execute(delete(table).where(table.c.sha256 == digest))
        return bool(result.rowcount)

    def file_path(self, digest: str) -> str | None:
        return None


def make_blob_store(setting: str) -> BlobStore:
    if setting == "database":
        return DatabaseBlobStore()
    return FileBlobStore(setting)
