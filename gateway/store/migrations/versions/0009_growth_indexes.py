"""indexes for a store that has grown (issue #17): message_ref by ticket
(the References of the desk's outgoing mail) and the outbox by status and
sending time (the desk-wide hourly cap on mail to unverified addresses);
both had walked whole tables, once per mail sent

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
    # Building each reads its table once (seconds at a few million rows;
    # the gateway is stopped for an upgrade anyway).
    # (ticket_id, id): a ticket's rows in id order, so "its newest n" reads
    # n index entries instead of every Message-ID the desk knows.
    op.create_index("ix_message_ref_ticket_id", "message_ref", ["ticket_id", "id"])
    # (status, sent_at): "sent since an hour ago" is a range of the last
    # hour's rows instead of every mail ever sent.
    op.create_index("ix_outbound_mail_status_sent", "outbound_mail", ["status", "sent_at"])


def downgrade() -> None:
    op.drop_index("ix_outbound_mail_status_sent", table_name="outbound_mail")
    op.drop_index("ix_message_ref_ticket_id", table_name="message_ref")
