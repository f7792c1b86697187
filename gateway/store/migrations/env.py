"""Alembic environment for the gateway. It is driven programmatically by
``gateway.store.schema`` (no ``alembic.ini``): the caller opens a connection
and hands it over in ``config.attributes["connection"]``."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.operations import ops
from sqlalchemy import ForeignKeyConstraint, text
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

import gateway.store.models  # noqa: F401  (registers the tables on SQLModel.metadata)

target_metadata = SQLModel.metadata

# Any constant: serialises concurrent `gateway db upgrade` runs on PostgreSQL.
# (SQLite needs none: the migration transaction starts with BEGIN IMMEDIATE.)
_PG_MIGRATION_LOCK = 0x6761_7465  # "gate"


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    """Render sqlmodel's AutoString as a plain ``sa.String`` so migrations do
    not depend on sqlmodel internals."""
    if type_ == "type" and isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False


def defer_cyclic_foreign_keys(_context: Any, _revision: Any, directives: list[Any]) -> None:
    """Autogenerate hook: a foreign key to a table created later in the same
    migration (a cycle such as inbound_mail.ticket_id <-> ticket.source_mail_id)
    or marked ``use_alter`` cannot go into CREATE TABLE on PostgreSQL. Move it
    to a named ``create_foreign_key`` after all tables (a batch op, so SQLite
    can do it too) and drop it first on downgrade."""
    script = directives[0]
    upgrade, downgrade = script.upgrade_ops, script.downgrade_ops
    created = {o.table_name for o in upgrade.ops if isinstance(o, ops.CreateTableOp)}
    seen: set[str] = set()
    deferred: list[ops.CreateForeignKeyOp] = []
    for op in upgrade.ops:
        if not isinstance(op, ops.CreateTableOp):
            continue
        seen.add(op.table_name)
        keep = []
        for item in op.columns:
            if isinstance(item, ForeignKeyConstraint):
                target = item.elements[0].column.table.name
                if item.use_alter or (target in created and target not in seen):
                    add = ops.CreateForeignKeyOp.from_constraint(item)
                    if add.constraint_name is None:
                        add.constraint_name = f"fk_{op.table_name}_{'_'.join(add.local_cols)}"
                    deferred.append(add)
                    continue
            keep.append(item)
        op.columns = keep
    for add in deferred:
        upgrade.ops.append(ops.ModifyTableOps(add.source_table, [add]))
        drop = ops.DropConstraintOp(add.constraint_name, add.source_table, type_="foreignkey")
        downgrade.ops.insert(0, ops.ModifyTableOps(add.source_table, [drop]))


def run_migrations_online(connection: Connection) -> None:
    is_sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # Batch ops let SQLite ALTER (by rebuilding the table); they are plain
        # ALTERs on PostgreSQL. Autogenerate always renders them.
        render_as_batch=True,
        render_item=render_item,
        process_revision_directives=defer_cyclic_foreign_keys,
        # Alembic assumes SQLite has no transactional DDL (true of pysqlite's
        # default mode, which db.py switches off) and would then commit the
        # version check and each migration separately: two processes starting
        # on a fresh database would both create the tables. One transaction,
        # begun with BEGIN IMMEDIATE by db.py's hook, serialises them.
        transactional_ddl=True,
        compare_type=True,
    )
    raw = connection.connection.dbapi_connection if is_sqlite else None
    if raw is not None:
        # Batch mode rebuilds tables (copy, drop, rename); with foreign keys
        # enforced the DROP would cascade or fail. The pragma is a no-op
        # inside a transaction, so it goes to the driver before BEGIN.
        raw.execute("PRAGMA foreign_keys=OFF")
    try:
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            context.run_migrations()
            if is_sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"migration left foreign key violations: {broken[:5]}")
    finally:
        if raw is not None:
            raw.execute("PRAGMA foreign_keys=ON")


def main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "gateway migrations run through gateway.store.schema (e.g. `gateway db upgrade`), "
            "not the alembic command line"
        )
    if context.is_offline_mode():
        raise RuntimeError("offline (--sql) migrations are not supported")
    run_migrations_online(connection)


main()
