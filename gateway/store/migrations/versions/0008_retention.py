"""retention: when a mail's raw bytes and an outbound mail's render data were
removed, and the indexes the retention job's sweeps use

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 19:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable columns without a default: both databases add them without
    # rewriting the table.
    op.add_column("inbound_mail", sa.Column("raw_removed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("outbound_mail", sa.Column("body_removed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_inbound_mail_raw_kept", "inbound_mail", ["raw_removed_at", "processed_at"])
    op.create_index("ix_inbound_mail_raw_sha256", "inbound_mail", ["raw_sha256"])
    op.create_index("ix_attachment_sha256", "attachment", ["sha256"])
    op.create_index("ix_outbound_mail_body_kept", "outbound_mail", ["body_removed_at", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_outbound_mail_body_kept", table_name="outbound_mail")
    op.drop_index("ix_attachment_sha256", table_name="attachment")
    op.drop_index("ix_inbound_mail_raw_sha256", table_name="inbound_mail")
    op.drop_index("ix_inbound_mail_raw_kept", table_name="inbound_mail")
    with op.batch_alter_table("outbound_mail") as batch:
        batch.drop_column("body_removed_at")
    with op.batch_alter_table("inbound_mail") as batch:
        batch.drop_column("raw_removed_at")
