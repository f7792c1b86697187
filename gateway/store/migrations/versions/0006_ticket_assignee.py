"""a ticket's assignee (the agent who looks after it)

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
        batch.create_index("ix_ticket_assignee_id", ["assignee_id"])


def downgrade() -> None:
    with op.batch_alter_table("ticket") as batch:
        batch.drop_index("ix_ticket_assignee_id")
        batch.drop_constraint("fk_ticket_assignee_id_account", type_="foreignkey")
        batch.drop_column("assignee_id")
