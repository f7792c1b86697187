"""message_ref by ticket: the newest Message-IDs of a ticket (the References
of the desk's outgoing mail) from an index range instead of a walk over
every Message-ID the desk knows

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 19:40:00

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # (ticket_id, id): the rows of one ticket in id order, so "newest
    # first, at most n" reads n index entries. Building it reads the table
    # once (seconds at a few million rows; the gateway is stopped for an
    # upgrade anyway).
    op.create_index("ix_message_ref_ticket_id", "message_ref", ["ticket_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_message_ref_ticket_id", table_name="message_ref")
