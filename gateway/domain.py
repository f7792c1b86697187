"""Plain types shared by every layer: the parsed mail, dispositions and the
few exceptions that steer the pipeline (Mailman style: a stage raises
``Ignore`` or ``Quarantine`` instead of returning flags)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

# The vocabularies live in a light module of their own (see its docstring);
# every layer may keep importing them from here.
from gateway.vocabulary import (
    AccountState as AccountState,
    MailStatus as MailStatus,
    OutboxStatus as OutboxStatus,
    Priority as Priority,
    RequestType as RequestType,
    Role as Role,
    TicketStatus as TicketStatus,
)


@dataclass(frozen=True)
class ParsedAttachment:
    """One attachment or inline part. ``filename`` is for display only and is
    already sanitised (no directories, no control characters)."""

    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None  # without angle brackets
    inline: bool = False

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class DeliveryReport:
    """What a DSN (multipart/report; report-type=delivery-status) says."""

    failed_recipients: tuple[str, ...]
    original_message_id: str | None
    status: str | None = None


@dataclass
class ParsedMail:
    """Everything later stages need from one message; produced by
    ``pipeline.parse`` (in a worker process, so it must stay picklable).

    Addresses are normalised (lower case, no display name); message ids keep
    their angle brackets, e.g. ``<abc@host>``.
    """

    message_id: str | None
    subject: str
    from_addr: str
    from_name: str = ""
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    reply_to: list[str] = field(default_factory=list)
    in_reply_to: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    date: dt.datetime | None = None
    # Lower-cased header name -> list of decoded values, for the headers the
    # screen and identify stages look at (auto-submitted, precedence, list-id,
    # return-path, x-priority, importance, authentication-results, ...).
    headers: dict[str, list[str]] = field(default_factory=dict)
    text: str = ""  # readable plain text (from text/plain, else from HTML)
    html: str | None = None
    reply_text: str = ""  # ``text`` minus quoted history, marker, signature
    attachments: list[ParsedAttachment] = field(default_factory=list)
    report: DeliveryReport | None = None  # set for delivery status notifications
    defects: list[str] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        """First value of a header (name is case-insensitive), or None."""
        values = self.headers.get(name.lower())
        return values[0] if values else None


class PipelineSignal(Exception):
    """Base of the exceptions a stage raises to end processing early."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Ignore(PipelineSignal):
    """The message has no effect (auto-reply, bounce, duplicate, ...)."""


class Quarantine(PipelineSignal):
    """The message cannot be processed; keep it for an operator."""


class TemporaryFailure(Exception):
    """Trouble that may pass (database locked or down, disk full):
    exit 75 / SMTP 451, try again later."""


class Refused(Exception):
    """An operator's action was refused; the message says why (CLI exit 1).
    Defined here so the command line can catch it without importing the
    module that raises it."""


@dataclass(frozen=True)
class Disposition:
    """The outcome of processing one message, as shown in ``mail list``."""

    status: MailStatus
    what: str  # "created", "commented", "ignored: auto-reply", "quarantined: <reason>"
    ticket_id: int | None = None
    key: str | None = None  # the ticket it names (for "created" and "commented")

    @property
    def text(self) -> str:
        """As the mail log shows it: "created SD-12", "ignored: auto-reply"."""
        return f"{self.what} {self.key}" if self.key is not None else self.what

    @classmethod
    def created(cls, key: str, ticket_id: int) -> Disposition:
        return cls(MailStatus.done, "created", ticket_id, key)

    @classmethod
    def commented(cls, key: str, ticket_id: int) -> Disposition:
        return cls(MailStatus.done, "commented", ticket_id, key)

    def with_key(self, key: str) -> Disposition:
        """The same outcome naming its ticket by ``key`` (a new ticket's
        real key, once it is numbered: see ``store/numbering.py``)."""
        return self if self.key is None or self.key == key else replace(self, key=key)

    @classmethod
    def ignored(cls, reason: str, ticket_id: int | None = None) -> Disposition:
        return cls(MailStatus.ignored, f"ignored: {reason}", ticket_id)

    @classmethod
    def quarantined(cls, reason: str) -> Disposition:
        return cls(MailStatus.quarantined, f"quarantined: {reason}")


def normalize_address(addr: str) -> str:
    """Canonical form of an e-mail address for lookups: trimmed, lower case,
    without angle brackets."""
    return addr.strip().strip("<>").strip().lower()


def without_subaddress(addr: str) -> str:
    """``servicedesk+sd-12@xitrust.com`` -> ``servicedesk@xitrust.com``: the
    mailbox a sub-address (RFC 5233, ``+tag``) is delivered to."""
    local, at, domain = addr.rpartition("@")
    base = local.split("+", 1)[0]
    return f"{base}@{domain}" if at and base else addr


def is_desk_address(addr: str, desk: frozenset[str]) -> bool:
    """Whether ``addr`` is one of the desk's own addresses (``desk``,
    normalised) or a sub-address of one: mail to it is the desk's, mail
    from it is the desk's own (a loop)."""
    normalized = normalize_address(addr)
    return normalized in desk or without_subaddress(normalized) in desk


def routed_type(routing: Mapping[str, RequestType], recipient: str) -> RequestType | None:
    """The request type ``routing`` (normalised addresses) gives the
    recipient, or its base address when it is a sub-address; None if
    neither is routed."""
    addr = normalize_address(recipient)
    return routing.get(addr) or routing.get(without_subaddress(addr))


def normalize_message_id(mid: str) -> str:
    """``<id>`` form of a Message-ID; whitespace removed."""
    mid = "".join(mid.split())
    if not mid:
        return mid
    if not mid.startswith("<"):
        mid = "<" + mid
    if not mid.endswith(">"):
        mid = mid + ">"
    return mid


# The start of the quarantine reason of an agent's mail the desk cannot
# authenticate (``pipeline.stages``); ``gateway status`` counts them.
AGENT_UNTRUSTED_REASON = "agent mail without trusted authentication"


# -- erased accounts (GDPR Art. 17; ``gateway account erase``) -------------------

# What is left of a person after erasure: the account row stays (their tickets,
# comments and history point at it), under these words instead of a name.
ERASED_NAME = "deleted user"
# What an erased text (a comment, a description) is replaced by.
ERASED_TEXT = "[erased]"


def erased_address(account_id: int) -> str:
    """The address an erased account keeps: unique (as the column must be),
    undeliverable (``.invalid``, RFC 2606) and naming nobody."""
    return f"deleted-user-{account_id}@invalid"


def is_erased_address(addr: str | None) -> bool:
    return addr is not None and addr.startswith("deleted-user-") and addr.endswith("@invalid")


def shown_person(addr: str | None) -> str | None:
    """An account's address as the command line and JSON show it: an
    erased account is "deleted user", whoever it was."""
    return ERASED_NAME if is_erased_address(addr) else addr
