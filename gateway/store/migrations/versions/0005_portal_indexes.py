"""the portal's lists: ticket indexes by reporter and by organization that
hold the status and both dates

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 16:00:00

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The new indexes begin with the column of the ones they replace, so every
# lookup by reporter or organization alone keeps an index.
_COVERING = ["status", "created_at", "updated_at"]


def upgrade() -> None:
    op.create_index("ix_ticket_reporter_status", "ticket", ["reporter_id", *_COVERING])
    op.create_index("ix_ticket_organization_status", "ticket", ["organization_id", *_COVERING])
    op.drop_index("ix_ticket_reporter_id", table_name="ticket")
    op.drop_index("ix_ticket_organization_id", table_name="ticket")


def downgrade() -> None:
    op.create_index("ix_ticket_reporter_id", "ticket", ["reporter_id"])
    op.create_index("ix_ticket_organization_id", "ticket", ["organization_id"])
    op.drop_index("ix_ticket_organization_status", table_name="ticket")
    op.drop_index("ix_ticket_reporter_status", table_name="ticket")
