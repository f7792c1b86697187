"""Composition root: builds the engine, blob store and pipeline from one
Settings object and offers the operations the CLI calls. Only this module
reads Settings whole and wires things together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from sqlalchemy import Engine

from gateway.settings import Settings
from gateway.store.blobs import DatabaseBlobStore, FileBlobStore, make_blob_store
from gateway.store.db import make_engine


@dataclass
class App:
    settings: Settings

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.database.url, self.settings.database.busy_timeout_ms)

    @cached_property
    def blobs(self) -> FileBlobStore | DatabaseBlobStore:
        return make_blob_store(self.settings.storage.blobs)

    def db_upgrade(self) -> None:
        """Create or migrate the schema (Alembic)."""
        raise NotImplementedError

    def ensure_schema(self) -> None:
        """Migrate an embedded SQLite automatically; PostgreSQL needs
        ``gateway db upgrade``."""
        raise NotImplementedError

    def ingest(self, paths: Sequence[str], recipient: str | None, progress: bool) -> int:
        """Spool and process mail from paths ('-' or none: stdin). Returns the
        exit code: 0 accepted, 65 bad data, 75 temporary failure."""
        raise NotImplementedError

    def reprocess(self, mail_ids: Sequence[int]) -> list[tuple[int, str]]:
        """Queue the given inbound mails again and process them; returns
        (id, new disposition) pairs."""
        raise NotImplementedError

    def comment(self, key: str, author_email: str, body: str, internal: bool) -> int:
        """An agent comment without mail; returns the comment id."""
        raise NotImplementedError

    def serve(self) -> int:
        """Run the daemon until SIGTERM; returns the exit code."""
        raise NotImplementedError
