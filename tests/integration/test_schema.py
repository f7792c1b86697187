"""The Alembic migrations create exactly the tables of store/models.py, on
SQLite and on PostgreSQL, and the App's schema guards behave as documented."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from gateway.app import App
from gateway.exits import CommandError
from gateway.settings import Settings
from gateway.store import models, schema
from gateway.store.db import make_engine, transaction


def _diff(app: App) -> list[object]:
    with app.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, SQLModel.metadata))


def test_migrated_schema_matches_models(app: App) -> None:
    assert _diff(app) == []
    assert schema.current_revision(app.engine) in schema.head_revisions()
    assert schema.is_up_to_date(app.engine)


def test_upgrade_twice_is_a_no_op(app: App) -> None:
    app.db_upgrade()
    assert schema.is_up_to_date(app.engine)
    assert _diff(app) == []


def test_foreign_keys_exist(app: App) -> None:
    """Spot check beyond compare_metadata: the foreign keys are really there."""
    insp = inspect(app.engine)

    def targets(table: str) -> set[tuple[str, str]]:
        return {(fk["constrained_columns"][0], fk["referred_table"]) for fk in insp.get_foreign_keys(table)}

    assert ("ticket_id", "ticket") in targets("inbound_mail")
    assert ("reporter_id", "account") in targets("ticket")
    assert ("cause_mail_id", "inbound_mail") in targets("outbound_mail")


def test_rows_round_trip(app: App) -> None:
    with transaction(app.engine) as s:
        account = models.Account(email="anna@bauwerk-ag.de")
        s.add(account)
        s.flush()
        mail = models.InboundMail(source="ingest", raw_sha256="0" * 64, raw_size=1)
        s.add(mail)
        s.flush()
        assert account.id is not None and mail.id is not None
        ticket = models.Ticket(
            number=1, key="SD-1", request_type="other", summary="x",
            reporter_id=account.id, source_mail_id=mail.id, fields={"browser": "Firefox"},
        )
        s.add(ticket)
        s.flush()
        mail.ticket_id = ticket.id
    with transaction(app.engine) as s:
        loaded = s.get(models.InboundMail, mail.id)
        assert loaded is not None and loaded.ticket_id == ticket.id
        t = s.get(models.Ticket, ticket.id)
        assert t is not None and t.fields == {"browser": "Firefox"}


def test_foreign_keys_are_enforced(app: App) -> None:
    with pytest.raises(Exception, match="(?i)foreign key"), transaction(app.engine) as s:
        s.add(models.TicketParticipant(ticket_id=12345, account_id=67890))


def test_downgrade_to_base_and_up_again(app: App) -> None:
    with app.engine.connect() as conn:
        command.downgrade(schema._config(conn), "base")
    assert schema.current_revision(app.engine) is None
    assert set(inspect(app.engine).get_table_names()) <= {"alembic_version"}
    app.db_upgrade()
    assert _diff(app) == []


def test_ensure_schema(settings: Settings) -> None:
    """SQLite is migrated on start; PostgreSQL must be upgraded explicitly."""
    application = App(settings)
    try:
        if settings.database.url.startswith("sqlite"):
            application.ensure_schema()
            assert schema.is_up_to_date(application.engine)
        else:
            with pytest.raises(CommandError, match="gateway db upgrade"):
                application.ensure_schema()
            application.db_upgrade()
            application.ensure_schema()
    finally:
        application.engine.dispose()


def test_concurrent_upgrades_serialise(db_url: str, clean_env: None) -> None:
    """Several processes starting at once on a fresh database (e.g. the MTA
    piping mail to `gateway ingest` right after install) must not race:
    SQLite's BEGIN IMMEDIATE and PostgreSQL's advisory lock serialise them.
    (Processes, not threads: alembic's ``context`` is process-global. A long
    busy timeout: on a loaded machine waiting for the others may take a while,
    and a timeout is not what this test is about.)"""
    code = (
        "import sys, time; from gateway.store import schema; from gateway.store.db import make_engine; "
        "e = make_engine(sys.argv[1], busy_timeout_ms=60_000); "
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time())); "
        "schema.upgrade(e); assert schema.is_up_to_date(e)"
    )
    start_at = str(time.time() + 3)  # after every child has imported: start together
    procs = [
        subprocess.Popen([sys.executable, "-c", code, db_url, start_at], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs if p.wait(timeout=120) != 0]
    assert errors == []
    engine = make_engine(db_url)
    try:
        assert schema.is_up_to_date(engine)
    finally:
        engine.dispose()


def test_ensure_schema_refuses_a_newer_database(app: App) -> None:
    """A database migrated by a newer gateway is never 'upgraded' (SQLite)
    or reported as merely outdated (PostgreSQL)."""
    with transaction(app.engine) as s:
        s.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(CommandError, match="newer than this gateway"):
        app.ensure_schema()


def test_fast_head_revisions_match_alembic() -> None:
    """Every command checks the schema against the heads read from the
    migration files (no Alembic import); they must be Alembic's heads."""
    from gateway.store import schema

    assert set(schema.head_revisions_fast()) == schema.head_revisions()
