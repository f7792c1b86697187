"""a ticket's assignee (the agent who looks after it), and the agents'
queue's indexes

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 17:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Batch mode: SQLite adds a column with a foreign key only by rebuilding
    # the table (PostgreSQL gets a plain ALTER TABLE).
    with op.batch_alter_table("ticket") as batch:
        batch.add_column(sa.Column("assignee_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_ticket_assignee_id_account", "account", ["assignee_id"], ["id"])
        batch.create_index("ix_ticket_assignee_status", ["assignee_id", "status"])
    op.create_index("ix_ticket_status_updated", "ticket", ["status", "updated_at"])
    op.create_index("ix_ticket_status_created", "ticket", ["status", "created_at"])
    op.create_index("ix_ticket_status_priority", "ticket", ["status", "priority", "updated_at"])


def downgrade() -> None:
    for name in ("ix_ticket_status_priority", "ix_ticket_status_created", "ix_ticket_status_updated"):
        op.drop_index(name, table_name="ticket")
    with op.batch_alter_table("ticket") as batch:
        batch.drop_index("ix_ticket_assignee_status")
        batch.drop_constraint("fk_ticket_assignee_id_account", type_="foreignkey")
        batch.drop_column("assignee_id")
