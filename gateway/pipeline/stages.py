"""The stage sequence for one parsed message, in one place (as Mailman keeps
its pipelines apart from its runners): the same message once → screen
(robots, loops, bounces) → spam → trust → identify the sender → thread →
a desk operation (a new ticket or a comment). Batching, transactions,
savepoints, waiting for other workers and metrics are the runner's
(``runner.py``); this module only says what happens to one message, in
the caller's transaction.

A stage ends a message early by raising ``Ignore`` (it becomes ``ignored``
with the reason) or ``Quarantine`` (the runner shunts it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sqlalchemy import Connection

from gateway import verp
from gateway.desk.operations import Desk
from gateway.domain import (
    AGENT_UNTRUSTED_REASON,
    Disposition,
    Ignore,
    ParsedMail,
    Quarantine,
    Role,
    normalize_address,
)
from gateway.pipeline import apply
from gateway.pipeline.fields import extract_fields
from gateway.pipeline.identify import identify
from gateway.pipeline.parsing import Parsed
from gateway.pipeline.screen import is_spam, screen
from gateway.pipeline.thread import find_ticket
from gateway.pipeline.trust import authenticated_by
from gateway.settings import Settings
from gateway.store import repo
from gateway.store.spool import Job

AGENT_UNTRUSTED = (
    f"{AGENT_UNTRUSTED_REASON}: set security.trusted_authserv_id to the authserv-id "
    "of your MTA's Authentication-Results (DMARC/DKIM pass), or mark the [smtp] listener or [[imap]] "
    "mailbox that only your own mail server reaches as trusted"
)


@dataclass(frozen=True)
class Stages:
    """The sequence, with what it needs computed once per configuration."""

    settings: Settings  # identify and the routing read their own sections of it
    desk: Desk
    desk_addresses: frozenset[str]
    ticket_prefix: str
    trusted_authserv_id: str

    @classmethod
    def configured(cls, settings: Settings, desk: Desk) -> Stages:
        return cls(
            settings=settings,
            desk=desk,
            desk_addresses=frozenset(settings.desk_addresses()),
            ticket_prefix=settings.desk.ticket_prefix,
            trusted_authserv_id=settings.security.trusted_authserv_id,
        )

    def run(self, conn: Connection, job: Job, parsed: Parsed) -> Disposition:
        """What becomes of one message. Raises ``Quarantine`` (and lets
        database errors through: the runner decides what they mean)."""
        if parsed.mail is None:
            raise Quarantine(parsed.error or "unparseable")
        try:
            return self._sequence(conn, job, parsed.mail, parsed.dedup_key)
        except Ignore as ig:
            return Disposition.ignored(ig.reason)

    def _sequence(self, conn: Connection, job: Job, mail: ParsedMail, key: str) -> Disposition:
        earlier = repo.claim_processed_key(conn, key, job.id)
        if earlier is not None:
            raise Ignore(f"duplicate of mail {earlier}")
        reason = screen(mail, desk_addresses=self.desk_addresses, envelope_from=job.envelope_from)
        if reason is not None:
            if reason == "bounce":
                reason = self._bounce(conn, mail, job)
            raise Ignore(reason)
        if is_spam(mail):
            raise Quarantine("marked as spam by the MTA (X-Spam-Flag / X-Spam)")
        trusted = job.trusted or authenticated_by(mail, self.trusted_authserv_id)
        sender = identify(conn, mail, self.settings, trusted)
        if sender.account.role == Role.agent and not sender.is_agent:
            # An agent's address (an agent's account, or one in
            # security.agent_domains) the desk cannot authenticate: acting on
            # it as an agent's mail would let anyone forge the From; as a
            # customer's it would open a ticket and invite the agent to sign
            # up. Neither: the operator sees it and what to configure.
            raise Quarantine(AGENT_UNTRUSTED)
        if sender.account.bounced_at is not None:
            # A person writes from the address: it works again (SPEC §3).
            repo.clear_bounce(conn, sender.account.email)
            sender = dataclasses.replace(sender, account=dataclasses.replace(sender.account, bounced_at=None))
        match = find_ticket(conn, mail, sender, self.ticket_prefix)
        if match.ticket is None:
            # Whether a stranger's new ticket may be acknowledged (backscatter).
            authenticated = trusted or authenticated_by(mail, self.trusted_authserv_id, spf=True)
            actor = apply.actor_for(sender, job.id, authenticated)
            request_type = self.settings.request_type_for(job.recipient)
            fields = extract_fields(mail, self.settings.fields)
            done = apply.create_ticket(conn, self.desk, actor, mail, sender, request_type, fields, match)
            return Disposition.created(done.ticket.key, done.ticket.id)
        done = apply.add_comment(conn, self.desk, apply.actor_for(sender, job.id, True), mail, sender, match)
        return Disposition.commented(done.ticket.key, done.ticket.id)

    @staticmethod
    def _bounce(conn: Connection, mail: ParsedMail, job: Job) -> str:
        """The disposition of a bounce, after marking the desk mail it is
        about (only when it names that mail's recipient as failed)."""
        report = mail.report
        if report is None:  # a bounce without a DSN part: nothing names a recipient
            return "bounce (no delivery report)"
        failed = [normalize_address(a) for a in report.failed_recipients]
        marked = repo.record_bounce(
            conn, failed, report.original_message_id, verp.parse(job.recipient), report.status or "failed"
        )
        return "bounce" if marked else "bounce (of no mail the desk sent to a failed recipient)"
