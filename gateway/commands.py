"""The commands of ``gateway`` (SPEC §4), each a function of the App and the
parsed arguments that prints a table or one JSON document and returns the
exit code; ``run`` maps every failure to one line on stderr. ``cli.py``
parses the arguments and imports this module only when a command runs, so
``--help`` and the ``ingest`` hand-off never pay for what is imported here."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import errno
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from gateway.domain import Refused, TemporaryFailure
from gateway.exits import EX_FAIL, EX_OK, EX_SOFTWARE, EX_TEMPFAIL, EX_USAGE, CommandError, error
from gateway.settings import ConfigError, load_settings
from gateway.store import read
from gateway.store.db import connect_failure, is_transient, reading, transaction

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from gateway.app import App
    from gateway.desk.operations import Actor, Desk, Done
    from gateway.settings import Settings
    from gateway.store.repo import TicketRow


# -- output helpers -----------------------------------------------------


def _cell(value: object, width: int) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    else:
        text = "".join(ch if ch.isprintable() else " " for ch in " ".join(str(value).split()))
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]], max_width: int = 48) -> str:
    """Columns padded to their widest cell; cells on one line, truncated to
    ``max_width`` characters (the last column gets twice that)."""
    limits = [max_width] * (len(headers) - 1) + [max_width * 2]
    cells = [[_cell(v, limits[i]) for i, v in enumerate(row)] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _short_time(iso: str | None) -> str | None:
    """``2026-11-27T09:30:12+00:00`` -> ``2026-11-27 09:30`` (UTC)."""
    return iso[:16].replace("T", " ") if iso else None


def _print_json(data: Any) -> None:
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
    print(json.dumps(data, indent=2, ensure_ascii=encoding != "utf8"))


def _print_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    print(format_table(headers, list(rows)))


def _print_pairs(pairs: Iterable[tuple[str, object]]) -> None:
    items = list(pairs)
    width = max(len(k) for k, _ in items)
    for key, value in items:
        print(f"{key.ljust(width)}  {_cell(value, 200)}")


# -- commands -----------------------------------------------------------


def cmd_serve(app: App, args: argparse.Namespace) -> int:
    # ops: the daemon re-reads this file on SIGHUP (None: $GATEWAY_CONFIG).
    from gateway.daemon import serve

    return serve(app, config_path=args.config)


def cmd_web(app: App, args: argparse.Namespace) -> int:
    """The portal alone, e.g. under a unit of its own (``gateway serve``
    runs it too, unless ``[web] listen = ""``)."""
    from gateway.web.server import run_alone

    if not app.settings.web.listen:
        raise CommandError("[web] listen is empty: nothing to serve", EX_USAGE)
    app.ensure_schema()
    return run_alone(app.settings)


# --- ops: `gateway status` ------------------------------------------------


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{s}s ago"
    if s < 7200:
        return f"{s // 60}m ago"
    if s < 172800:
        return f"{s // 3600}h ago"
    return f"{s // 86400}d ago"


def _since(iso: str | None, now: dt.datetime) -> str:
    if not iso:
        return "never"
    return f"{_short_time(iso)} ({_ago((now - dt.datetime.fromisoformat(iso)).total_seconds())})"


def _imap_state(app: App, polled: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every configured mailbox, polled or not yet, then cursors of mailboxes
    no longer configured (their history is still worth seeing)."""
    by_key = {box["mailbox"]: box for box in polled}
    out: list[dict[str, Any]] = []
    for cfg in app.settings.imap:
        key = cfg.key
        box = by_key.pop(key, None) or {"mailbox": key, "last_success_at": None, "last_error": None,
                                        "last_error_at": None, "failing": False}
        out.append({**box, "configured": True})
    out += [{**box, "configured": False} for box in by_key.values()]
    return out


def _daemon_here(settings: Settings) -> dict[str, Any]:
    """Whether a ``gateway serve`` answers on this host: its hand-off socket
    (only a gateway serves it), else anything on the SMTP listen address."""
    import socket

    from gateway.web.server import parse_listen

    path = settings.smtp.socket
    if path:
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            sock.connect(path)
            return {"running": True, "how": f"answers on {path}"}
    host, port = parse_listen(settings.smtp.listen)
    with contextlib.suppress(OSError), socket.create_connection((host or "127.0.0.1", port), timeout=0.5):
        return {"running": True, "how": f"something answers on {settings.smtp.listen}"
                                       + (f" (not on {path})" if path else "")}
    return {"running": False, "how": f"nothing answers on {settings.smtp.listen}"
                                     + (f" or {path}" if path else "")}


def cmd_status(app: App, args: argparse.Namespace) -> int:
    now = dt.datetime.now(dt.UTC)
    from gateway.store import instances

    with reading(app.engine) as session:
        st = read.status_json(session, now)
        lease_for = dt.timedelta(seconds=app.settings.instance.lease_seconds)
        st["instances"] = instances.listing(session.connection(), now, lease_for)
    st["imap"] = _imap_state(app, st["imap"])
    st["daemon"] = _daemon_here(app.settings)
    if args.json:
        _print_json(st)
        return EX_OK
    spool, inbound, outbox = st["spool"], st["inbound"], st["outbox"]
    oldest = f", oldest queued {_ago(spool['oldest_queued_age_seconds'])}" if spool["queued"] else ""
    daemon = st["daemon"]
    pairs: list[tuple[str, object]] = [
        ("daemon", ("running on this host" if daemon["running"] else "not running on this host")
                   + f" ({daemon['how']})"),
        ("spool", f"{spool['depth']} waiting ({spool['queued']} queued, {spool['processing']} processing)"
                  + oldest),
        ("quarantined", f"{st['quarantined']}" + ("  (gateway mail list --status quarantined)"
                                                  if st["quarantined"] else "")),
        ("agent mail not trusted", f"{st['quarantined_agent_mail']}" + (
            "  (quarantined: configure security.trusted_authserv_id or a trusted listener/mailbox)"
            if st["quarantined_agent_mail"] else "")),
        ("processed", f"{inbound['done']} done, {inbound['ignored']} ignored"),
        ("last received", _since(st["last_received_at"], now)),
        ("outbox", f"{outbox['failed']} failed, {outbox['retrying']} retrying, {outbox['queued']} queued, "
                   f"{outbox['sent']} sent, {outbox['bounced']} bounced"),
        ("backscatter cap", "{waiting} waiting, {dropped} dropped (mail to unverified addresses)".format(
            **st["outbox_unverified_capped"])),
    ]
    for box in st["imap"]:
        if box["last_success_at"] is None and not box["last_error"]:
            text = "not polled yet"
        else:
            state = "FAILING" if box["failing"] else "ok"
            text = f"{state}; last success {_since(box['last_success_at'], now)}"
        if box["last_error"]:
            text += f"; last error {_since(box['last_error_at'], now)}: {box['last_error']}"
        if not box["configured"]:
            text += " (no longer configured)"
        pairs.append((f"imap {box['mailbox']}", text))
    if not st["imap"]:
        pairs.append(("imap", "no mailbox configured ([[imap]])"))
    for inst in st["instances"]:
        state = "running" if inst["alive"] else "NO HEARTBEAT"
        text = (f"{state}; pid {inst['pid']} on {inst['host']}, started {_since(inst['started_at'], now)}, "
                f"heartbeat {_since(inst['heartbeat_at'], now)}, {inst['claims']} mails in processing")
        polls = [lease.removeprefix("imap:") for lease in inst["leases"] if lease.startswith("imap:")]
        if polls:
            text += "; polls " + ", ".join(polls)
        if "retention" in inst["leases"]:  # jobs.RETENTION_LEASE
            text += "; does retention"
        pairs.append((f"instance {inst['name']}", text))
    _print_pairs(pairs)
    return EX_OK


# --- end ops


def cmd_ingest(app: App, args: argparse.Namespace) -> int:
    progress = sys.stderr.isatty() and not args.no_progress
    # args.stdin: what a hand-off to the daemon already read (cli._hand_off)
    return app.ingest(args.paths, args.recipient, progress=progress, stdin=getattr(args, "stdin", None))


def cmd_db_upgrade(app: App, args: argparse.Namespace) -> int:
    app.db_upgrade()
    print("database schema is up to date", file=sys.stderr)
    return EX_OK


def cmd_org_create(app: App, args: argparse.Namespace) -> int:
    from gateway import admin

    with transaction(app.engine) as session:
        org = admin.create_org(session, args.name, args.domains, args.share_by_default)
        name = org.name
    doms = ", ".join(sorted({admin.normalize_domain(d) for d in args.domains})) or "none"
    print(f"created organization {name!r} (domains: {doms})")
    return EX_OK


def cmd_org_add_member(app: App, args: argparse.Namespace) -> int:
    from gateway import admin

    with transaction(app.engine) as session:
        account, created = admin.add_member(session, args.name, args.email)
        email = account.email
    extra = " (new unverified account)" if created else ""
    print(f"added {email} to {args.name!r}{extra}")
    return EX_OK


def cmd_org_list(app: App, args: argparse.Namespace) -> int:
    with reading(app.engine) as session:
        orgs = read.org_list(session)
    if args.json:
        _print_json(orgs)
    else:
        _print_table(
            ["name", "domains", "shared", "members"],
            ([o["name"], ", ".join(o["domains"]), o["share_by_default"], o["members"]] for o in orgs),
        )
    return EX_OK


def cmd_account_list(app: App, args: argparse.Namespace) -> int:
    with reading(app.engine) as session:
        accounts = _more(read.account_list(
            session, role=args.role, state=args.state, org=args.org, since=args.since,
            limit=None if args.limit is None else args.limit + 1, offset=args.offset,
        ), args)
    if args.json:
        _print_json(accounts)
    else:
        _print_table(
            ["email", "name", "state", "role", "organization", "locale", "created"],
            (
                [a["email"], a["name"], a["state"], a["role"], a["organization"], a["locale"],
                 _short_time(a["created_at"])]
                for a in accounts
            ),
        )
    return EX_OK


def cmd_account_show(app: App, args: argparse.Namespace) -> int:
    with reading(app.engine) as session:
        account = read.account_show(session, args.email)
    if args.json:
        _print_json(account)
    else:
        _print_pairs(
            [(k, v) for k, v in account.items() if k != "tickets"]
            + [("tickets", ", ".join(account["tickets"]) or None)]
        )
    return EX_OK


def cmd_ticket_list(app: App, args: argparse.Namespace) -> int:
    with reading(app.engine) as session:
        tickets = read.ticket_list(
            session, status=args.status, org=args.org, reporter=args.reporter, assignee=args.assignee,
            sort=args.sort, limit=args.limit, offset=max(0, args.offset),
        )
    if args.json:
        _print_json(tickets)
    else:
        _print_table(
            ["key", "status", "priority", "type", "reporter", "organization", "assignee", "updated",
             "summary"],
            (
                [t["key"], t["status"], t["priority"], t["request_type"], t["reporter"],
                 t["organization"], t["assignee"], _short_time(t["updated_at"]), t["summary"]]
                for t in tickets
            ),
        )
    return EX_OK


def cmd_ticket_show(app: App, args: argparse.Namespace) -> int:
    with reading(app.engine) as session:
        data = read.ticket_json(session, read.get_ticket(session, args.key))
    if args.json:
        _print_json(data)
        return EX_OK
    print(f"{data['key']}  {_cell(data['summary'], 200)}")
    _print_pairs(
        [
            ("status", data["status"]),
            ("priority", data["priority"]),
            ("type", data["request_type"]),
            ("reporter", data["reporter"]),
            ("organization", data["organization"]),
            ("participants", ", ".join(data["participants"]) or None),
            ("linked", data["linked_key"]),
            ("message-id", data["message_id"]),
            ("created", _short_time(data["created_at"])),
            ("updated", _short_time(data["updated_at"])),
        ]
        + [(f"field {k}", v) for k, v in sorted(data["fields"].items())]
    )
    print()
    print(data["description"].rstrip() or "(no description)")
    _print_attachments(data["attachments"])
    for n, c in enumerate(data["comments"], 1):
        visibility = "public" if c["public"] else "INTERNAL"
        print(f"\n--- comment {n}  {_short_time(c['created_at'])}  {c['author']}  ({visibility})")
        print(c["body"].rstrip())
        _print_attachments(c["attachments"])
    return EX_OK


def _print_attachments(attachments: list[dict[str, Any]]) -> None:
    if attachments:
        print("attachments:")
        for a in attachments:
            print(f"  {_cell(a['filename'], 60)}  {a['content_type']}  {a['size']} bytes  {a['sha256'][:12]}")


def cmd_ticket_comment(app: App, args: argparse.Namespace) -> int:
    body = _read_body(args.file)
    if not body.strip():
        raise CommandError("empty comment: nothing to add")
    with reading(app.engine) as session:
        key = read.get_ticket(session, args.key).key
    comment_id = app.comment(key, args.as_email, body, args.internal)
    kind = "internal comment" if args.internal else "comment"
    print(f"added {kind} {comment_id} to {key}")
    return EX_OK


def _read_body(path: str | None) -> str:
    try:
        if path is None or path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as fh:
                data = fh.read()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(f"comment text in {path or 'stdin'} is not UTF-8") from None


def cmd_ticket_transition(app: App, args: argparse.Namespace) -> int:
    from gateway.desk import operations

    done = app.operate(args.key, args.as_email, operations.transition, args.status)
    if not done.changed:  # says so, rather than a "resolved -> resolved" that changed nothing
        print(f"{done.ticket.key}: already {args.status}, unchanged")
    else:
        print(f"{done.ticket.key}: {done.ticket.status} -> {args.status}")
    return EX_OK


def cmd_ticket_set(app: App, args: argparse.Namespace) -> int:
    from gateway.desk import operations

    fields = dict(_field_assignment(text) for text in args.fields)
    if args.priority is None and args.request_type is None and not fields:
        raise CommandError("nothing to set: give --priority, --type or --field")

    def change(conn: Connection, desk: Desk, actor: Actor, ticket: TicketRow) -> Done:
        done = operations.Done(ticket=ticket, changed=False)
        if args.priority is not None:
            done = operations.set_priority(conn, desk, actor, ticket, args.priority)
        if args.request_type is not None:
            done = operations.set_request_type(conn, desk, actor, ticket, args.request_type)
        if fields:
            done = operations.set_fields(conn, desk, actor, ticket, fields)
        return done

    done = app.operate(args.key, args.as_email, change)
    print(f"{done.ticket.key}: updated")
    return EX_OK


def _field_assignment(text: str) -> tuple[str, Any]:
    """``NAME=VALUE``: a JSON list or string value is taken as such (for the
    list fields: ``browser=["firefox","edge"]``), anything else as text."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise CommandError(f"--field takes NAME=VALUE, not {text!r}")
    if value.startswith(("[", '"')):
        try:
            parsed = json.loads(value)
        except ValueError:
            raise CommandError(f"--field {name}: not valid JSON: {value}") from None
        if isinstance(parsed, str) or (isinstance(parsed, list) and all(isinstance(v, str) for v in parsed)):
            return name, parsed
        raise CommandError(f"--field {name}: a string or a list of strings")
    return name, value


def cmd_ticket_assign(app: App, args: argparse.Namespace) -> int:
    from gateway.desk import operations

    assignee = None if args.assignee.strip().lower() == "none" else args.assignee
    done = app.operate(args.key, args.as_email, operations.assign, assignee)
    key = done.ticket.key
    print(f"{key}: assigned to {assignee or 'nobody'}" if done.changed else f"{key}: unchanged")
    return EX_OK


def cmd_ticket_share(app: App, args: argparse.Namespace) -> int:
    from gateway.desk import operations

    done = app.operate(args.key, args.as_email, operations.share, args.target)
    key = done.ticket.key
    print(f"{key}: shared with {args.target}" if done.changed else f"{key}: unchanged")
    return EX_OK


def cmd_ticket_unshare(app: App, args: argparse.Namespace) -> int:
    from gateway.desk import operations

    done = app.operate(args.key, args.as_email, operations.unshare, args.target)
    print(f"{done.ticket.key}: no longer shared with {args.target}" if done.changed
          else f"{done.ticket.key}: unchanged")
    return EX_OK


def _window(args: argparse.Namespace) -> read.Window:
    """The listing's window; one row more than asked, to tell whether
    there are more (``_more``)."""
    limit = None if args.limit is None else args.limit + 1
    return read.Window(since=args.since, limit=limit, offset=args.offset, newest=args.newest)


def _more(items: list[Any], args: argparse.Namespace) -> list[Any]:
    """``items`` cut to ``--limit``; a table's reader is told on stderr
    where the next page starts (JSON stays one plain list)."""
    if args.limit is None or len(items) <= args.limit:
        return items
    if not args.json:
        print(f"gateway: more than {args.limit}: the next with --offset {args.offset + args.limit}",
              file=sys.stderr)
    return items[: args.limit]


def cmd_mail_list(app: App, args: argparse.Namespace) -> int:
    with reading(app.engine) as session:
        mails = read.mail_list(session, status=args.status, sender=args.sender, window=_window(args))
    mails = _more(mails, args)
    if args.json:
        _print_json(mails)
    else:
        _print_table(
            ["id", "received", "source", "from", "status", "ticket", "disposition"],
            (
                [m["id"], _short_time(m["received_at"]), m["source"], m["from"], m["status"],
                 m["ticket"], m["disposition"]]
                for m in mails
            ),
        )
    return EX_OK


def cmd_mail_show(app: App, args: argparse.Namespace) -> int:

    with reading(app.engine) as session:
        mail = read.get_mail(session, args.id)
        if not args.raw:
            data = read.mail_detail(session, mail)
    if args.raw:
        from gateway.retention import removed_note
        from gateway.store.spool import RawMailErased, RawMailRemoved

        try:
            raw = app.spool.read_raw(args.id)  # queued: still in its row
        except RawMailRemoved as gone:
            note = removed_note(gone.processed_at, gone.removed_at)
            raise CommandError(f"the raw message of mail {args.id} was {note}") from None
        except RawMailErased as erased:
            raise CommandError(f"{erased} (gateway account erase)") from None
        except KeyError:
            raise CommandError(f"raw bytes of mail {args.id} are missing from the blob store") from None
        sys.stdout.flush()
        sys.stdout.buffer.write(raw)
        sys.stdout.buffer.flush()
    elif args.json:
        _print_json(data)
    else:
        _print_pairs(_with_raw_note(data).items())
    return EX_OK


def _with_raw_note(data: dict[str, Any]) -> dict[str, Any]:
    """``mail show``'s pairs, saying in words when retention removed the raw message."""
    removed = data.get("raw_removed_at")
    if not removed:
        return data
    from gateway.retention import removed_note

    processed = data.get("processed_at")
    return {**data, "raw_removed_at": removed_note(
        dt.datetime.fromisoformat(processed) if processed else None, dt.datetime.fromisoformat(removed))}


def cmd_mail_reprocess(app: App, args: argparse.Namespace) -> int:
    ids = list(dict.fromkeys(args.ids))
    with reading(app.engine) as session:
        missing = read.missing_mail_ids(session, ids)
    if missing:
        raise read.NotFound("mail not found: " + ", ".join(str(i) for i in missing))
    results = app.reprocess(ids)
    if args.json:
        _print_json([{"id": i, "disposition": d} for i, d in results])
    else:
        _print_table(["id", "disposition"], results)
    return EX_OK


def cmd_outbox_list(app: App, args: argparse.Namespace) -> int:
    with reading(app.engine) as session:
        items = _more(read.outbox_list(session, status=args.status, to=args.to, template=args.template,
                                       window=_window(args)), args)
    if args.json:
        _print_json(items)
    else:
        _print_table(
            ["id", "to", "template", "ticket", "status", "attempts", "last error", "subject"],
            (
                [o["id"], o["to"], o["template"], o["ticket"], o["status"], o["attempts"],
                 o["last_error"], o["subject"]]
                for o in items
            ),
        )
    return EX_OK


def cmd_outbox_retry(app: App, args: argparse.Namespace) -> int:
    from gateway import admin

    with transaction(app.engine) as session:
        out = admin.retry_outbox(session, args.id)
        attempts = out.attempts
    print(f"outbound mail {args.id} queued for retry (attempts so far: {attempts})")
    return EX_OK


def cmd_outbox_flush(app: App, args: argparse.Namespace) -> int:
    counts = app.flush_outbox()
    if args.json:
        _print_json(counts)
    else:
        print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "nothing due")
    return EX_OK


def cmd_retention_run(app: App, args: argparse.Namespace) -> int:
    """``gateway retention run``: what the daemon's daily job does, now."""
    from gateway import retention

    result = retention.run(app.engine, app.blobs, app.settings, dry_run=args.dry_run)
    if args.json:
        import dataclasses

        _print_json(dataclasses.asdict(result))
    else:
        print(result.summary())
    # Another instance holds the lock: try again later, as with a busy database.
    return EX_TEMPFAIL if result.skipped else EX_OK


def cmd_account_unbounce(app: App, args: argparse.Namespace) -> int:
    from gateway.domain import normalize_address
    from gateway.store import repo

    email = normalize_address(args.email)
    with transaction(app.engine) as session:
        read.get_account(session, email)  # NotFound (exit 1) for an unknown address
        cleared = repo.clear_bounce(session.connection(), email)
    state = "no longer marked bounced; it gets mail again" if cleared else "was not marked bounced"
    print(f"{email}: {state}")
    return EX_OK


def cmd_account_create(app: App, args: argparse.Namespace) -> int:
    from gateway import staff

    try:
        print(staff.create_account(app.engine, app.settings, args.email, role=args.role, name=args.name,
                                   promote=args.promote))
    except staff.StaffError as exc:
        raise CommandError(str(exc)) from None
    return EX_OK


def cmd_account_disable(app: App, args: argparse.Namespace) -> int:
    from gateway import staff

    try:
        print(staff.disable_account(app.engine, args.email))
    except staff.StaffError as exc:
        raise CommandError(str(exc)) from None
    return EX_OK


def cmd_account_export(app: App, args: argparse.Namespace) -> int:
    from gateway import privacy

    document = privacy.export_account(app.engine, app.blobs, args.email, with_files=args.with_files)
    if args.output is None:
        _print_json(document)
        return EX_OK
    privacy.write_export(document, args.output)
    print(f"wrote everything stored about {document['account']['email']} to {args.output} "
          f"({len(document['tickets'])} tickets, {len(document['comments'])} comments, "
          f"{len(document['mail_received'])} mails received)")
    return EX_OK


def cmd_account_erase(app: App, args: argparse.Namespace) -> int:
    from gateway import privacy

    report = privacy.erase_account(app.engine, app.blobs, args.email, confirmed=args.yes)
    if args.json:
        _print_json(report.as_json())
    elif report.already:
        print(f"{report.email} is an erased account already; nothing to do")
    else:
        done = "is erased; the account is now" if report.erased else "would be erased; the account would be"
        print(f"{report.email} {done} {report.placeholder} ('deleted user')")
        _print_pairs((privacy.ERASURE_COUNTS[k], n) for k, n in report.counts.items())
    if not report.erased:
        error("nothing erased: repeat with --yes to erase (it cannot be undone)")
        return EX_FAIL
    return EX_OK


def cmd_account_signup(app: App, args: argparse.Namespace) -> int:
    from gateway.signup import SignupError

    try:
        address = app.signup(args.email)
    except SignupError as exc:
        raise CommandError(str(exc)) from None
    # The same words whatever happened: the output must not tell whether
    # the address already has an account.
    print(f"signup requested for {address}: a confirmation mail is on its way unless the address "
          "is already registered or got one within the last day")
    return EX_OK


def cmd_account_confirm(app: App, args: argparse.Namespace) -> int:
    from gateway.signup import SignupError

    try:
        with open(args.password_file, encoding="utf-8") as fh:
            password = fh.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read the password file {args.password_file}: {exc}") from None
    try:
        email = app.confirm_signup(args.token, args.name, password)
    except SignupError as exc:
        raise CommandError(str(exc)) from None
    print(f"account {email} is active")
    return EX_OK


def cmd_check_config(app: App, args: argparse.Namespace) -> int:
    for warning in app.settings.warnings():
        print(f"gateway: warning: {warning}", file=sys.stderr)
    data = app.settings.masked()
    if args.json:
        _print_json(data)
    else:
        print(to_tomlish(data))
    return EX_OK


def to_tomlish(data: dict[str, Any]) -> str:
    """The masked config as TOML (unset values as comments)."""
    lines: list[str] = []
    for section, value in data.items():
        if isinstance(value, dict):
            lines += ["", f"[{_toml_key(section)}]"] + _toml_body(value)
        elif isinstance(value, list) and all(isinstance(v, dict) for v in value):
            if not value:
                lines += ["", f"# no [[{_toml_key(section)}]] sections"]
            for item in value:
                lines += ["", f"[[{_toml_key(section)}]]"] + _toml_body(item)
        else:
            lines.insert(0, f"{_toml_key(section)} = {json.dumps(value)}")
    return "\n".join(lines).strip("\n")


def _toml_body(table: dict[str, Any]) -> list[str]:
    return [
        f"# {_toml_key(k)} is not set" if v is None else f"{_toml_key(k)} = {_toml_value(v)}"
        for k, v in table.items()
    ]


def _toml_value(value: Any) -> str:
    """A value as TOML: tables inline (``[fields]`` options), the rest as
    JSON, which TOML reads for strings, numbers, booleans and arrays."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


def _toml_key(key: str) -> str:
    return key if key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key) else json.dumps(key)


# -- running a command ------------------------------------------------


Handler = Callable[["App", argparse.Namespace], int]


def run(args: argparse.Namespace) -> int:
    """Run the parsed command; every failure ends as one line on stderr
    and an exit code (``GATEWAY_DEBUG=1`` adds the traceback of a bug)."""
    # The settings a failure may name the database from: none for `ingest`,
    # which runs as the MTA's pipe, whose stderr may reach the sender in a
    # bounce, so it never names the database's host.
    named: Settings | None = None
    try:
        from gateway.app import App

        settings = load_settings(args.config)
        if args.handler != "cmd_ingest":
            named = settings
        app = App(settings)
        if args.needs_db:
            app.ensure_schema(create=args.creates_store)
        handler: Handler = globals()[args.handler]
        code: int = handler(app, args)
        return code
    except ConfigError as exc:
        error(str(exc))
        return EX_USAGE
    except TemporaryFailure as exc:
        error(f"temporary failure: {_unreachable(exc, named) or exc or 'try again later'}")
        return EX_TEMPFAIL
    except (KeyError, IndexError) as exc:
        return _internal_error(exc, named)
    except (LookupError, Refused) as exc:
        # read.NotFound, or a LookupError from App naming what is missing
        error(str(exc))
        return EX_FAIL
    except CommandError as exc:
        error(str(exc))
        return exc.code
    except KeyboardInterrupt:
        error("interrupted")
        return 130
    except BrokenPipeError:
        # `gateway mail list | head`: the reader left; stay quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        return _internal_error(exc, named)


def _unreachable(exc: BaseException, settings: Settings | None) -> str | None:
    """Which database could not be reached and why (password masked): the
    first thing an operator needs when PostgreSQL is down or misnamed."""
    reason = connect_failure(exc)
    if reason is None or settings is None:
        return None
    return f"cannot reach the database {settings.masked()['database']['url']}: {reason}"


def _internal_error(exc: Exception, settings: Settings | None) -> int:
    if is_transient(exc):
        full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
        reason = "disk full" if full else _unreachable(exc, settings) or "database busy or unavailable"
        error(f"temporary failure: {reason}")
        return EX_TEMPFAIL
    if os.environ.get("GATEWAY_DEBUG") == "1":
        traceback.print_exception(exc)
    error(f"internal error: {type(exc).__name__}")
    return EX_SOFTWARE
