"""The database schema's version: run the Alembic migrations in
``store/migrations`` programmatically (no ``alembic.ini``; the migrations
ship inside the wheel and are found next to this file) and tell whether a
database is up to date.

Making a migration after changing ``store/models.py``::

    . .venv/bin/activate
    python -m gateway.store.schema revision -m "add ticket.due_at"

This upgrades a scratch SQLite database to the current head, autogenerates
the difference to the models into ``migrations/versions/NNNN_<slug>.py``
(next sequential id, batch ops so SQLite can ALTER) and prints the path.
Review it by hand (server defaults, data migrations, renames show up as
drop + add), then run ``pytest tests/integration/test_schema.py`` which
proves the migrated schema equals the models on SQLite and PostgreSQL.
``--url postgresql+psycopg://…`` autogenerates against a database of your
choice instead (it must be at head).

While the initial schema is still in flux (nothing deployed yet), rebuild
``0001_initial.py`` from the models instead: ``scripts/regen_initial_migration.sh``.
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text

from gateway.store.db import read_connection

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSIONS_DIR = MIGRATIONS_DIR / "versions"
# The two lines of a migration file that make the revision graph; every
# command's "is the schema current?" reads them instead of importing
# Alembic (~130 ms). test_schema checks the answer equals Alembic's.
_REVISION = re.compile(r"^revision(?:: *[^=]+)? *= *['\"]([^'\"]+)['\"]", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision(?:: *[^=]+)? *= *(.+)$", re.MULTILINE)
_QUOTED = re.compile(r"['\"]([^'\"]+)['\"]")


def _config(connection: Connection | None = None, **attributes: object) -> Config:
    from alembic.config import Config

    cfg = Config()
    # Config values go through configparser interpolation: escape '%'.
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    cfg.attributes.update(attributes)
    return cfg


def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def head_revisions() -> set[str]:
    """The revisions the code expects (normally exactly one)."""
    return set(_script().get_heads())


@functools.cache
def head_revisions_fast() -> frozenset[str]:
    """``head_revisions()`` from the migration files' ``revision`` and
    ``down_revision`` lines, without importing Alembic."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in VERSIONS_DIR.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        rev = _REVISION.search(source)
        if rev is None:
            continue
        revisions.add(rev.group(1))
        down = _DOWN_REVISION.search(source)
        if down is not None:
            parents.update(_QUOTED.findall(down.group(1)))
    return frozenset(revisions - parents)


def is_known(revision: str) -> bool:
    """False for a revision this code has no migration for (a database
    migrated by a newer gateway)."""
    try:
        return _script().get_revision(revision) is not None
    except Exception:  # alembic raises for unknown or ambiguous ids
        return False


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Create or migrate the schema to ``revision`` in one transaction.

    On SQLite the engine's ``BEGIN IMMEDIATE`` hook makes the migration
    transaction take the write lock up front, so concurrent upgrades
    serialise; foreign keys are switched off for the migration (table
    rebuilds of batch mode) and checked before commit (see env.py).
    On PostgreSQL an advisory lock serialises concurrent upgrades."""
    from alembic import command

    with engine.connect() as conn:
        command.upgrade(_config(conn), revision)
        if conn.in_transaction():  # alembic commits its own; anything left is ours
            conn.commit()


def current_revision(engine: Engine) -> str | None:
    """The database's revision; None for an empty (unmigrated) database."""
    from alembic.runtime.migration import MigrationContext

    with read_connection(engine) as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_up_to_date(engine: Engine) -> bool:
    """True when the database is at the head revision(s) of the code.
    Every command asks this first: a read that never waits for a writer,
    and a plain query of Alembic's table (an absent table: not current)."""
    with read_connection(engine) as conn:
        if conn.dialect.name == "sqlite":
            exists = conn.execute(_SQLITE_HAS_VERSION_TABLE).first() is not None
        else:
            exists = conn.execute(_PG_HAS_VERSION_TABLE).scalar() is not None
        if not exists:
            return False
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return bool(rows) and set(rows) == head_revisions_fast()


_SQLITE_HAS_VERSION_TABLE = text(
    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
)
_PG_HAS_VERSION_TABLE = text("SELECT to_regclass('alembic_version')")


def make_revision(engine: Engine, message: str, rev_id: str | None = None) -> Path:
    """Autogenerate a migration from the difference between the database
    behind ``engine`` (which must be at head) and the models. Returns the
    new file."""
    from alembic import command

    script = _script()
    existing = list(script.walk_revisions())
    rev_id = rev_id or f"{len(existing) + 1:04d}"
    with engine.connect() as conn:
        cfg = _config(conn)
        result = command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)
    scripts = result if isinstance(result, list) else [result]
    return Path(scripts[0].path) if scripts and scripts[0] is not None else MIGRATIONS_DIR


def _main(argv: list[str] | None = None) -> int:
    from gateway.store.db import make_engine

    parser = argparse.ArgumentParser(prog="python -m gateway.store.schema")
    sub = parser.add_subparsers(dest="cmd", required=True)
    rev = sub.add_parser("revision", help="autogenerate a migration from the models")
    rev.add_argument("-m", "--message", required=True)
    rev.add_argument("--rev-id", default=None, help="default: next sequential number (0002, …)")
    rev.add_argument("--url", default=None, help="database to diff against (default: scratch SQLite)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(args.url or f"sqlite:///{tmp}/scratch.db")
        try:
            if args.url is None and head_revisions():
                upgrade(engine)
            elif not is_up_to_date(engine):
                print("error: the database is not at head; run the upgrade first", file=sys.stderr)
                return 1
            path = make_revision(engine, args.message, args.rev_id)
        finally:
            engine.dispose()
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
