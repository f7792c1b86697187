"""SQLModel tables for the concepts of SPEC §2. Names match the spec; the
Alembic migrations in ``store/migrations`` create exactly these tables."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Index,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel
from sqlmodel.sql.sqltypes import AutoString


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def as_utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands timestamps back naive; they were written as UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class Organization(SQLModel, table=True):
    __tablename__ = "organization"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=200)
    share_by_default: bool = False
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class OrganizationDomain(SQLModel, table=True):
    __tablename__ = "organization_domain"

    domain: str = Field(primary_key=True, max_length=255)
    organization_id: int = Field(foreign_key="organization.id", index=True)


class Account(SQLModel, table=True):
    __tablename__ = "account"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(unique=True, max_length=320)  # normalised, lower case
    name: str = Field(default="", max_length=200)
    state: str = Field(default="unverified", max_length=20)
    role: str = Field(default="customer", max_length=20)
    organization_id: int | None = Field(default=None, foreign_key="organization.id", index=True)
    locale: str | None = Field(default=None, max_length=5)
    password_hash: str | None = None
    is_robot: bool = False  # bounced / automated addresses: never mailed
    bounced_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class Ticket(SQLModel, table=True):
    __tablename__ = "ticket"
    # A customer's lists (``read.visible_tickets``): the tickets they
    # reported and those shared with their organization, each an index range
    # that also holds the status (the open/closed filter) and both dates (the
    # sort), so a list reads index entries and only its page's rows. They
    # also serve every lookup by reporter or organization alone.
    __table_args__ = (
        Index("ix_ticket_reporter_status", "reporter_id", "status", "created_at", "updated_at"),
        Index("ix_ticket_organization_status", "organization_id", "status", "created_at", "updated_at"),
        # The agents' queue (``agent_read._page_ids``): one index range per
        # status (and priority) in the sort's order.
        Index("ix_ticket_status_updated", "status", "updated_at"),
        Index("ix_ticket_status_created", "status", "created_at"),
        Index("ix_ticket_status_priority", "status", "priority", "updated_at"),
        # "Mine" and "nobody's", counted per status from the index alone.
        Index("ix_ticket_assignee_status", "assignee_id", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    number: int = Field(unique=True)
    key: str = Field(unique=True, max_length=30)
    request_type: str = Field(max_length=40)
    summary: str = Field(max_length=500)
    description: str = ""
    status: str = Field(default="waiting_for_support", max_length=30, index=True)
    priority: str = Field(default="medium", max_length=20)
    reporter_id: int = Field(foreign_key="account.id")
    organization_id: int | None = Field(default=None, foreign_key="organization.id")
    # The agent who looks after it (None: nobody yet; notifications then go
    # to desk.agent_notify).
    assignee_id: int | None = Field(default=None, foreign_key="account.id")
    fields: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    message_id: str | None = Field(default=None, max_length=998)
    linked_key: str | None = Field(default=None, max_length=30)  # reply to a closed ticket
    # No foreign key: inbound_mail.ticket_id already points the other way,
    # and a cycle would make table creation order ambiguous.
    source_mail_id: int | None = None
    # How the mail behind it was threaded: "new", or "new: <KEY> is closed"
    # (a reply to a closed ticket). None: not from mail.
    threaded_by: str | None = Field(default=None, max_length=1000)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class TicketParticipant(SQLModel, table=True):
    __tablename__ = "ticket_participant"

    ticket_id: int = Field(foreign_key="ticket.id", primary_key=True)
    account_id: int = Field(foreign_key="account.id", primary_key=True, index=True)


class TicketCounter(SQLModel, table=True):
    """One row per prefix; ``UPDATE … RETURNING`` hands out numbers without a
    race between workers or processes."""

    __tablename__ = "ticket_counter"

    prefix: str = Field(primary_key=True, max_length=10)
    value: int = 0


class Comment(SQLModel, table=True):
    __tablename__ = "comment"

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    author_id: int = Field(foreign_key="account.id")
    body: str = ""
    public: bool = True
    source: str = Field(default="email", max_length=20)
    message_id: str | None = Field(default=None, max_length=998)
    inbound_mail_id: int | None = Field(default=None, foreign_key="inbound_mail.id")
    # Why a mail's comment landed on this ticket: "in-reply-to <id>",
    # "references <id>" or "subject SD-12". None: not from mail.
    threaded_by: str | None = Field(default=None, max_length=1000)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class TicketEvent(SQLModel, table=True):
    """The history of a ticket: one row per desk operation (SPEC §4
    "history"), written in the operation's transaction. ``actor_id`` None is
    the desk itself (``system``); ``from_value``/``to_value`` hold what the
    action changed (a status, a priority, the changed fields, who it was
    shared with) as JSON."""

    __tablename__ = "ticket_event"
    __table_args__ = (Index("ix_ticket_event_ticket_id", "ticket_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id")
    at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    actor_id: int | None = Field(default=None, foreign_key="account.id")
    action: str = Field(max_length=20)
    # none_as_null: "no value" is SQL NULL, not the JSON text 'null' (and
    # is not JSON-encoded on every insert).
    from_value: Any = Field(default=None, sa_column=Column(JSON(none_as_null=True), nullable=True))
    to_value: Any = Field(default=None, sa_column=Column(JSON(none_as_null=True), nullable=True))
    source: str = Field(default="email", max_length=20)  # email, cli, web, system
    comment_id: int | None = Field(default=None, foreign_key="comment.id")
    inbound_mail_id: int | None = Field(default=None, foreign_key="inbound_mail.id")


class Attachment(SQLModel, table=True):
    __tablename__ = "attachment"
    __table_args__ = (
        Index("ix_attachment_ticket_sha", "ticket_id", "sha256"),
        # Retention asks whether an attachment has the bytes of a raw mail
        # it is about to remove (an agent may attach the original message).
        Index("ix_attachment_sha256", "sha256"),
    )

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id")
    comment_id: int | None = Field(default=None, foreign_key="comment.id", index=True)
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=255)
    size: int
    sha256: str = Field(max_length=64)
    content_id: str | None = Field(default=None, max_length=998)
    inline: bool = False
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class InboundMail(SQLModel, table=True):
    """The spool and the mail log: every accepted message."""

    __tablename__ = "inbound_mail"
    __table_args__ = (
        Index("ix_inbound_mail_status_id", "status", "id"),
        # Retention (``store/retention.py``): the processed mail whose raw
        # bytes are still kept, oldest first, without walking the ever
        # growing range of mail whose bytes are gone; and whether other mail
        # still uses the same (content-addressed) bytes.
        Index("ix_inbound_mail_raw_kept", "raw_removed_at", "processed_at"),
        Index("ix_inbound_mail_raw_sha256", "raw_sha256"),
    )

    id: int | None = Field(default=None, primary_key=True)
    received_at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    source: str = Field(max_length=20)  # smtp, lmtp, imap, ingest
    envelope_from: str | None = Field(default=None, max_length=320)
    recipient: str | None = Field(default=None, max_length=320)
    trusted: bool = False
    raw_sha256: str = Field(max_length=64)
    raw_size: int
    message_id: str | None = Field(default=None, max_length=998, index=True)
    from_addr: str | None = Field(default=None, max_length=320)
    subject: str | None = Field(default=None, max_length=998)
    status: str = Field(default="queued", max_length=20)
    disposition: str | None = Field(default=None, max_length=500)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    error: str | None = None
    attempts: int = 0
    claimed_by: str | None = Field(default=None, max_length=100)
    claimed_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    processed_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # The raw bytes of a small message while it waits in the spool: accepting
    # it is then one row in one commit, not a file created and synced per
    # message (the listener's largest cost). The worker moves them to the
    # blob store (raw_sha256) when it processes the mail and clears this.
    # Last column: SQLite reads a row's columns in order.
    raw_inline: bytes | None = Field(default=None, sa_type=LargeBinary)
    # When retention removed the raw bytes ([retention] raw_mail_days); the
    # row stays as the mail log's entry. After raw_inline because a
    # migration added it (only processed mail, whose raw_inline is NULL, has it).
    raw_removed_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class ProcessedKey(SQLModel, table=True):
    """One row per message that had an effect; its primary key makes a second
    copy of the same message (same Message-ID, sender and content) a no-op
    even when two workers process both copies at once."""

    __tablename__ = "processed_key"

    key: str = Field(primary_key=True, max_length=64)
    inbound_mail_id: int = Field(foreign_key="inbound_mail.id")


class MessageRef(SQLModel, table=True):
    """Every Message-ID the desk knows (inbound and outbound) and its ticket:
    what In-Reply-To / References are looked up in."""

    __tablename__ = "message_ref"
    # A ticket's own Message-IDs, newest first (the References of the mail
    # the desk sends, ``outbox.recent_thread_ids``). Without it both
    # databases walk the whole table backwards by id looking for the
    # ticket's few rows: 0.2 s a sent mail at two million refs.
    __table_args__ = (Index("ix_message_ref_ticket_id", "ticket_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(max_length=998, index=True)
    ticket_id: int = Field(foreign_key="ticket.id")
    direction: str = Field(default="inbound", max_length=10)


class OutboundMail(SQLModel, table=True):
    """The outbox: every mail the gateway sends (queued by ``notify``)."""

    __tablename__ = "outbound_mail"
    __table_args__ = (
        Index("ix_outbound_mail_status_due", "status", "next_attempt_at"),
        # Retention: mail whose render data is still kept, oldest first.
        Index("ix_outbound_mail_body_kept", "body_removed_at", "created_at"),
        # What went out since a time (the desk-wide hourly cap on mail to
        # unverified addresses, asked before every automatic mail is sent):
        # the last hour's rows, not every mail ever sent (0.33 s a mail with
        # a million sent rows; ``bench/bench_growth.py --history --flush``).
        Index("ix_outbound_mail_status_sent", "status", "sent_at"),
        # One address's mail of the last hour or day (the per-recipient
        # caps, asked for every notification and every automatic mail
        # sent): a range of its recent rows, not its whole history (15 ms
        # a notification at 50,000 mails to one address, 0.09 ms with it).
        # They also serve every lookup by address alone.
        Index("ix_outbound_mail_to_created", "to_addr", "created_at"),
        Index("ix_outbound_mail_to_sent", "to_addr", "sent_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    to_addr: str = Field(max_length=320)
    template: str = Field(max_length=60)
    locale: str = Field(default="de", max_length=5)
    subject: str | None = Field(default=None, max_length=998)
    message_id: str | None = Field(default=None, max_length=998, index=True)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    # The inbound mail whose processing queued this one (None: CLI, jobs).
    cause_mail_id: int | None = Field(default=None, foreign_key="inbound_mail.id", index=True)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    automatic: bool = True
    status: str = Field(default="queued", max_length=20)
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    sent_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # When retention cleared ``data`` ([retention] outbox_days): the mail can
    # no longer be rendered, so it is never sent again.
    body_removed_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class Blob(SQLModel, table=True):
    """Blob bytes when ``storage.blobs = "database"``."""

    __tablename__ = "blob"

    sha256: str = Field(primary_key=True, max_length=64)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class SignupToken(SQLModel, table=True):
    """Single-use tokens; only their SHA-256 is stored."""

    __tablename__ = "signup_token"
    __table_args__ = (UniqueConstraint("token_sha256"),)

    id: int | None = Field(default=None, primary_key=True)
    token_sha256: str = Field(max_length=64)
    account_id: int = Field(foreign_key="account.id", index=True)
    purpose: str = Field(max_length=30)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    expires_at: dt.datetime = Field(sa_type=DateTime(timezone=True))
    used_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class WebSession(SQLModel, table=True):
    """A signed-in browser. The cookie carries a random id; only its SHA-256
    is stored (a copy of the table signs nobody in). In the database, not in
    a process, so that several portal processes and instances share them."""

    __tablename__ = "web_session"

    id_sha256: str = Field(primary_key=True, max_length=64)
    account_id: int = Field(foreign_key="account.id", index=True)
    csrf_token: str = Field(max_length=64)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    expires_at: dt.datetime = Field(sa_type=DateTime(timezone=True), index=True)


class RateLimit(SQLModel, table=True):
    """A counter per key (``login:<address>``, ``client:<ip>``) and hour
    window: sign-in, signup and reset requests are limited across every
    portal process."""

    __tablename__ = "rate_limit"

    key: str = Field(primary_key=True, max_length=200)
    window_start: dt.datetime = Field(sa_type=DateTime(timezone=True))
    count: int = 0


class ImapCursor(SQLModel, table=True):
    """Where an IMAP poller is in one mailbox folder; written in the same
    transaction as the spool rows it fetched, so a crash never skips mail."""

    __tablename__ = "imap_cursor"

    mailbox: str = Field(primary_key=True, max_length=500)  # user@host:port/folder
    uidvalidity: int = Field(default=0, sa_type=BigInteger)
    last_uid: int = Field(default=0, sa_type=BigInteger)
    last_success_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    last_error: str | None = None
    last_error_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class GatewayInstance(SQLModel, table=True):
    """A running ``gateway serve`` (several may share one PostgreSQL):
    registered at start, its heartbeat written every few seconds, removed
    at a clean stop. An instance whose heartbeat is older than
    ``[instance] lease_seconds`` is dead: its leases and claims go to
    the others."""

    __tablename__ = "gateway_instance"

    name: str = Field(primary_key=True, max_length=200)
    host: str = Field(max_length=255)
    pid: int
    version: str = Field(default="", max_length=50)
    started_at: dt.datetime = Field(sa_type=DateTime(timezone=True))
    heartbeat_at: dt.datetime = Field(sa_type=DateTime(timezone=True))


class SharedSecret(SQLModel, table=True):
    """Keys every instance must agree on (the portal's signing key when
    ``security.secret_key`` is not configured): the first instance's
    generated key, which the others adopt."""

    __tablename__ = "shared_secret"

    name: str = Field(primary_key=True, max_length=50)
    value: str = Field(max_length=200)


class Lease(SQLModel, table=True):
    """Work that one instance at a time may do (an IMAP mailbox's poller):
    held by ``holder`` until ``expires_at``, which the holder's heartbeat
    moves on."""

    __tablename__ = "lease"

    name: str = Field(primary_key=True, max_length=600)  # e.g. imap:user@host:993/INBOX
    holder: str = Field(max_length=200)
    acquired_at: dt.datetime = Field(sa_type=DateTime(timezone=True))
    expires_at: dt.datetime = Field(sa_type=DateTime(timezone=True))


# -- text from mail in text columns ----------------------------------------------


class SafeText(TypeDecorator[str]):
    """Every text column: values are written without NUL characters (which
    PostgreSQL's text types cannot hold: one NUL in a Message-ID once failed
    a whole spool batch), without lone surrogates (not encodable), and cut
    to the column's length (PostgreSQL refuses a longer value; SQLite would
    keep it). Mail text needs all three; for any other value they change
    nothing. The same on both backends, so what SQLite stores PostgreSQL
    stores."""

    impl = String
    cache_ok = True

    def __init__(self, length: int | None = None) -> None:
        super().__init__(length)
        self.length = length

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if "\x00" in value:
            value = value.replace("\x00", "")
        length = self.length
        if length is not None and len(value) > length:
            value = value[:length]
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                value = value.encode("utf-8", "replace").decode("utf-8")
        return value


def _safe_text_columns() -> None:
    """Give every string column of the tables above the SafeText type (same
    SQL type and length, so the migrations are unchanged). Done once at
    import, before any statement is compiled."""
    for table in SQLModel.metadata.tables.values():
        for column in table.columns:
            if isinstance(column.type, String | AutoString) and not isinstance(column.type, SafeText):
                length = getattr(column.type, "length", None)
                column.type = SafeText(length)


_safe_text_columns()
