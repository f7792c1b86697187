"""The ``gateway`` command line (SPEC §4). Thin on purpose: parse arguments,
call ``App``, ``views`` or ``admin``, print a table or one JSON document.
Every failure is one line on stderr and an exit code, never a traceback
(``GATEWAY_DEBUG=1`` adds the traceback for unexpected errors)."""

from __future__ import annotations

import argparse
import datetime as dt
import errno
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from gateway import admin, views
from gateway.domain import MailStatus, OutboxStatus, TemporaryFailure, TicketStatus
from gateway.ingress.spool import Spool
from gateway.settings import ConfigError, load_settings
from gateway.store.db import is_transient, reading, transaction

if TYPE_CHECKING:
    from gateway.app import App

EX_OK = 0
EX_FAIL = 1  # not found, refused
EX_USAGE = 2  # bad arguments, bad configuration
EX_SOFTWARE = 70  # a bug
EX_TEMPFAIL = 75

Handler = Callable[["App", argparse.Namespace], int]


class CommandError(Exception):
    """A command cannot go on; the message is shown as is."""

    def __init__(self, message: str, code: int = EX_FAIL) -> None:
        super().__init__(message)
        self.code = code


# -- output helpers -----------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _error(message: str) -> None:
    print(f"gateway: {_one_line(message)}", file=sys.stderr)


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


def cmd_status(app: App, args: argparse.Namespace) -> int:
    now = dt.datetime.now(dt.UTC)
    with reading(app.engine) as session:
        st = views.status_json(session, now)
    if args.json:
        _print_json(st)
        return EX_OK
    spool, inbound, outbox = st["spool"], st["inbound"], st["outbox"]
    oldest = f", oldest queued {_ago(spool['oldest_queued_age_seconds'])}" if spool["queued"] else ""
    pairs: list[tuple[str, object]] = [
        ("spool", f"{spool['depth']} waiting ({spool['queued']} queued, {spool['processing']} processing)"
                  + oldest),
        ("quarantined", f"{st['quarantined']}" + ("  (gateway mail list --status quarantined)"
                                                  if st["quarantined"] else "")),
        ("processed", f"{inbound['done']} done, {inbound['ignored']} ignored"),
        ("last received", _since(st["last_received_at"], now)),
        ("outbox", f"{outbox['failed']} failed, {outbox['retrying']} retrying, {outbox['queued']} queued, "
                   f"{outbox['sent']} sent, {outbox['bounced']} bounced"),
    ]
    for box in st["imap"]:
        state = "FAILING" if box["failing"] else "ok"
        text = f"{state}; last success {_since(box['last_success_at'], now)}"
        if box["last_error"]:
            text += f"; last error {_since(box['last_error_at'], now)}: {box['last_error']}"
        pairs.append((f"imap {box['mailbox']}", text))
    if not st["imap"]:
        pairs.append(("imap", "no mailbox polled yet"))
    _print_pairs(pairs)
    return EX_OK


# --- end ops


def cmd_ingest(app: App, args: argparse.Namespace) -> int:
    progress = sys.stderr.isatty() and not args.no_progress
    return app.ingest(args.paths, args.recipient, progress=progress)


def cmd_db_upgrade(app: App, args: argparse.Namespace) -> int:
    app.db_upgrade()
    print("database schema is up to date", file=sys.stderr)
    return EX_OK


def cmd_org_create(app: App, args: argparse.Namespace) -> int:
    with transaction(app.engine) as session:
        org = admin.create_org(session, args.name, args.domains, args.share_by_default)
        name = org.name
    doms = ", ".join(sorted({admin.normalize_domain(d) for d in args.domains})) or "none"
    print(f"created organization {name!r} (domains: {doms})")
    return EX_OK


def cmd_org_add_member(app: App, args: argparse.Namespace) -> int:
    with transaction(app.engine) as session:
        account, created = admin.add_member(session, args.name, args.email)
        email = account.email
    extra = " (new unverified account)" if created else ""
    print(f"added {email} to {args.name!r}{extra}")
    return EX_OK


def cmd_org_list(app: App, args: argparse.Namespace) -> int:
    with reading(app.engine) as session:
        orgs = views.org_list(session)
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
        accounts = views.account_list(session)
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
        account = views.account_show(session, args.email)
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
        tickets = views.ticket_list(session, args.status, args.org, args.reporter)
    if args.json:
        _print_json(tickets)
    else:
        _print_table(
            ["key", "status", "priority", "type", "reporter", "organization", "updated", "summary"],
            (
                [t["key"], t["status"], t["priority"], t["request_type"], t["reporter"],
                 t["organization"], _short_time(t["updated_at"]), t["summary"]]
                for t in tickets
            ),
        )
    return EX_OK


def cmd_ticket_show(app: App, args: argparse.Namespace) -> int:
    with reading(app.engine) as session:
        data = views.ticket_json(session, views.get_ticket(session, args.key))
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
        key = views.get_ticket(session, args.key).key
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
    with transaction(app.engine) as session:
        ticket, previous = admin.transition_ticket(session, args.key, args.status, app.settings)
        key, status = ticket.key, ticket.status
    print(f"{key}: {previous} -> {status}")
    return EX_OK


def cmd_mail_list(app: App, args: argparse.Namespace) -> int:
    with reading(app.engine) as session:
        mails = views.mail_list(session, args.status)
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
        mail = views.get_mail(session, args.id)
        if not args.raw:
            data = views.mail_detail(session, mail)
    if args.raw:
        try:
            raw = Spool(app.engine, app.blobs).read_raw(args.id)  # queued: still in its row
        except KeyError:
            raise CommandError(f"raw bytes of mail {args.id} are missing from the blob store") from None
        sys.stdout.flush()
        sys.stdout.buffer.write(raw)
        sys.stdout.buffer.flush()
    elif args.json:
        _print_json(data)
    else:
        _print_pairs(data.items())
    return EX_OK


def cmd_mail_reprocess(app: App, args: argparse.Namespace) -> int:
    ids = list(dict.fromkeys(args.ids))
    with reading(app.engine) as session:
        missing = views.missing_mail_ids(session, ids)
    if missing:
        raise views.NotFound("mail not found: " + ", ".join(str(i) for i in missing))
    results = app.reprocess(ids)
    if args.json:
        _print_json([{"id": i, "disposition": d} for i, d in results])
    else:
        _print_table(["id", "disposition"], results)
    return EX_OK


def cmd_outbox_list(app: App, args: argparse.Namespace) -> int:
    with reading(app.engine) as session:
        items = views.outbox_list(session, args.status)
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
        f"# {_toml_key(k)} is not set" if v is None else f"{_toml_key(k)} = {json.dumps(v)}"
        for k, v in table.items()
    ]


def _toml_key(key: str) -> str:
    return key if key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key) else json.dumps(key)


# -- parser -------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EX_USAGE, f"gateway: {_one_line(message)} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gateway", description="Servicedesk mail gateway")
    parser.add_argument("--config", metavar="PATH", default=None, help="TOML file (default $GATEWAY_CONFIG)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        group: Any, name: str, handler: Handler, help: str, *, json_output: bool = False, db: bool = True
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(name, help=help, description=help)
        # SUPPRESS: a --config before the command is not overwritten by this default.
        sub.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="TOML file")
        if json_output:
            sub.add_argument("--json", action="store_true", help="one JSON document on stdout")
        sub.set_defaults(handler=handler, needs_db=db)
        return sub

    def group(name: str, help: str) -> Any:
        sub = commands.add_parser(name, help=help, description=help)
        return sub.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)

    command(commands, "serve", cmd_serve, "run the daemon until SIGTERM")
    p = command(commands, "ingest", cmd_ingest, "spool and process mail from stdin, .eml, mbox or Maildir")
    p.add_argument("paths", nargs="*", metavar="PATH", help="files or folders; none or '-': stdin")
    p.add_argument("--recipient", metavar="ADDR", help="envelope recipient (picks the request type)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    command(commands, "check-config", cmd_check_config, "validate and print the effective config",
            json_output=True, db=False)
    command(commands, "status", cmd_status, "spool, quarantine, outbox and IMAP health at a glance",
            json_output=True)  # ops

    db = group("db", "database schema")
    command(db, "upgrade", cmd_db_upgrade, "create or migrate the schema", db=False)

    org = group("org", "organizations")
    p = command(org, "create", cmd_org_create, "create an organization")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--domain", dest="domains", action="append", default=[], metavar="D",
                   help="a mail domain of the organization (repeatable)")
    p.add_argument("--share-by-default", action="store_true", help="share new tickets with the organization")
    p = command(org, "add-member", cmd_org_add_member, "add an account (created when unknown)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("email", metavar="EMAIL")
    command(org, "list", cmd_org_list, "list organizations", json_output=True)

    account = group("account", "accounts")
    command(account, "list", cmd_account_list, "list accounts", json_output=True)
    p = command(account, "show", cmd_account_show, "show one account", json_output=True)
    p.add_argument("email", metavar="EMAIL")
    p = command(account, "signup", cmd_account_signup, "send a signup confirmation link to an address")
    p.add_argument("email", metavar="EMAIL")
    p = command(account, "confirm", cmd_account_confirm, "complete a signup with the token from its link")
    p.add_argument("token", metavar="TOKEN")
    p.add_argument("--name", required=True, metavar="NAME", help="the account holder's name")
    p.add_argument("--password-file", required=True, metavar="F", help="file holding the new password")

    ticket = group("ticket", "tickets")
    p = command(ticket, "list", cmd_ticket_list, "list tickets", json_output=True)
    p.add_argument("--status", choices=[s.value for s in TicketStatus])
    p.add_argument("--org", metavar="NAME")
    p.add_argument("--reporter", metavar="EMAIL")
    p = command(ticket, "show", cmd_ticket_show, "show one ticket with its comments", json_output=True)
    p.add_argument("key", metavar="KEY")
    p = command(ticket, "comment", cmd_ticket_comment, "add a comment (text from --file or stdin)")
    p.add_argument("key", metavar="KEY")
    p.add_argument("--as", dest="as_email", metavar="EMAIL", required=True, help="the author")
    p.add_argument("--internal", action="store_true", help="visible to agents only")
    p.add_argument("--file", metavar="F", help="UTF-8 text file ('-': stdin)")
    p = command(ticket, "transition", cmd_ticket_transition, "set a ticket's status")
    p.add_argument("key", metavar="KEY")
    p.add_argument("status", metavar="STATUS", choices=[s.value for s in TicketStatus])

    mail = group("mail", "the inbound mail log and quarantine")
    p = command(mail, "list", cmd_mail_list, "list inbound mail", json_output=True)
    p.add_argument("--status", choices=[s.value for s in MailStatus])
    p = command(mail, "show", cmd_mail_show, "show one inbound mail", json_output=True)
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument("--raw", action="store_true", help="write the raw message bytes to stdout")
    p = command(mail, "reprocess", cmd_mail_reprocess, "process inbound mail again", json_output=True)
    p.add_argument("ids", type=int, nargs="+", metavar="ID")

    outbox = group("outbox", "outbound mail")
    p = command(outbox, "list", cmd_outbox_list, "list outbound mail", json_output=True)
    p.add_argument("--status", choices=[s.value for s in OutboxStatus])
    p = command(outbox, "retry", cmd_outbox_retry, "send an outbound mail again now")
    p.add_argument("id", type=int, metavar="ID")
    command(outbox, "flush", cmd_outbox_flush, "send every due outbound mail now", json_output=True)
    return parser


# -- entry point --------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EX_USAGE
    try:
        # Imported here: the composition root pulls in the whole daemon, and
        # even an import failure must end as one line, not a traceback.
        from gateway.app import App

        app = App(load_settings(args.config))
        if args.needs_db:
            app.ensure_schema()
        code: int = args.handler(app, args)
        return code
    except ConfigError as exc:
        _error(str(exc))
        return EX_USAGE
    except TemporaryFailure as exc:
        _error(f"temporary failure: {exc or 'try again later'}")
        return EX_TEMPFAIL
    except (KeyError, IndexError) as exc:
        return _internal_error(exc)
    except (LookupError, admin.AdminError) as exc:
        # views.NotFound, or a LookupError from App naming what is missing
        _error(str(exc))
        return EX_FAIL
    except CommandError as exc:
        _error(str(exc))
        return exc.code
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:
        # `gateway mail list | head`: the reader left; stay quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        return _internal_error(exc)


def _internal_error(exc: Exception) -> int:
    if is_transient(exc):
        full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
        _error("temporary failure: " + ("disk full" if full else "database busy or unavailable"))
        return EX_TEMPFAIL
    if os.environ.get("GATEWAY_DEBUG") == "1":
        traceback.print_exception(exc)
    _error(f"internal error: {type(exc).__name__}")
    return EX_SOFTWARE
