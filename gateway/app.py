"""Composition root: builds the engine, blob store and pipeline from one
Settings object and offers the operations the CLI calls. Only this module
reads Settings whole and wires things together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, BinaryIO

from gateway.domain import MailStatus, normalize_address
from gateway.exits import CommandError
from gateway.settings import Settings

# Each command imports only what it uses (`gateway ticket list` needs
# neither the pipeline nor psycopg): the heavy parts are imported inside the
# methods that need them, and only named here for the type checker.
if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy import Connection, Engine

    from gateway.desk.operations import Done
    from gateway.pipeline.runner import Runner
    from gateway.store.blobs import BlobStore
    from gateway.store.repo import AccountRow
    from gateway.store.spool import Spool


@dataclass
class App:
    settings: Settings

    @cached_property
    def engine(self) -> Engine:
        from gateway.store.db import make_engine

        return make_engine(self.settings.database.url, self.settings.database.busy_timeout_ms)

    @cached_property
    def blobs(self) -> BlobStore:
        from gateway.store.blobs import make_blob_store

        return make_blob_store(self.settings.storage.blobs)

    @cached_property
    def spool(self) -> Spool:
        """The one spool of this process (every ingress and the workers)."""
        from gateway.store.spool import Spool

        return Spool(self.engine, self.blobs, self.settings.storage.spool_inline_max)

    def db_upgrade(self) -> None:
        """Create or migrate the schema (Alembic)."""
        from gateway.store import schema

        schema.upgrade(self.engine)

    def ensure_schema(self, create: bool = True) -> None:
        """Migrate an embedded SQLite automatically; PostgreSQL needs
        ``gateway db upgrade``. ``create=False`` (the operator's commands
        other than ``serve``, ``web``, ``ingest``): a store that is not
        there is an error naming the database looked for, not a new empty
        one and an empty table printed from it (a command run in the
        wrong directory)."""
        from gateway.store import schema
        from gateway.store.db import is_sqlite, sqlite_file

        url = self.settings.database.url
        path = sqlite_file(url)
        if not create and path is not None and not path.exists():
            raise CommandError(
                f"no database at {path} ([database] url = {url!r}, relative to the current directory): "
                "run the command where the gateway runs, or name its config with --config or "
                "GATEWAY_CONFIG; `gateway db upgrade` creates a new one"
            )
        if schema.is_up_to_date(self.engine):
            return
        current = schema.current_revision(self.engine)
        if current is not None and not schema.is_known(current):
            raise CommandError(
                f"database schema revision {current} is newer than this gateway: another gateway on this "
                "database was upgraded; install the same version here (several instances: stop all, back "
                "up, install, `gateway db upgrade` once, start all; README 'Upgrading')"
            )
        where = self.settings.masked()["database"]["url"]
        if current is None and not create:
            raise CommandError(f"no gateway schema in the database {where}: `gateway db upgrade` creates it")
        if is_sqlite(self.engine):
            schema.upgrade(self.engine)
            return
        raise CommandError(f"database schema of {where} is not up to date: run `gateway db upgrade`")

    def ingest(
        self, paths: Sequence[str], recipient: str | None, progress: bool, stdin: BinaryIO | None = None
    ) -> int:
        """Spool and process mail from paths ('-' or none: stdin). Returns the
        exit code: 0 accepted, 65 bad data, 75 temporary failure."""
        from gateway.ingest import run_ingest

        self.ensure_schema()
        return run_ingest(self, paths, recipient, progress, stdin=stdin)

    def runner(self, worker: str | None = None) -> Runner:
        from gateway.pipeline.runner import Runner

        return Runner(self.settings, self.spool, worker=worker)

    @property
    def runner_factory(self) -> Callable[[Settings], Runner]:
        return worker_runner

    def reprocess(self, mail_ids: Sequence[int]) -> list[tuple[int, str]]:
        """Queue the given inbound mails again and process them; returns
        (id, new disposition) pairs. A mail that already had its effect
        (``done``) is left alone: reprocessing it would apply it twice; so is
        one whose raw bytes retention removed."""
        self.ensure_schema()
        states = self.spool.states(mail_ids)
        done = {i: d or "done" for i, (status, d) in states.items() if status == MailStatus.done}
        todo = [i for i in states if i not in done]
        results = [(i, f"unchanged: {d}") for i, d in done.items()]
        found = self.spool.requeue(todo)
        gone = [i for i in todo if i not in found]
        results += [(i, "unchanged: its raw message was removed by retention") for i in gone]
        if found:
            self.runner().drain(on_done=lambda i, d: results.append((i, d.text)), ids=found)
        return sorted(results)

    def operate(self, key: str, as_email: str | None, operation: Callable[..., Done], *args: Any) -> Done:
        """Run the desk operation ``operation(conn, desk, actor, ticket,
        *args)`` on the ticket ``key`` as the account
        ``as_email`` (None: the desk itself, ``system``), from the command
        line, in one transaction. Raises NotFound for an unknown ticket or
        account and ``Refused`` (Forbidden, Invalid) when the operation is
        refused."""
        from gateway.desk.operations import Actor, Desk
        from gateway.store import repo
        from gateway.store.db import connection
        from gateway.store.read import NotFound, normalize_ticket_key

        self.ensure_schema()
        with connection(self.engine) as conn:
            ticket = repo.ticket_by_key(conn, normalize_ticket_key(key))
            if ticket is None:
                raise NotFound(f"ticket {key} not found")
            if as_email is None:
                actor = Actor.system("cli")
            else:
                actor = Actor.of(self._cli_account(conn, as_email), "cli")
            return operation(conn, Desk(self.settings, self.blobs), actor, ticket, *args)

    def _cli_account(self, conn: Connection, email: str) -> AccountRow:
        """The account behind ``--as``: it must exist (agents are made with
        ``gateway account create EMAIL --role agent``). A typo must not
        create an account whose comment is mailed to the ticket's people."""
        from gateway.store import repo
        from gateway.store.read import NotFound

        address = normalize_address(email)
        account = repo.account_by_email(conn, address)
        if account is not None:
            return account
        raise NotFound(f"no account {address} (see `gateway account list`; an agent is made with "
                       "`gateway account create EMAIL --role agent`)")

    def comment(self, key: str, author_email: str, body: str, internal: bool) -> int:
        """A comment without mail (an agent at the command line); returns
        the comment id. A public one notifies the customer side."""
        from gateway.desk import operations

        new = operations.NewComment(body=body, internal=internal)
        done = self.operate(key, author_email, operations.add_comment, new)
        assert done.comment_id is not None
        return done.comment_id

    # -- outbound mail and signup ------------------------------------------
    def flush_outbox(self) -> dict[str, int]:
        """Send every due outbox row once; counts by outcome."""
        from gateway.outbound.sender import flush_outbox

        self.ensure_schema()
        return flush_outbox(self)

    def signup(self, email: str) -> str:
        """Queue a signup confirmation when appropriate (silently not, when
        the address is registered or got one today); returns the address."""
        from gateway import signup

        self.ensure_schema()
        signup.request_signup(self.engine, self.settings, email)
        return normalize_address(email)

    def confirm_signup(self, token: str, name: str, password: str) -> str:
        """Redeem a signup token; returns the now active account's address."""
        from gateway import signup

        self.ensure_schema()
        return signup.confirm_signup(self.engine, token, name, password)

    def serve(self) -> int:
        """Run the daemon until SIGTERM; returns the exit code."""
        from gateway.daemon import serve

        return serve(self)


def worker_runner(settings: Settings) -> Runner:
    """A worker process's Runner (``Services.runner_factory``)."""
    return App(settings).runner()
