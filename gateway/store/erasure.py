"""Erasing a person (GDPR Art. 17, ``gateway account erase``): the SQL, run
in the caller's transaction. What goes and what stays (README, "Erasure
and export"):

* The account row stays, because tickets, comments and history point at
  it, as ``deleted-user-<id>@invalid`` named "deleted user": disabled,
  without password, locale or organization. Its sessions, signup tokens
  and rate-limit counters go.
* A customer's words go: the text of each of their comments and the
  description of each ticket they reported become "[erased]"; their files
  (rows and bytes) go. A ticket nobody else is on also loses its summary
  and fields. One that others are on (shared with the organization or a
  person, a colleague's or an agent's comment) keeps its summary, the
  subject of everybody's conversation, and stays readable.
* An agent's comments and tickets stay: they are the desk's words to its
  customers, not the agent's private data. Only the name goes.
* The raw mail they sent goes (bytes and subject); their mail still in the
  spool is ``ignored`` (while a worker processes one, the erasure refuses:
  try again). So do the raw bytes of a customer's mail on their tickets, or
  on none, that names them: a Cc, a quote, a bounce. The rest of each
  mail's log line stays.
* Mail the desk sent to them stays as a log line without subject or data;
  what was still to be sent never is.
* Everywhere else their address becomes the placeholder address and their
  full name "deleted user": other people's comments, summaries, subjects,
  Message-IDs and history entries, which keep their structure.

Every ticket whose text changed gets an ``erased`` history entry (actor
``system``), and a newer ``updated_at``: an agent's form opened before the
erasure is then refused as "changed meanwhile" instead of writing old
fields back."""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Text, and_, cast, delete, func, or_, select, union, update

from gateway.domain import (
    ERASED_NAME,
    ERASED_TEXT,
    MailStatus,
    OutboxStatus,
    TemporaryFailure,
    erased_address,
    normalize_address,
)
from gateway.store.blobs import BlobStore, DatabaseBlobStore
from gateway.store.models import utcnow
from gateway.store.personal import (
    Person,
    address_pattern,
    comments,
    find_person,
    others_on,
    own_mails,
    rate_limit_keys,
    reported,
)
from gateway.store.repo import (
    ACCOUNT,
    ATTACHMENT,
    COMMENT,
    DUE_STATUSES,
    ERASED_RAW,
    EVENT,
    MAIL,
    MESSAGE_REF,
    OUTBOX,
    PARTICIPANT,
    TICKET,
    insert_events,
)
from gateway.store.tokens import TOKEN
from gateway.store.web import LIMIT, SESSION

# The columns of kept rows where text may name the person (their own rows
# are handled first). A test searches every text column of every table.
_TEXT_COLUMNS = (
    (TICKET, "summary"), (TICKET, "description"), (TICKET, "message_id"), (TICKET, "threaded_by"),
    (COMMENT, "body"), (COMMENT, "message_id"), (COMMENT, "threaded_by"),
    (ATTACHMENT, "filename"),
    (MAIL, "envelope_from"), (MAIL, "from_addr"), (MAIL, "subject"), (MAIL, "message_id"),
    (MAIL, "disposition"), (MAIL, "error"),
    (MESSAGE_REF, "message_id"),
    (OUTBOX, "to_addr"), (OUTBOX, "subject"), (OUTBOX, "message_id"), (OUTBOX, "last_error"),
)
_JSON_COLUMNS = ((TICKET, "fields"), (EVENT, "from_value"), (EVENT, "to_value"), (OUTBOX, "data"))

# Mail whose processing is over: its raw bytes are only a record.
_FINISHED = (MailStatus.done.value, MailStatus.ignored.value, MailStatus.quarantined.value)
# What becomes of a mail that was still waiting (queued, quarantined) once its bytes are gone.
_SENDER_ERASED = "ignored: sender's data erased"
_NAMING_ERASED = "ignored: raw mail erased (it named an erased person)"
RECIPIENT_ERASED = "recipient's data erased"


class Mentions:
    """How kept text names the person, and what it says instead: their
    address (in any case) becomes the placeholder address, their full name
    (two words or more, as whole words) "deleted user", and so does a JSON
    value that is exactly their name (a "by" in a mail's data). A first
    name alone is too common to replace in other people's words."""

    def __init__(self, person: Person, placeholder: str) -> None:
        self.email = person.email
        self.placeholder = placeholder
        self.name = " ".join(person.name.split())
        self._address = address_pattern(person.email)
        self._address_bytes = re.compile(self._address.pattern.encode("utf-8"), re.IGNORECASE)
        words = self.name.split()
        self._full_name = (
            re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, words)) + r"(?!\w)", re.IGNORECASE)
            if len(words) >= 2 else None
        )

    def needles(self, json_column: bool) -> list[str]:
        """What a row that names them contains (searched in any case)."""
        found = [self.email]
        if self.name and (self._full_name is not None or json_column):
            found.append(self.name)
            escaped = json.dumps(self.name)[1:-1]  # JSON text holds "M\u00fcller"
            if json_column and escaped != self.name:
                found.append(escaped)
        return found

    def text(self, value: str) -> str:
        value = self._address.sub(self.placeholder, value)
        return self._full_name.sub(ERASED_NAME, value) if self._full_name is not None else value

    def value(self, value: Any) -> Any:
        """A JSON value with every string in it treated as ``text``."""
        if isinstance(value, str):
            if self.name and " ".join(value.split()).casefold() == self.name.casefold():
                return ERASED_NAME
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {self.text(k): self.value(v) for k, v in value.items()}
        return value

    def in_raw(self, raw: bytes) -> bool:
        """Whether a raw message names them (headers or an 8-bit body;
        an encoded name is not found, the address usually is)."""
        if self._address_bytes.search(raw):
            return True
        return self._full_name is not None and self.name.lower().encode("utf-8") in raw.lower()


def involved_tickets(person: Person) -> Any:
    """The ids of the tickets they reported, were shared with, commented
    on or are assigned to (a subquery)."""
    return union(
        reported(person),
        select(PARTICIPANT.c.ticket_id).where(PARTICIPANT.c.account_id == person.id),
        select(COMMENT.c.ticket_id).where(COMMENT.c.author_id == person.id),
        select(TICKET.c.id).where(TICKET.c.assignee_id == person.id),
    )


@dataclass(frozen=True)
class Prescan:
    """What the erasure learns from mails' raw bytes, read before its
    transaction (no writer should wait for that reading)."""

    # Other people's mails on the tickets a customer takes part in, or on
    # no ticket (bounces, auto-replies, the quarantine), whose bytes name
    # them. None for an agent: customers' mails quote the desk's answers,
    # which are not the agent's to take.
    naming: list[int]
    # Their mails still in the spool (queued, or being processed): nothing
    # but the From header says whose they are yet.
    waiting: list[int]


def prescan(conn: Connection, person: Person, blobs: BlobStore) -> Prescan:
    return Prescan(_mails_naming(conn, person, blobs), _waiting_mails(conn, person, blobs))


def _waiting_mails(conn: Connection, person: Person, blobs: BlobStore) -> list[int]:
    found = []
    for mail_id, inline, digest in conn.execute(
        select(MAIL.c.id, MAIL.c.raw_inline, MAIL.c.raw_sha256)
        .where(MAIL.c.status.in_((MailStatus.queued.value, MailStatus.processing.value)))
        .order_by(MAIL.c.id)
    ):
        try:
            raw = bytes(inline) if inline is not None else blobs.get(conn, digest)
        except KeyError:
            continue
        if _sender(raw) == person.email:
            found.append(mail_id)
    return found


def _sender(raw: bytes) -> str:
    """The address in a raw message's From header (normalised), or ""."""
    # The header parser stops at the header block's end; the cut only
    # spares it a huge message.
    headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw[:262144])
    return normalize_address(email.utils.parseaddr(str(headers.get("From", "")))[1])


def _mails_naming(conn: Connection, person: Person, blobs: BlobStore) -> list[int]:
    if person.is_agent:
        return []
    mentions = Mentions(person, erased_address(person.id))
    own = {i for (i,) in conn.execute(own_mails(person))}
    candidates = conn.execute(
        select(MAIL.c.id, MAIL.c.raw_sha256)
        .where(MAIL.c.status.in_(_FINISHED), MAIL.c.raw_sha256 != ERASED_RAW)
        .where(or_(MAIL.c.ticket_id.in_(involved_tickets(person)), MAIL.c.ticket_id.is_(None)))
        .order_by(MAIL.c.id)
    ).all()
    verdicts: dict[str, bool] = {}  # identical bytes are stored (and read) once
    found = []
    for mail_id, digest in candidates:
        if mail_id in own:
            continue
        if digest not in verdicts:
            try:
                verdicts[digest] = mentions.in_raw(blobs.get(conn, digest))
            except KeyError:
                verdicts[digest] = False
        if verdicts[digest]:
            found.append(mail_id)
    return found


def lock_person(conn: Connection, email: str) -> Person | None:
    """The person, their account row locked (PostgreSQL; SQLite has one
    writer anyway) until the end of the transaction: a second erasure of
    the account, or any change to it, waits for this one."""
    conn.execute(select(ACCOUNT.c.id).where(ACCOUNT.c.email == email).with_for_update())
    return find_person(conn, email)


def erase(
    conn: Connection, person: Person, scanned: Prescan, blobs: BlobStore, *, delete_blobs: bool
) -> dict[str, int]:
    """Erase ``person`` (see the module's docstring) in the caller's
    transaction; returns what was done, counted. ``scanned``: from
    ``prescan``. ``delete_blobs`` False leaves the blob store alone
    (a rehearsal, rolled back by the caller, which counts all the same).

    Blob files are deleted here, before the caller commits: if the commit
    then fails, rows of the person point at missing bytes, and erasing
    again finishes the job; the other order could leave their bytes behind
    with nothing pointing at them, out of reach of any later erasure."""
    placeholder = erased_address(person.id)
    now = utcnow()
    counts: Counter[str] = Counter()
    digests: set[str] = set()
    parts: dict[int, list[str]] = defaultdict(list)  # ticket -> what of it was erased

    mails = conn.execute(
        select(MAIL.c.id, MAIL.c.raw_sha256, MAIL.c.status)
        .where(or_(MAIL.c.id.in_(own_mails(person)), MAIL.c.id.in_(scanned.waiting))).with_for_update()
    ).all()
    busy = [str(i) for i, _, status in mails if status == MailStatus.processing]
    if busy:
        # A worker holds it: erasing now could let it write their text back.
        raise TemporaryFailure(f"mail {', '.join(busy)} from {person.email} is being processed; try again")

    if not person.is_agent:
        _erase_words(conn, person, parts, digests, counts)
    else:
        counts["comments_kept"] = len(conn.execute(comments(person)).all())

    own_ids = [i for i, _, _ in mails]
    digests |= {sha for _, sha, _ in mails if sha}
    counts["own_mails_erased"] = _erase_raw(conn, own_ids, _SENDER_ERASED)
    if own_ids:
        conn.execute(update(MAIL).where(MAIL.c.id.in_(own_ids)).values(subject=None))
    naming = sorted(set(scanned.naming) - set(own_ids))
    digests |= {sha for (sha,) in conn.execute(select(MAIL.c.raw_sha256).where(MAIL.c.id.in_(naming)))}
    counts["mails_naming_erased"] = _erase_raw(conn, naming, _NAMING_ERASED)

    counts["mail_to_them_erased"] = _erase_outbox(conn, person, placeholder)
    counts["tickets_unassigned"] = _unassign(conn, person, placeholder)

    counts["sessions_ended"] = _rowcount(
        conn.execute(delete(SESSION).where(SESSION.c.account_id == person.id))
    )
    counts["tokens_deleted"] = _rowcount(conn.execute(delete(TOKEN).where(TOKEN.c.account_id == person.id)))
    counts["rate_limits_deleted"] = _rowcount(conn.execute(
        delete(LIMIT).where(rate_limit_keys(LIMIT.c.key, person))
    ))
    conn.execute(update(ACCOUNT).where(ACCOUNT.c.id == person.id).values(
        email=placeholder, name=ERASED_NAME, state="disabled", password_hash=None, locale=None,
        organization_id=None, bounced_at=None,
    ))

    if parts:
        insert_events(conn, [
            {"ticket_id": tid, "action": "erased", "actor_id": None, "source": "cli",
             "to_value": "; ".join(what)}
            for tid, what in sorted(parts.items())
        ])
        conn.execute(update(TICKET).where(TICKET.c.id.in_(list(parts))).values(updated_at=now))
    counts["tickets_changed"] = len(parts)

    counts["mentions_replaced"] = _replace_mentions(conn, Mentions(person, placeholder))

    unused = digests - _referenced(conn, digests)
    if delete_blobs and unused and isinstance(blobs, DatabaseBlobStore):
        # A put of the same bytes (someone's new mail) holds its lock until
        # its row is committed: lock what is to go, then look again, and the
        # look sees that row. (Only those: bytes others use stay unlocked,
        # so a worker storing them never waits for the erasure.)
        blobs.lock(conn, unused)
        unused -= _referenced(conn, unused)
    orphans = sorted(unused)
    if delete_blobs:
        for digest in orphans:
            blobs.delete(conn, digest)
    counts["blobs_deleted"] = len(orphans)
    return dict(counts)


def _erase_words(
    conn: Connection, person: Person, parts: dict[int, list[str]], digests: set[str], counts: Counter[str]
) -> None:
    """A customer's texts and files (module docstring)."""
    shared = others_on(conn, person)
    mine = [tid for (tid,) in conn.execute(reported(person).order_by(TICKET.c.id))]
    alone = [tid for tid in mine if tid not in shared]
    kept = [tid for tid in mine if tid in shared]
    if alone:
        conn.execute(update(TICKET).where(TICKET.c.id.in_(alone))
                     .values(summary=ERASED_TEXT, description=ERASED_TEXT, fields={}))
        _erase_field_history(conn, alone)
        # A mail's subject repeats the ticket's summary.
        conn.execute(update(OUTBOX).where(OUTBOX.c.ticket_id.in_(alone)).values(subject=None))
        for tid in alone:
            parts[tid] += ["summary", "description", "fields"]
    if kept:
        conn.execute(update(TICKET).where(TICKET.c.id.in_(kept)).values(description=ERASED_TEXT))
        for tid in kept:
            parts[tid].append("description")
    counts["tickets_erased"] = len(alone)
    counts["descriptions_erased"] = len(kept)

    written = conn.execute(
        select(COMMENT.c.id, COMMENT.c.ticket_id).where(COMMENT.c.author_id == person.id)
    ).all()
    if written:
        conn.execute(update(COMMENT).where(COMMENT.c.author_id == person.id).values(body=ERASED_TEXT))
    for tid, n in sorted(Counter(tid for _, tid in written).items()):
        parts[tid].append(_plural(n, "comment"))
    counts["comments_erased"] = len(written)

    files = conn.execute(
        select(ATTACHMENT.c.id, ATTACHMENT.c.ticket_id, ATTACHMENT.c.sha256).where(or_(
            ATTACHMENT.c.comment_id.in_(comments(person)),
            and_(ATTACHMENT.c.comment_id.is_(None), ATTACHMENT.c.ticket_id.in_(reported(person))),
        ))
    ).all()
    if files:
        conn.execute(delete(ATTACHMENT).where(ATTACHMENT.c.id.in_([i for i, _, _ in files])))
    for tid, n in sorted(Counter(tid for _, tid, _ in files).items()):
        parts[tid].append(_plural(n, "file"))
    digests |= {sha for _, _, sha in files}
    counts["files_deleted"] = len(files)


def _erase_field_history(conn: Connection, ticket_ids: list[int]) -> None:
    """The ``fields`` history of tickets whose fields were erased keeps
    which fields changed, not their values."""
    rows = conn.execute(
        select(EVENT.c.id, EVENT.c.from_value, EVENT.c.to_value)
        .where(EVENT.c.ticket_id.in_(ticket_ids), EVENT.c.action == "fields")
    ).all()
    for event_id, old, new in rows:
        conn.execute(update(EVENT).where(EVENT.c.id == event_id).values(
            from_value=_erased_values(old), to_value=_erased_values(new),
        ))


def _erased_values(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: None if v is None else ERASED_TEXT for k, v in value.items()}
    return None if value is None else ERASED_TEXT


def _erase_raw(conn: Connection, mail_ids: list[int], disposition: str) -> int:
    """Drop the raw bytes of mails (the caller deletes the blobs); one
    still waiting (queued, quarantined) can no longer be processed and is
    ``ignored``."""
    if not mail_ids:
        return 0
    conn.execute(
        update(MAIL).where(MAIL.c.id.in_(mail_ids), MAIL.c.status.in_(("queued", "quarantined")))
        .values(status=MailStatus.ignored.value, disposition=disposition, claimed_by=None, claimed_at=None,
                processed_at=utcnow())
    )
    return _rowcount(conn.execute(
        update(MAIL).where(MAIL.c.id.in_(mail_ids)).values(raw_inline=None, raw_sha256=ERASED_RAW, raw_size=0)
    ))


def _erase_outbox(conn: Connection, person: Person, placeholder: str) -> int:
    """Mail to them: a log line without subject or data, its error a note
    of the erasure; what was due is never sent."""
    to_them = func.lower(OUTBOX.c.to_addr) == person.email
    conn.execute(update(OUTBOX).where(to_them, OUTBOX.c.status.in_(DUE_STATUSES)).values(
        status=OutboxStatus.failed.value, next_attempt_at=None,
    ))
    return _rowcount(conn.execute(update(OUTBOX).where(to_them).values(
        to_addr=placeholder, subject=None, data={}, last_error=RECIPIENT_ERASED,
    )))


def _unassign(conn: Connection, person: Person, placeholder: str) -> int:
    """An erased agent looks after no ticket: while it has an assignee that
    cannot be told, a ticket's news would reach nobody."""
    ids = [tid for (tid,) in conn.execute(select(TICKET.c.id).where(TICKET.c.assignee_id == person.id))]
    if not ids:
        return 0
    conn.execute(update(TICKET).where(TICKET.c.id.in_(ids)).values(assignee_id=None, updated_at=utcnow()))
    insert_events(conn, [
        {"ticket_id": tid, "action": "assignee", "actor_id": None, "source": "cli",
         "from_value": placeholder, "to_value": None}
        for tid in ids
    ])
    return len(ids)


def _replace_mentions(conn: Connection, mentions: Mentions) -> int:
    """Replace their address and name in every kept row that names them;
    the number of rows changed. Candidates are found in SQL (a scan of
    each column: erasures are rare), the replacement is made here."""
    changed = 0
    columns = [(t, c, False) for t, c in _TEXT_COLUMNS] + [(t, c, True) for t, c in _JSON_COLUMNS]
    for table, name, is_json in columns:
        column = table.c[name]
        searched = cast(column, Text) if is_json else column
        needles = mentions.needles(is_json)
        rows = conn.execute(
            select(table.c.id, column).where(or_(*(searched.icontains(n, autoescape=True) for n in needles)))
        ).all()
        for row_id, value in rows:
            new = mentions.value(value) if is_json else mentions.text(value)
            if new != value:
                conn.execute(update(table).where(table.c.id == row_id).values({name: new}))
                changed += 1
    return changed


def _referenced(conn: Connection, digests: Iterable[str]) -> set[str]:
    """The digests among ``digests`` that a row still refers to: identical
    bytes are stored once, and may be someone else's file or mail too."""
    wanted = list(digests)
    if not wanted:
        return set()
    found = {d for (d,) in conn.execute(select(ATTACHMENT.c.sha256).where(ATTACHMENT.c.sha256.in_(wanted)))}
    found |= {d for (d,) in conn.execute(select(MAIL.c.raw_sha256).where(MAIL.c.raw_sha256.in_(wanted)))}
    return found


def _rowcount(result: Any) -> int:
    return int(result.rowcount or 0)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")
