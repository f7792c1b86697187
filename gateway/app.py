"""Composition root: builds the engine, blob store and pipeline from one
Settings object and offers the operations the CLI calls. Only this module
reads Settings whole and wires things together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from sqlalchemy import Engine

from sqlmodel import select

from gateway.domain import Role, normalize_address
from gateway.ingress.spool import Spool
from gateway.pipeline.runner import Runner
from gateway.settings import Settings
from gateway.store.blobs import DatabaseBlobStore, FileBlobStore, make_blob_store
from gateway.store.db import make_engine, transaction
from gateway.store.models import Ticket


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
        from gateway.store import schema

        schema.upgrade(self.engine)

    def ensure_schema(self) -> None:
        """Migrate an embedded SQLite automatically; PostgreSQL needs
        ``gateway db upgrade``."""
        from gateway.store import schema
        from gateway.store.db import is_sqlite

        if schema.is_up_to_date(self.engine):
            return
        if is_sqlite(self.engine):
            schema.upgrade(self.engine)
            return
        raise RuntimeError("database schema is not up to date: run `gateway db upgrade`")

    def ingest(self, paths: Sequence[str], recipient: str | None, progress: bool) -> int:
        """Spool and process mail from paths ('-' or none: stdin). Returns the
        exit code: 0 accepted, 65 bad data, 75 temporary failure."""
        from gateway.ingest import run_ingest

        self.ensure_schema()
        return run_ingest(self, paths, recipient, progress)

    def runner(self, worker: str | None = None) -> Runner:
        return Runner(self.settings, self.engine, self.blobs, worker=worker)

    def reprocess(self, mail_ids: Sequence[int]) -> list[tuple[int, str]]:
        """Queue the given inbound mails again and process them; returns
        (id, new disposition) pairs. Its earlier effect (ticket or comment)
        is what dedup compares against, so a mail that already had one is
        not applied twice."""
        self.ensure_schema()
        found = Spool(self.engine, self.blobs).requeue(mail_ids)
        results: list[tuple[int, str]] = []
        if found:
            self.runner().drain(on_done=lambda i, d: results.append((i, d.text)), ids=found)
        return results

    def comment(self, key: str, author_email: str, body: str, internal: bool) -> int:
        """A comment without mail (an agent at the command line); returns
        the comment id. A public one notifies the customer side."""
        from gateway.pipeline import apply, notify
        from gateway.pipeline.identify import create_account, find_account

        self.ensure_schema()
        address = normalize_address(author_email)
        with transaction(self.engine) as session:
            ticket = session.exec(select(Ticket).where(Ticket.key == key.upper())).first()
            if ticket is None:
                raise LookupError(f"no ticket {key}")
            author = find_account(session, address) or create_account(
                session, address, "", self.settings.desk.default_locale, self.settings
            )
            by_agent = author.role == Role.agent
            comment, previous = apply.write_comment(
                session, ticket, author, body, internal, by_agent, "cli"
            )
            applied = apply.Applied(ticket=ticket, comment=comment, previous_status=previous)
            notify.notify_commented(session, self.settings, applied, author)
            assert comment.id is not None
            return comment.id

    def serve(self) -> int:
        """Run the daemon until SIGTERM; returns the exit code."""
        raise NotImplementedError
