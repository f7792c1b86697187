"""The desk's vocabularies: statuses, priorities, request types, roles (SPEC
§2). Standard library ``enum`` only, so the command-line parser can offer
them as choices without importing anything else (``gateway --help`` starts
as fast as the interpreter). ``domain`` re-exports them."""

from __future__ import annotations

from enum import StrEnum


class MailStatus(StrEnum):
    """Life of an inbound mail in the spool / mail log (SPEC §2)."""

    queued = "queued"
    processing = "processing"
    done = "done"
    ignored = "ignored"
    quarantined = "quarantined"


class TicketStatus(StrEnum):
    waiting_for_support = "waiting_for_support"
    waiting_for_customer = "waiting_for_customer"
    resolved = "resolved"
    closed = "closed"


class Priority(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"
    blocker = "blocker"


class RequestType(StrEnum):
    other = "other"
    technical_support = "technical_support"
    suggest_improvement = "suggest_improvement"


class AccountState(StrEnum):
    unverified = "unverified"
    active = "active"
    disabled = "disabled"


class Role(StrEnum):
    customer = "customer"
    agent = "agent"


class OutboxStatus(StrEnum):
    queued = "queued"
    sent = "sent"
    retrying = "retrying"
    failed = "failed"
    bounced = "bounced"
