"""Everything the desk stores about one person, as one JSON document (GDPR
Art. 15, ``gateway account export``). The rows are the ones ``erasure``
takes (``personal`` selects them for both). Other people's data is left
out where it is not the person's to have: the texts of tickets they did
not report, other people's comments, who else did what (an actor is
``system``, ``agent`` or ``customer`` unless it is the person).

The shape (``FORMAT``, version 1) is documented in the README; keys are
only ever added."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, Text, cast, func, or_, select

from gateway.store.blobs import BlobStore
from gateway.store.personal import Person, address_pattern, comments, own_mails, rate_limit_keys, ticket_roles
from gateway.store.read import iso
from gateway.store.repo import ACCOUNT, ATTACHMENT, COMMENT, EVENT, MAIL, ORG, OUTBOX, TICKET
from gateway.store.tokens import TOKEN
from gateway.store.web import LIMIT, SESSION

FORMAT = "servicedesk-gateway account export"
VERSION = 1

JsonDict = dict[str, Any]


def account_export(conn: Connection, person: Person, files: BlobStore | None, now: dt.datetime) -> JsonDict:
    """The export of ``person``. ``files``: the blob store to include each
    file's and raw mail's bytes from (base64), or None for their metadata
    only."""
    roles = ticket_roles(conn, person)
    tickets = _tickets(conn, person, roles)
    keys = {t["id"]: t["key"] for t in tickets}
    keys.update(_keys(conn, person))
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": iso(now),
        "account": _account(conn, person),
        "tickets": [_without_id(t) for t in _with_files(conn, tickets, files)],
        "comments": _comments(conn, person, keys, files),
        "mail_received": _mail_received(conn, person, keys, files),
        "mail_sent": _mail_sent(conn, person, keys),
        "history": _history(conn, person),
        "sessions": [
            {"created_at": iso(created), "expires_at": iso(expires)}
            for created, expires in conn.execute(
                select(SESSION.c.created_at, SESSION.c.expires_at)
                .where(SESSION.c.account_id == person.id).order_by(SESSION.c.created_at)
            )
        ],
        "signup_tokens": [
            {"purpose": purpose, "created_at": iso(created), "expires_at": iso(expires), "used_at": iso(used)}
            for purpose, created, expires, used in conn.execute(
                select(TOKEN.c.purpose, TOKEN.c.created_at, TOKEN.c.expires_at, TOKEN.c.used_at)
                .where(TOKEN.c.account_id == person.id).order_by(TOKEN.c.id)
            )
        ],
        "rate_limits": [
            {"key": key, "window_start": iso(start), "count": count}
            for key, start, count in conn.execute(
                select(LIMIT.c.key, LIMIT.c.window_start, LIMIT.c.count)
                .where(rate_limit_keys(LIMIT.c.key, person)).order_by(LIMIT.c.key)
            )
        ],
    }


def _account(conn: Connection, person: Person) -> JsonDict:
    row = conn.execute(
        select(ACCOUNT.c.locale, ACCOUNT.c.password_hash.is_not(None), ACCOUNT.c.is_robot,
               ACCOUNT.c.bounced_at, ACCOUNT.c.created_at, ORG.c.name)
        .outerjoin(ORG, ORG.c.id == ACCOUNT.c.organization_id)
        .where(ACCOUNT.c.id == person.id)
    ).one()
    locale, has_password, robot, bounced_at, created_at, org = row
    return {
        "email": person.email,
        "name": person.name,
        "state": person.state,
        "role": person.role,
        "organization": org,
        "locale": locale,
        "created_at": iso(created_at),
        # The hash is stored (argon2id) and never leaves the desk.
        "password": "set (stored as a hash, not exported)" if has_password else "none",
        "automated_sender": bool(robot),
        "bounced_at": iso(bounced_at),
    }


def _tickets(conn: Connection, person: Person, roles: dict[int, set[str]]) -> list[JsonDict]:
    if not roles:
        return []
    rows = conn.execute(
        select(TICKET.c.id, TICKET.c.key, TICKET.c.summary, TICKET.c.description, TICKET.c.request_type,
               TICKET.c.status, TICKET.c.priority, TICKET.c.fields, TICKET.c.created_at, TICKET.c.updated_at,
               ORG.c.name)
        .outerjoin(ORG, ORG.c.id == TICKET.c.organization_id)
        .where(TICKET.c.id.in_(list(roles)))
        .order_by(TICKET.c.number)
    ).all()
    out = []
    for tid, key, summary, description, rtype, status, priority, fields, created, updated, org in rows:
        ticket: JsonDict = {
            "id": tid, "key": key, "roles": sorted(roles[tid]), "summary": summary, "request_type": rtype,
            "status": status, "priority": priority, "shared_with_organization": org,
            "created_at": iso(created), "updated_at": iso(updated),
        }
        if "reporter" in roles[tid]:
            # Their own request: its text and fields are theirs. Of anyone
            # else's ticket they get what identifies it, not its text.
            ticket.update({"description": description, "fields": dict(fields or {}), "attachments": []})
        out.append(ticket)
    return out


def _with_files(conn: Connection, tickets: list[JsonDict], files: BlobStore | None) -> list[JsonDict]:
    """The files of the requests they reported (the description's)."""
    by_ticket = {t["id"]: t for t in tickets if "attachments" in t}
    if by_ticket:
        rows = conn.execute(
            select(ATTACHMENT).where(ATTACHMENT.c.ticket_id.in_(list(by_ticket)),
                                     ATTACHMENT.c.comment_id.is_(None)).order_by(ATTACHMENT.c.id)
        ).mappings().all()
        for row in rows:
            by_ticket[row["ticket_id"]]["attachments"].append(_file(conn, row, files))
    return tickets


def _without_id(ticket: JsonDict) -> JsonDict:
    return {k: v for k, v in ticket.items() if k != "id"}


def _file(conn: Connection, row: Any, files: BlobStore | None) -> JsonDict:
    entry: JsonDict = {
        "filename": row["filename"], "content_type": row["content_type"], "size": row["size"],
        "sha256": row["sha256"], "inline": row["inline"], "created_at": iso(row["created_at"]),
    }
    if files is not None:
        entry["data_base64"] = _bytes(conn, files, row["sha256"])
    return entry


def _bytes(conn: Connection, files: BlobStore, digest: str) -> str | None:
    if not digest:
        return None  # erased
    try:
        return base64.b64encode(files.get(conn, digest)).decode("ascii")
    except KeyError:
        return None


def _keys(conn: Connection, person: Person) -> dict[int, str]:
    """Ticket keys of the comments' and mails' tickets that ``ticket_roles``
    may not list (a mail of theirs threaded into somebody else's ticket)."""
    ids = select(COMMENT.c.ticket_id).where(COMMENT.c.author_id == person.id).union(
        select(MAIL.c.ticket_id).where(MAIL.c.id.in_(own_mails(person))),
        select(OUTBOX.c.ticket_id).where(func.lower(OUTBOX.c.to_addr) == person.email),
    )
    rows = conn.execute(select(TICKET.c.id, TICKET.c.key).where(TICKET.c.id.in_(ids)))
    return {tid: key for tid, key in rows}


def _comments(
    conn: Connection, person: Person, keys: dict[int, str], files: BlobStore | None
) -> list[JsonDict]:
    attached: dict[int, list[JsonDict]] = defaultdict(list)
    for row in conn.execute(
        select(ATTACHMENT).where(ATTACHMENT.c.comment_id.in_(comments(person))).order_by(ATTACHMENT.c.id)
    ).mappings():
        attached[row["comment_id"]].append(_file(conn, row, files))
    return [
        {"ticket": keys.get(tid), "created_at": iso(created), "public": bool(public), "source": source,
         "body": body, "message_id": mid, "attachments": attached.get(cid, [])}
        for cid, tid, created, public, source, body, mid in conn.execute(
            select(COMMENT.c.id, COMMENT.c.ticket_id, COMMENT.c.created_at, COMMENT.c.public,
                   COMMENT.c.source, COMMENT.c.body, COMMENT.c.message_id)
            .where(COMMENT.c.author_id == person.id).order_by(COMMENT.c.created_at, COMMENT.c.id)
        )
    ]


def _mail_received(
    conn: Connection, person: Person, keys: dict[int, str], files: BlobStore | None
) -> list[JsonDict]:
    """The mails they sent the desk: the mail log's line for each, its raw
    bytes only with ``files``."""
    out = []
    for row in conn.execute(
        select(MAIL.c.id, MAIL.c.received_at, MAIL.c.source, MAIL.c.from_addr, MAIL.c.envelope_from,
               MAIL.c.recipient, MAIL.c.message_id, MAIL.c.subject, MAIL.c.status, MAIL.c.disposition,
               MAIL.c.ticket_id, MAIL.c.raw_size, MAIL.c.raw_sha256, MAIL.c.raw_inline)
        .where(MAIL.c.id.in_(own_mails(person))).order_by(MAIL.c.id)
    ).mappings():
        entry: JsonDict = {
            "id": row["id"], "received_at": iso(row["received_at"]), "source": row["source"],
            "from": row["from_addr"], "envelope_from": row["envelope_from"], "to": row["recipient"],
            "message_id": row["message_id"], "subject": row["subject"], "status": row["status"],
            "disposition": row["disposition"], "ticket": keys.get(row["ticket_id"]),
            "raw_size": row["raw_size"],
        }
        if files is not None:
            inline = row["raw_inline"]
            entry["raw_base64"] = (base64.b64encode(bytes(inline)).decode("ascii") if inline is not None
                                   else _bytes(conn, files, row["raw_sha256"]))
        out.append(entry)
    return out


def _mail_sent(conn: Connection, person: Person, keys: dict[int, str]) -> list[JsonDict]:
    """The mails the desk sent (or is to send) them: the outbox's line."""
    return [
        {"id": oid, "created_at": iso(created), "template": template, "subject": subject, "message_id": mid,
         "ticket": keys.get(tid), "status": status, "attempts": attempts, "sent_at": iso(sent),
         "last_error": error}
        for oid, created, template, subject, mid, tid, status, attempts, sent, error in conn.execute(
            select(OUTBOX.c.id, OUTBOX.c.created_at, OUTBOX.c.template, OUTBOX.c.subject,
                   OUTBOX.c.message_id, OUTBOX.c.ticket_id, OUTBOX.c.status, OUTBOX.c.attempts,
                   OUTBOX.c.sent_at, OUTBOX.c.last_error)
            .where(func.lower(OUTBOX.c.to_addr) == person.email).order_by(OUTBOX.c.id)
        )
    ]


def _history(conn: Connection, person: Person) -> list[JsonDict]:
    """History entries about them: what they did, and what names them (a
    ticket shared with them, assigned to them)."""
    # The text search finds candidates; the whole address decides.
    names_them = or_(
        cast(EVENT.c.from_value, Text).icontains(person.email, autoescape=True),
        cast(EVENT.c.to_value, Text).icontains(person.email, autoescape=True),
    )
    address = address_pattern(person.email)
    rows = conn.execute(
        select(EVENT.c.ticket_id, EVENT.c.at, EVENT.c.action, EVENT.c.actor_id, ACCOUNT.c.role,
               EVENT.c.from_value, EVENT.c.to_value, EVENT.c.source, TICKET.c.key)
        .join(TICKET, TICKET.c.id == EVENT.c.ticket_id)
        .outerjoin(ACCOUNT, ACCOUNT.c.id == EVENT.c.actor_id)
        .where(or_(EVENT.c.actor_id == person.id, names_them))
        .order_by(EVENT.c.id)
    ).all()
    return [
        {"ticket": key, "at": iso(at), "action": action,
         "actor": person.email if actor_id == person.id else ("system" if actor_id is None else role),
         "from": old, "to": new, "source": source}
        for _tid, at, action, actor_id, role, old, new, source, key in rows
        if actor_id == person.id or address.search(json.dumps([old, new]))
    ]
