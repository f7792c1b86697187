"""The ``gateway`` command line (SPEC §4): the argument parser and the entry
point. It imports nothing beyond the standard library and ``vocabulary`` until a
command runs, so ``gateway --help`` starts as fast as the interpreter, and
``gateway ingest`` hands a message on stdin to a running daemon
(``ingress/handoff``) without loading the pipeline. The commands themselves
are in ``commands.py``. Every failure is one line on stderr and an exit
code, never a traceback (``GATEWAY_DEBUG=1`` adds the traceback for
unexpected errors)."""

from __future__ import annotations

import argparse
import os
import sys

from gateway.exits import EX_SOFTWARE, EX_USAGE, error, one_line
from gateway.vocabulary import (
    AccountState,
    MailStatus,
    OutboxStatus,
    Priority,
    RequestType,
    Role,
    TicketStatus,
)

# Not `from typing import …`: typing costs ~5 ms at start (mypy reads this
# block; any name TYPE_CHECKING is true for it).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

# -- parser -------------------------------------------------------------


# argparse passes every text it builds through gettext, whose lookup (no
# catalogue is found for argparse, there is none) stats the locale
# directories each time: ~4 ms of building the parser, a tenth of
# `gateway --help`. Its texts stay English, as they would anyway.
argparse._ = lambda message: message  # type: ignore[attr-defined]


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit 2."""

    _width: int | None = None  # the terminal's, asked once per process

    def error(self, message: str) -> NoReturn:
        self.exit(EX_USAGE, f"gateway: {one_line(message)} (see '{self.prog} --help')\n")

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse makes a formatter for every add_argument, and each one
        # asks the terminal for its size (a system call and the environment).
        if _Parser._width is None:
            import shutil

            _Parser._width = shutil.get_terminal_size().columns - 2
        formatter_class: Any = self.formatter_class  # typeshed's protocol has no width
        formatter: argparse.HelpFormatter = formatter_class(prog=self.prog, width=_Parser._width)
        return formatter


class _Unused:
    """Stands in for the parser of a command in a group that this run does
    not use: its arguments are never needed, and building the ~30 parsers
    of every group cost a third of `gateway --help`'s time."""

    def add_argument(self, *args: object, **kwargs: object) -> None:
        pass

    def add_parser(self, *args: object, **kwargs: object) -> _Unused:
        return self


def _first_word(argv: list[str] | None) -> str | None:
    """The command (or group) named on the command line, if any."""
    args = sys.argv[1:] if argv is None else argv
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--config":
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def _when(text: str) -> object:
    """``--since``: ``7d``, ``12h``, ``30m`` ago, a date (midnight UTC) or
    an ISO date and time (UTC unless it names its offset)."""
    import datetime as dt

    units = {"d": "days", "h": "hours", "m": "minutes"}
    value = text.strip()
    if value[-1:] in units and value[:-1].isdigit():
        return dt.datetime.now(dt.UTC) - dt.timedelta(**{units[value[-1]]: int(value[:-1])})
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (7d, 12h, 30m, 2026-11-01 or 2026-11-01T09:30)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _count(text: str) -> int:
    """``--limit`` / ``--offset``: a whole number, 0 or more."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a whole number of 0 or more: {text!r}")
    return int(text)


def _paging(p: Any, what: str, since_help: str, newest: bool = True) -> None:
    p.add_argument("--since", type=_when, metavar="WHEN",
                   help=since_help + " (7d, 12h, 30m, a date or ISO time)")
    p.add_argument("--limit", type=_count, metavar="N", help=f"at most N {what}")
    p.add_argument("--offset", type=_count, default=0, metavar="N", help="skip the first N")
    if newest:
        p.add_argument("--newest", action="store_true", help="newest first (default: oldest first)")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv`` (default ``sys.argv``): every command and
    group is listed, but only the group that ``argv`` names gets the
    parsers of its commands."""
    wanted = _first_word(argv)
    parser = _Parser(prog="gateway", description="Servicedesk mail gateway")
    parser.add_argument("--config", metavar="PATH", default=None, help="TOML file (default $GATEWAY_CONFIG)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        group: Any, name: str, handler: str, help: str, *, json_output: bool = False, db: bool = True,
        creates: bool = False,
    ) -> Any:
        if isinstance(group, _Unused):
            return group
        sub: argparse.ArgumentParser = group.add_parser(name, help=help, description=help)
        # SUPPRESS: a --config before the command is not overwritten by this default.
        sub.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="TOML file")
        if json_output:
            sub.add_argument("--json", action="store_true", help="one JSON document on stdout")
        # The handler by name: commands.py is imported only to run it.
        # creates: the command makes a new store where none is; the others
        # say which database they looked for (commands.run).
        sub.set_defaults(handler=handler, needs_db=db, creates_store=creates)
        return sub

    def group(name: str, help: str) -> Any:
        sub = commands.add_parser(name, help=help, description=help)
        if name != wanted:
            return _Unused()
        return sub.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)

    command(commands, "serve", "cmd_serve", "run the daemon until SIGTERM", creates=True)
    command(commands, "web", "cmd_web", "run the web portal alone until SIGTERM", creates=True)
    p = command(commands, "ingest", "cmd_ingest", "spool and process mail from stdin, .eml, mbox or Maildir",
                creates=True)
    p.add_argument("paths", nargs="*", metavar="PATH", help="files or folders; none or '-': stdin")
    p.add_argument("--recipient", metavar="ADDR", help="envelope recipient (picks the request type)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    command(commands, "check-config", "cmd_check_config", "validate and print the effective config",
            json_output=True, db=False)
    command(commands, "status", "cmd_status", "spool, quarantine, outbox and IMAP health at a glance",
            json_output=True)  # ops

    db = group("db", "database schema")
    command(db, "upgrade", "cmd_db_upgrade", "create or migrate the schema", db=False)

    org = group("org", "organizations")
    p = command(org, "create", "cmd_org_create", "create an organization")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--domain", dest="domains", action="append", default=[], metavar="D",
                   help="a mail domain of the organization (repeatable)")
    p.add_argument("--share-by-default", action="store_true", help="share new tickets with the organization")
    p = command(org, "add-member", "cmd_org_add_member", "add an account (created when unknown)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("email", metavar="EMAIL")
    command(org, "list", "cmd_org_list", "list organizations", json_output=True)

    account = group("account", "accounts")
    p = command(account, "list", "cmd_account_list", "list accounts", json_output=True)
    p.add_argument("--role", choices=[r.value for r in Role])
    p.add_argument("--state", choices=[a.value for a in AccountState])
    p.add_argument("--org", metavar="NAME", help="members of this organization")
    _paging(p, "accounts", "created since", newest=False)
    p = command(account, "show", "cmd_account_show", "show one account", json_output=True)
    p.add_argument("email", metavar="EMAIL")
    p = command(account, "signup", "cmd_account_signup", "send a signup confirmation link to an address")
    p.add_argument("email", metavar="EMAIL")
    p = command(account, "create", "cmd_account_create",
                "create an account (an agent gets a signup link by mail)")
    p.add_argument("email", metavar="EMAIL")
    p.add_argument("--role", choices=["agent", "customer"], default="customer")
    p.add_argument("--name", default="", metavar="NAME", help="the account holder's name")
    p.add_argument("--promote", action="store_true", help="make an existing customer an agent")
    p = command(account, "disable", "cmd_account_disable", "disable an account (no sign-in; sessions end)")
    p.add_argument("email", metavar="EMAIL")
    p = command(account, "unbounce", "cmd_account_unbounce",
                "mail an address again that was marked bounced (it works again)")
    p.add_argument("email", metavar="EMAIL")
    p = command(account, "export", "cmd_account_export",
                "write everything stored about a person as JSON (GDPR Art. 15)")
    p.add_argument("email", metavar="EMAIL")
    p.add_argument("--output", metavar="FILE",
                   help="a new file, readable by its owner only (default: stdout)")
    p.add_argument("--with-files", action="store_true", help="include files and raw mails (base64)")
    p = command(account, "erase", "cmd_account_erase",
                "erase a person's personal data (GDPR Art. 17); without --yes, show what would go",
                json_output=True)
    p.add_argument("email", metavar="EMAIL")
    p.add_argument("--yes", action="store_true", help="erase (it cannot be undone)")
    p = command(account, "confirm", "cmd_account_confirm", "complete a signup with the token from its link")
    p.add_argument("token", metavar="TOKEN")
    p.add_argument("--name", required=True, metavar="NAME", help="the account holder's name")
    p.add_argument("--password-file", required=True, metavar="F", help="file holding the new password")

    ticket = group("ticket", "tickets")
    who = "who does it (default: the desk, 'system')"
    p = command(ticket, "list", "cmd_ticket_list", "list tickets", json_output=True)
    p.add_argument("--status", choices=[s.value for s in TicketStatus])
    p.add_argument("--org", metavar="NAME")
    p.add_argument("--reporter", metavar="EMAIL")
    p.add_argument("--assignee", metavar="EMAIL|none", help="an agent's tickets, or 'none': unassigned ones")
    p.add_argument("--sort", choices=["key", "updated", "created", "priority"], default="key",
                   help="key: oldest first (default); updated, created: newest first; "
                   "priority: highest first")
    p.add_argument("--limit", type=_count, metavar="N", help="at most N tickets")
    p.add_argument("--offset", type=_count, default=0, metavar="N", help="skip the first N")
    p = command(ticket, "show", "cmd_ticket_show", "show one ticket with its comments", json_output=True)
    p.add_argument("key", metavar="KEY")
    p = command(ticket, "comment", "cmd_ticket_comment", "add a comment (text from --file or stdin)")
    p.add_argument("key", metavar="KEY")
    p.add_argument("--as", dest="as_email", metavar="EMAIL", required=True, help="the author")
    p.add_argument("--internal", action="store_true", help="visible to agents only")
    p.add_argument("--file", metavar="F", help="UTF-8 text file ('-': stdin)")
    p = command(ticket, "transition", "cmd_ticket_transition", "set a ticket's status")
    p.add_argument("key", metavar="KEY")
    statuses = [s.value for s in TicketStatus]
    p.add_argument("status", metavar="STATUS", choices=statuses, help="one of: " + ", ".join(statuses))
    p.add_argument("--as", dest="as_email", metavar="EMAIL", help=who)
    p = command(ticket, "set", "cmd_ticket_set", "set a ticket's priority, request type or fields")
    p.add_argument("key", metavar="KEY")
    p.add_argument("--priority", choices=[x.value for x in Priority])
    p.add_argument("--type", dest="request_type", choices=[t.value for t in RequestType])
    p.add_argument("--field", dest="fields", action="append", default=[], metavar="NAME=VALUE",
                   help="set a field (NAME= removes it; a JSON list or string is taken as such; repeatable)")
    p.add_argument("--as", dest="as_email", metavar="EMAIL", help=who)
    for name, handler, help_text in (
        ("share", "cmd_ticket_share", "share a ticket with the reporter's organization or a person"),
        ("unshare", "cmd_ticket_unshare", "stop sharing a ticket with the organization or a person"),
    ):
        p = command(ticket, name, handler, help_text)
        p.add_argument("key", metavar="KEY")
        p.add_argument("target", metavar="org|EMAIL", help="'org' (the reporter's org) or an address")
        p.add_argument("--as", dest="as_email", metavar="EMAIL", help=who)

    p = command(ticket, "assign", "cmd_ticket_assign", "give a ticket to an agent, or to nobody")
    p.add_argument("key", metavar="KEY")
    p.add_argument("assignee", metavar="EMAIL|none", help="an agent's address, or 'none'")
    p.add_argument("--as", dest="as_email", metavar="EMAIL", help=who)

    mail = group("mail", "the inbound mail log and quarantine")
    p = command(mail, "list", "cmd_mail_list", "list inbound mail", json_output=True)
    p.add_argument("--status", choices=[s.value for s in MailStatus])
    p.add_argument("--from", dest="sender", metavar="ADDR|@DOMAIN", help="from this address or domain")
    _paging(p, "mails", "received since")
    p = command(mail, "show", "cmd_mail_show", "show one inbound mail", json_output=True)
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument("--raw", action="store_true", help="write the raw message bytes to stdout")
    p = command(mail, "reprocess", "cmd_mail_reprocess", "process inbound mail again", json_output=True)
    p.add_argument("ids", type=int, nargs="+", metavar="ID")

    outbox = group("outbox", "outbound mail")
    p = command(outbox, "list", "cmd_outbox_list", "list outbound mail", json_output=True)
    p.add_argument("--status", choices=[s.value for s in OutboxStatus])
    p.add_argument("--to", metavar="ADDR|@DOMAIN", help="to this address or domain")
    p.add_argument("--template", metavar="NAME", help="e.g. signup_invitation, comment_added")
    _paging(p, "mails", "queued since")
    p = command(outbox, "retry", "cmd_outbox_retry",
                "queue an outbound mail to be sent again (the daemon's sender, or `outbox flush`, sends it)")
    p.add_argument("id", type=int, metavar="ID")
    command(outbox, "flush", "cmd_outbox_flush", "send every due outbound mail now", json_output=True)

    retention = group("retention", "removing old mail bytes ([retention] in the config)")
    p = command(retention, "run", "cmd_retention_run",
                "remove raw mail and outbox bodies older than [retention] allows, now", json_output=True)
    p.add_argument("--dry-run", action="store_true", help="only count what would be removed")
    return parser


# -- entry point --------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser(argv).parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EX_USAGE
    if args.handler == "cmd_ingest" and args.paths in ([], ["-"]):
        code = _hand_off(args)
        if code is not None:
            return code
    try:
        # Imported here: the commands pull in the store (and `serve` the
        # whole daemon), and even an import failure must end as one line.
        from gateway.commands import run
    except Exception as exc:  # noqa: BLE001 - a broken installation: one line, not a traceback
        if os.environ.get("GATEWAY_DEBUG") == "1":
            raise
        error(f"internal error: {type(exc).__name__}")
        return EX_SOFTWARE
    return run(args)


def _hand_off(args: argparse.Namespace) -> int | None:
    """``gateway ingest`` of one message on stdin: hand it to the running
    daemon. None when no daemon took it; then stdin (or the bytes already
    read from it) is processed inline as before."""
    import io

    from gateway.ingress.handoff import NoDaemon, hand_off

    try:
        return hand_off(args.config, args.recipient, sys.stdin.buffer, sys.stderr)
    except NoDaemon as exc:
        if exc.data is not None:
            args.stdin = io.BytesIO(exc.data)
        return None
