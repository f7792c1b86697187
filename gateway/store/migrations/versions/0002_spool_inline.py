"""spool: small messages wait inside their inbound_mail row

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 00:40:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("inbound_mail", sa.Column("raw_inline", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    # Queued messages still inline would lose their bytes: refuse rather
    # than drop them (process the spool first, then downgrade).
    conn = op.get_bind()
    left = conn.execute(sa.text("SELECT count(*) FROM inbound_mail WHERE raw_inline IS NOT NULL")).scalar()
    if left:
        raise RuntimeError(f"{left} spooled messages are stored inline; process them before downgrading")
    with op.batch_alter_table("inbound_mail") as batch:
        batch.drop_column("raw_inline")
