"""Render one outbox row into an ``EmailMessage``: jinja2 templates (subject,
text, HTML as multipart/alternative) in the recipient's locale, threading
headers, loop-protection headers and header values that cannot carry a line
break.

Two rules shape this module:

* **Never echo to strangers.** Whether a mail may contain ticket text (the
  summary, a comment) is decided here, at render time, from the recipient
  account's state: only ``active`` accounts get it. An ``unverified``
  address (anyone can write to the desk in someone else's name, "Ticket
  Trick") only ever gets the ticket key and fixed text.
* **No header injection.** Python's email package (3.11.7, CVE-2024-6923
  family) decodes encoded words when a header is assigned and folded, so a
  ``=?utf-8?q?…=0D=0A…?=`` inside any value could come out as a real line
  break. So: text headers (Subject, display names) go through
  ``clean_header_text``, which decodes encoded words *before* removing
  control characters; ids and addresses are never given to the email
  package to parse at all but written as the raw strings they are
  (``RawHeader``), after a strict syntax check; and every rendered mail's
  header block is parsed back and must hold exactly the headers the desk
  set (``check_header_block``), or the mail is not sent.
"""

from __future__ import annotations

import datetime as dt
import email.errors
import email.header
import email.parser
import email.policy
import email.utils
import re
import unicodedata
from dataclasses import dataclass
from email.message import EmailMessage

import jinja2
from sqlalchemy import Connection

from gateway.domain import AccountState, Role
from gateway.outbound.templates import make_environment, template_names
from gateway.pipeline.reply_text import REPLY_MARKER_DE, REPLY_MARKER_EN
from gateway.settings import Settings
from gateway.store import outbox
from gateway.store.blobs import BlobStore
from gateway.store.outbox import OutboxRow
from gateway.store.repo import AccountRow

MARKERS = {"de": REPLY_MARKER_DE, "en": REPLY_MARKER_EN}
LOCALES = frozenset(MARKERS)
# Acknowledgements answer a customer's mail (RFC 3834 "auto-replied");
# everything else the desk sends on its own initiative.
AUTO_REPLIED = frozenset({"request_created", "signup_invitation"})
TEMPLATES = frozenset(
    {"signup_confirmation", "signup_invitation", "request_created", "comment_added", "status_changed",
     "ticket_shared", "account_exists", "password_reset", "agent_notice"}
)
STATUS_EVENTS = frozenset({"resolved", "closed", "reopened"})
AGENT_EVENTS = frozenset({"created", "commented"})

MAX_SUMMARY = 200
MAX_COMMENT = 20_000
MAX_REFERENCES = 10

_ENCODED_WORD = re.compile(r"=\?[^?\s]{1,40}\?[bBqQ]\?[^?]*\?=")
_ENCODED_WORD_GAP = re.compile(r"(\?=)\s+(=\?)")
# Printable ASCII without angle brackets, as RFC 5322 ids are; anything else
# in an inbound Message-ID is not repeated in our headers.
_MESSAGE_ID = re.compile(r"^<[\x21-\x3b\x3d\x3f-\x7e]{1,250}>$")
_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x85\u2028\u2029]")


class RenderError(Exception):
    """The row cannot become a mail (bad address, unknown template): a
    permanent failure, retrying would not help."""


# -- sanitising -------------------------------------------------------------


def _decode_words(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        try:
            parts = email.header.decode_header(m.group(0))
            return "".join(
                p.decode(cs or "ascii", "replace") if isinstance(p, bytes) else p for p, cs in parts
            )
        except (LookupError, ValueError, email.errors.HeaderParseError):
            return ""

    # Adjacent encoded words are one word (RFC 2047 6.2): drop the gap first.
    return _ENCODED_WORD.sub(one, _ENCODED_WORD_GAP.sub(r"\1\2", text))


def clean_header_text(value: str, limit: int = MAX_SUMMARY) -> str:
    """``value`` as one harmless line for a header: encoded words decoded
    (repeatedly: a double-encoded one hides a newline one level down), every
    control, format and line/paragraph separator character turned into a
    space, whitespace collapsed, leftover ``=?`` broken up so the email
    package has nothing left to decode, and at most ``limit`` characters."""
    text = value
    for _ in range(4):
        decoded = _decode_words(text)
        if decoded == text:
            break
        text = decoded
    text = "".join(" " if unicodedata.category(ch)[0] in "CZ" and ch != " " else ch for ch in text)
    text = " ".join(text.split()).replace("=?", "= ?")
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def clean_body_text(value: str, limit: int = MAX_COMMENT) -> str:
    """Comment text for a body: line breaks normalised, other control
    characters removed, bounded length."""
    text = _BODY_CONTROL.sub("", value.replace("\r\n", "\n").replace("\r", "\n")).strip("\n")
    if len(text) > limit:
        text = text[:limit].rstrip() + "\n[…]"
    return text


def clean_message_id(value: str | None) -> str | None:
    """A Message-ID we may repeat in In-Reply-To/References, or None."""
    if not value:
        return None
    value = value.strip()
    return value if _MESSAGE_ID.match(value) else None


def desk_domain(settings: Settings) -> str:
    return settings.desk.addresses[0].rpartition("@")[2] or "localhost"


def new_message_id(settings: Settings) -> str:
    """A fresh Message-ID on the desk's domain (so a reply is recognisably
    an answer to us)."""
    return email.utils.make_msgid(idstring="sd", domain=desk_domain(settings))


# An addr-spec we write as it is: a dot-atom local part and a domain of
# letters, digits, hyphens and dots, in ASCII. (An internationalised domain
# is converted to its A-labels first; a non-ASCII local part would need
# SMTPUTF8, which the desk does not send.)
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDR_SPEC = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9](?:[A-Za-z0-9.-]{{0,251}}[A-Za-z0-9])?")


class RawHeader:
    """A header value the email package stores and writes as it is: an
    object with a ``name`` is taken as a finished header by
    ``EmailPolicy.header_store_parse``, and its ``fold`` is what is written.
    Nothing decodes it, so nothing in it can turn into a line break."""

    def __init__(self, name: str, value: str) -> None:
        if any(ch in value for ch in "\r\n\0") or not value.isascii():
            raise RenderError(f"{name}: not a plain ASCII value")
        self.name = name
        self.value = value

    def __str__(self) -> str:
        return self.value

    def fold(self, *, policy: email.policy.Policy) -> str:
        # Long id lists fold at the spaces between ids (RFC 5322 3.2.2).
        line, lines = f"{self.name}:", []
        for word in self.value.split(" "):
            if len(line) + 1 + len(word) > 78 and line != f"{self.name}:":
                lines.append(line)
                line = ""
            line += " " + word
        lines.append(line)
        return (policy.linesep or "\n").join(lines) + (policy.linesep or "\n")


def plain_addr_spec(addr: str) -> str:
    """``addr`` as an addr-spec safe to write literally; RenderError if it
    is not one (a stored address that only a lax parser accepted)."""
    local, _, domain = addr.strip().rpartition("@")
    try:
        domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        raise RenderError(f"invalid address {addr!r}") from None
    spec = f"{local}@{domain}"
    if not _ADDR_SPEC.fullmatch(spec) or "=?" in spec:
        raise RenderError(f"invalid address {addr!r}")
    return spec


def _address(name: str, addr: str) -> str:
    """``Display Name <addr>`` with the name as an encoded word when it is
    not plain ASCII; the address is written as it is."""
    spec = plain_addr_spec(addr)
    display = clean_header_text(name, 100)
    if not display:
        return spec
    if display.isascii():
        quoted = display.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" <{spec}>'
    return f"{email.header.Header(display, 'utf-8').encode()} <{spec}>"


def from_address(settings: Settings) -> str:
    name, addr = email.utils.parseaddr(settings.outbound.from_)
    if not addr:
        raise RenderError("outbound.from has no address")
    return _address(name, addr)


# -- what a mail says ----------------------------------------------------------


@dataclass(frozen=True)
class MailContext:
    """Everything one mail shows; ticket text is already None for an
    unverified recipient."""

    template: str
    locale: str
    to_addr: str
    to_name: str
    verified: bool
    ticket_key: str | None
    summary: str | None
    comment: str | None
    author: str | None
    event: str | None
    signup_url: str | None
    message_id: str
    in_reply_to: str | None
    references: tuple[str, ...]
    # The recipient reported the ticket ("your request"), or is on it
    # through sharing ("the request").
    own: bool = True
    # Who changed the status, when a customer did (a colleague, not the desk).
    by: str | None = None
    # A public comment's files: attached (name, type, bytes) up to
    # outbound.max_attachments_size together, the rest as portal links
    # (name, URL). Neither for an unverified recipient.
    attachments: tuple[tuple[str, str, bytes], ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    # An unverified recipient was sent a signup link once: the mail may
    # point to "the link from our invitation". A colleague who wrote to a
    # shared ticket never got one, and is sent to the signup page instead.
    invited: bool = False


def load_context(
    conn: Connection,
    settings: Settings,
    row: OutboxRow,
    account: AccountRow | None,
    message_id: str,
    signup_url: str | None,
    blobs: BlobStore | None = None,
) -> MailContext:
    """Read the ticket, comment and thread of ``row`` and decide what the
    recipient may see."""
    verified = account is not None and account.state == AccountState.active
    if row.template == "agent_notice":
        # An agent, or an address the operator listed in desk.agent_notify
        # (a team mailbox without an account): the full text.
        verified = account is None or account.role == Role.agent
    locale = row.locale if row.locale in LOCALES else settings.desk.default_locale
    key = summary = comment = author = None
    ticket_mid: str | None = None
    own = True
    attachments: tuple[tuple[str, str, bytes], ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    if row.ticket_id is not None:
        t = outbox.ticket_for_mail(conn, row.ticket_id)
        if t is not None:
            key, ticket_mid = t.key, t.message_id
            own = t.reporter_email == row.to_addr
            if verified:
                summary = clean_header_text(t.summary or "")
    if key is None:
        key = row.data.get("ticket_key") if isinstance(row.data.get("ticket_key"), str) else None
    comment_mid: str | None = None
    comment_id = row.data.get("comment_id")
    if row.template == "agent_notice" and verified and row.ticket_id is not None:
        description, reporter_name, reporter_email = outbox.ticket_text(conn, row.ticket_id)
        comment = clean_body_text(description)
        author = clean_header_text(reporter_name or reporter_email, 100)
    if row.template in ("comment_added", "agent_notice") and isinstance(comment_id, int):
        c = outbox.comment_for_mail(conn, comment_id)
        if c is None or not c.public:
            raise RenderError(f"comment {comment_id} is gone or internal")
        comment_mid = c.message_id
        if verified:
            comment = clean_body_text(c.body or "")
            who = c.author_name or (settings.desk.name if c.author_role == Role.agent else c.author_email)
            author = clean_header_text(who, 100)
            attachments, links = _comment_files(conn, settings, comment_id, blobs)
    in_reply_to, references = _thread(conn, row, ticket_mid, comment_mid, message_id)
    invited = not verified and outbox.signup_link_sent(conn, row.to_addr)
    events = AGENT_EVENTS if row.template == "agent_notice" else STATUS_EVENTS
    event = row.data.get("event") if row.data.get("event") in events else None
    if row.template == "status_changed" and event is None:
        raise RenderError("status_changed without a known event")
    return MailContext(
        template=row.template,
        locale=locale,
        to_addr=row.to_addr,
        to_name=account.name if verified and account is not None else "",
        verified=verified,
        ticket_key=key,
        summary=summary,
        comment=comment,
        author=author,
        event=event,
        signup_url=signup_url,
        message_id=message_id,
        in_reply_to=in_reply_to,
        references=references,
        own=own,
        by=clean_header_text(by, 100) if verified and isinstance(by := row.data.get("by"), str) else None,
        attachments=attachments,
        links=links,
        invited=invited,
    )


def _comment_files(
    conn: Connection, settings: Settings, comment_id: int, blobs: BlobStore | None
) -> tuple[tuple[tuple[str, str, bytes], ...], tuple[tuple[str, str], ...]]:
    """A public comment's files for its mail: attached in order while they
    fit ``outbound.max_attachments_size`` together, linked otherwise (the
    link asks for a sign-in and checks who may see it, like the portal)."""
    attached: list[tuple[str, str, bytes]] = []
    linked: list[tuple[str, str]] = []
    room = settings.outbound.max_attachments_size
    portal = settings.desk.portal_url.rstrip("/")
    for f in outbox.comment_files(conn, comment_id):
        name = clean_header_text(f.filename, 200) or "attachment"
        data = None
        if blobs is not None and f.size <= room:
            try:
                data = blobs.get(conn, f.sha256)
            except KeyError:
                data = None
        if data is not None:
            attached.append((name, f.content_type, data))
            room -= f.size
        else:
            linked.append((name, f"{portal}/attachments/{f.id}"))
    return tuple(attached), tuple(linked)


def _thread(
    conn: Connection,
    row: OutboxRow,
    ticket_mid: str | None,
    comment_mid: str | None,
    own_mid: str,
) -> tuple[str | None, tuple[str, ...]]:
    """In-Reply-To: the message that caused this mail (the customer's mail,
    the comment's mail), else the newest one the ticket knows. References:
    the ticket's first message and the newest known ids, oldest first."""
    if row.ticket_id is None:
        return None, ()
    recent = outbox.recent_thread_ids(conn, row.ticket_id, MAX_REFERENCES * 2)
    cause_mid = None
    if row.cause_mail_id is not None:
        cause_mid = outbox.inbound_message_id(conn, row.cause_mail_id)
    known = [m for m in (clean_message_id(x) for x in reversed(recent)) if m and m != own_mid]
    parent = clean_message_id(cause_mid) or clean_message_id(comment_mid) or (known[-1] if known else None)
    parent = parent or clean_message_id(ticket_mid)
    refs: list[str] = []
    for mid in [clean_message_id(ticket_mid), *known[-(MAX_REFERENCES - 1):], parent]:
        if mid and mid != own_mid and mid not in refs:
            refs.append(mid)
    if parent in refs:  # the parent goes last, as RFC 5322 3.6.4 wants
        refs.remove(parent)
        refs.append(parent)
    return parent, tuple(refs[-MAX_REFERENCES:])


# -- rendering -----------------------------------------------------------------


class Renderer:
    """Turns a MailContext into a message. One per sender; the jinja2
    Environment caches compiled templates."""

    def __init__(self, settings: Settings, env: jinja2.Environment | None = None) -> None:
        self.settings = settings
        self.env = env or make_environment()

    def render(self, ctx: MailContext, now: dt.datetime | None = None) -> EmailMessage:
        if ctx.template not in TEMPLATES:
            raise RenderError(f"unknown template {ctx.template!r}")
        if (ctx.template.startswith("signup_") or ctx.template == "password_reset") and not ctx.signup_url:
            raise RenderError(f"{ctx.template} without its link")
        settings = self.settings
        values = {
            "locale": ctx.locale,
            "desk_name": settings.desk.name,
            "portal_url": settings.desk.portal_url.rstrip("/"),
            "marker": MARKERS[ctx.locale],
            "key": ctx.ticket_key,
            "verified": ctx.verified,
            "name": clean_header_text(ctx.to_name, 100),
            "summary": ctx.summary,
            "comment": ctx.comment,
            "author": ctx.author,
            "event": ctx.event,
            "own": ctx.own,
            "invited": ctx.invited,
            "by": ctx.by,
            "links": ctx.links,
            "signup_url": ctx.signup_url,  # the mail's link (signup or password reset)
            "token_hours": settings.security.signup_token_hours,
            "reset_hours": settings.security.reset_token_hours,
        }
        subject_t, text_t, html_t = template_names(ctx.template, ctx.locale)
        subject = clean_header_text(self.env.get_template(subject_t).render(values), 250)
        values["subject"] = subject
        text = self.env.get_template(text_t).render(values)
        html = self.env.get_template(html_t).render(values)

        msg = EmailMessage(policy=email.policy.SMTP)
        raw = [
            RawHeader("From", from_address(settings)),
            RawHeader("To", _address(ctx.to_name, ctx.to_addr)),
            RawHeader("Reply-To", _address(settings.desk.name, settings.desk.addresses[0])),
        ]
        ids = [RawHeader("Message-ID", _checked_id(ctx.message_id))]
        if ctx.in_reply_to:
            ids.append(RawHeader("In-Reply-To", _checked_id(ctx.in_reply_to)))
        if ctx.references:
            ids.append(RawHeader("References", " ".join(_checked_id(r) for r in ctx.references)))
        for header in raw:
            msg[header.name] = header
        msg["Subject"] = subject
        msg["Date"] = email.utils.format_datetime(now or dt.datetime.now(dt.UTC))
        for header in ids:
            msg[header.name] = header
        msg["Auto-Submitted"] = "auto-replied" if ctx.template in AUTO_REPLIED else "auto-generated"
        # Asks Exchange/Outlook not to answer with out-of-office and
        # read receipts: the first defence against mail loops.
        msg["X-Auto-Response-Suppress"] = "All"
        # quoted-printable: long lines and umlauts survive relays without 8BITMIME.
        msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
        msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
        for name, content_type, data in ctx.attachments:
            maintype, _, subtype = content_type.partition("/")
            if not maintype or not subtype or maintype == "multipart" or maintype == "message":
                maintype, subtype = "application", "octet-stream"
            msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
        # After the parts: set_content moves Content-* headers into them.
        msg["Content-Language"] = ctx.locale
        check_header_block(msg, {h.name: h.value for h in raw + ids})
        return msg


def _checked_id(mid: str) -> str:
    value = clean_message_id(mid)
    if value is None:
        raise RenderError("a Message-ID that is not a plain msg-id")
    return value


# The headers a rendered mail has, in this order, and no other.
_DESK_HEADERS = (
    "from", "to", "reply-to", "subject", "date", "message-id", "in-reply-to", "references",
    "auto-submitted", "x-auto-response-suppress", "mime-version", "content-type", "content-language",
)


def check_header_block(msg: EmailMessage, raw_values: dict[str, str]) -> None:
    """Serialize ``msg``, parse its header block back and compare: exactly
    the desk's headers, each once, ids and addresses byte for byte as set.
    Whatever a value smuggled past the rules above (a line break, a header
    of its own, the end of the header block) shows up here, and the mail
    fails instead of going out."""
    data = msg.as_bytes()
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise RenderError("header block check: no end of the header block")
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(data[: end + 4])
    names = [name.lower() for name in parsed]
    expected = [n for n in _DESK_HEADERS if n in names]
    # (Not parsed.defects: which ones a header block without its body gets
    # differs between Python patch releases; a stray line or an early end of
    # the block shows up in the names.)
    if names != expected or len(set(names)) != len(names):
        raise RenderError(f"header block check: unexpected headers {names}")
    for name, value in raw_values.items():
        got = " ".join(str(parsed.get(name, "")).split())
        if got != value:
            raise RenderError(f"header block check: {name} changed in serialization")


def envelope_sender(settings: Settings) -> str:
    """MAIL FROM: the desk's From address, so bounces (DSNs naming our
    Message-ID) come back to the desk and mark the outbox row."""
    return plain_addr_spec(email.utils.parseaddr(settings.outbound.from_)[1])
