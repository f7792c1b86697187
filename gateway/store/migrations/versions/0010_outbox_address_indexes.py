"""the outbox by address and time (issue #17): the per-recipient caps on
automatic mail, asked for every notification and every automatic mail
sent, read an address's whole history through the plain ``to_addr``
index (15 ms a notification at 50,000 mails to one address); these two
read the last hour's or day's rows and replace that index

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 22:50:00

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # (to_addr, created_at): the notification caps and "was a signup link
    # ever sent"; (to_addr, sent_at): the cap asked before a mail is sent.
    # Each also serves a lookup by address alone, so the old index goes.
    op.create_index("ix_outbound_mail_to_created", "outbound_mail", ["to_addr", "created_at"])
    op.create_index("ix_outbound_mail_to_sent", "outbound_mail", ["to_addr", "sent_at"])
    op.drop_index("ix_outbound_mail_to_addr", table_name="outbound_mail")


def downgrade() -> None:
    op.create_index("ix_outbound_mail_to_addr", "outbound_mail", ["to_addr"])
    op.drop_index("ix_outbound_mail_to_sent", table_name="outbound_mail")
    op.drop_index("ix_outbound_mail_to_created", table_name="outbound_mail")
