"""One test per rule of SPEC §3, each fed by real ``.eml`` fixtures named
after their case, through ``gateway ingest`` into SQLite and PostgreSQL."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from gateway.app import App
from gateway.store.models import (
    Account,
    Attachment,
    Comment,
    InboundMail,
    Organization,
    OrganizationDomain,
    OutboundMail,
    Ticket,
    TicketParticipant,
)

RULES = Path(__file__).parent.parent / "fixtures" / "rules"


def configured(app: App, **sections: dict[str, Any]) -> App:
    """A new App whose settings differ in the given sections."""
    update: dict[str, Any] = {}
    for name, values in sections.items():
        current = getattr(app.settings, name)
        update[name] = current.model_copy(update=values) if hasattr(current, "model_copy") else values
    new = App(app.settings.model_copy(update=update))
    new.__dict__["engine"] = app.engine  # share the engine (and its database)
    return new


@pytest.fixture
def desk(app: App) -> App:
    return configured(
        app,
        security={"trusted_authserv_id": "mx.xitrust.com"},
        routing={"servicedesk@xitrust.com": "other", "support-tech@xitrust.com": "technical_support"},
    )


def ingest(app: App, *names: str, recipient: str | None = None) -> int:
    return app.ingest([str(RULES / n) for n in names], recipient, progress=False)


def last_mail(app: App) -> InboundMail:
    with Session(app.engine) as s:
        row = s.exec(select(InboundMail).order_by(InboundMail.id.desc())).first()  # type: ignore[union-attr]
        assert row is not None
        return row


def ticket(app: App, key: str) -> Ticket:
    with Session(app.engine) as s:
        t = s.exec(select(Ticket).where(Ticket.key == key)).one()
        return t


def comments(app: App, key: str) -> list[tuple[str, str, bool]]:
    with Session(app.engine) as s:
        t = s.exec(select(Ticket).where(Ticket.key == key)).one()
        rows = s.exec(
            select(Comment, Account).join(Account).where(Comment.ticket_id == t.id).order_by(Comment.id)
        )
        return [(a.email, c.body, c.public) for c, a in rows]


def outbox(app: App) -> list[tuple[str, str, str | None]]:
    with Session(app.engine) as s:
        rows = s.exec(select(OutboundMail, Ticket).join(Ticket, isouter=True).order_by(OutboundMail.id))
        return [(o.to_addr, o.template, t.key if t else None) for o, t in rows]


def make_org(app: App, name: str, domain: str, shared: bool = True) -> None:
    with Session(app.engine) as s, s.begin():
        org = Organization(name=name, share_by_default=shared)
        s.add(org)
        s.flush()
        s.add(OrganizationDomain(domain=domain, organization_id=org.id))  # type: ignore[arg-type]


def make_agent(app: App, email: str) -> None:
    with Session(app.engine) as s, s.begin():
        s.add(Account(email=email, name="Sam Agent", state="active", role="agent"))


# -- creating tickets ------------------------------------------------------


def test_new_request_creates_ticket_with_fields_and_invitation(desk: App) -> None:
    assert ingest(desk, "new-request-de.eml") == 0
    row = last_mail(desk)
    assert (row.status, row.disposition) == ("done", "created SD-1")
    t = ticket(desk, "SD-1")
    assert t.summary == "Signatur schlägt fehl: Fehler E-4012"
    assert t.priority == "high"
    assert t.fields["moxis_domain"] == "moxis.bauwerk-ag.de"
    assert t.fields["browser"] == ["firefox"]  # matched to the form's option (SPEC §2)
    assert t.status == "waiting_for_support"
    assert t.request_type == "other"
    with Session(desk.engine) as s:
        reporter = s.get(Account, t.reporter_id)
        assert reporter is not None
        assert (reporter.email, reporter.state, reporter.locale) == (
            "anna.mueller@bauwerk-ag.de",
            "unverified",
            "de",
        )
    # unknown sender: one signup invitation, nothing for the CC'd stranger
    assert outbox(desk) == [("anna.mueller@bauwerk-ag.de", "signup_invitation", "SD-1")]


def test_recipient_picks_request_type_and_x_priority_sets_priority(desk: App) -> None:
    assert ingest(desk, "priority-x-priority-header-en.eml", recipient="Support-Tech@XiTrust.com") == 0
    t = ticket(desk, "SD-1")
    assert (t.request_type, t.priority) == ("technical_support", "high")


def test_invitation_at_most_once_per_day(desk: App) -> None:
    assert ingest(desk, "new-request-de.eml", "message-id-reused-different-content.eml") == 0
    assert [m[1] for m in outbox(desk)] == ["signup_invitation", "request_created"]


# -- threading ---------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        "reply-in-reply-to-outlook-de.eml",
        "reply-references-only.eml",
        "reply-subject-key-bracketed.eml",
        "reply-subject-key-bare.eml",
    ],
)
def test_reply_threads_as_comment(desk: App, reply: str) -> None:
    assert ingest(desk, "new-request-de.eml", reply) == 0
    assert last_mail(desk).disposition == "commented SD-1"
    ((author, body, public),) = comments(desk, "SD-1")
    assert author == "anna.mueller@bauwerk-ag.de" and public


def test_reply_stores_new_text_only(desk: App) -> None:
    ingest(desk, "new-request-de.eml", "reply-in-reply-to-outlook-de.eml")
    ((_, body, _),) = comments(desk, "SD-1")
    assert "DOC-004711" in body
    assert "Ursprüngliche Nachricht" not in body and "seit heute Vormittag" not in body


def test_stranger_quoting_a_thread_gets_own_ticket(desk: App) -> None:
    ingest(desk, "new-request-de.eml", "stranger-reply-to-foreign-thread.eml")
    assert last_mail(desk).disposition == "created SD-2"
    assert comments(desk, "SD-1") == []
    assert ticket(desk, "SD-2").description.startswith("Please send me")
    # the stranger hears only about their own ticket
    assert ("mallory@attacker.example", "signup_invitation", "SD-2") in outbox(desk)
    assert all(to != "mallory@attacker.example" or key == "SD-2" for to, _, key in outbox(desk))


def test_colleague_without_shared_org_gets_own_ticket(desk: App) -> None:
    ingest(desk, "new-request-de.eml", "colleague-reply-same-org.eml")
    assert last_mail(desk).disposition == "created SD-2"


def test_colleague_in_shared_org_comments_and_cc_member_participates(desk: App) -> None:
    make_org(desk, "Bauwerk AG", "bauwerk-ag.de", shared=True)
    ingest(desk, "new-request-de.eml", "colleague-reply-same-org.eml")
    assert last_mail(desk).disposition == "commented SD-1"
    with Session(desk.engine) as s:
        t = s.exec(select(Ticket).where(Ticket.key == "SD-1")).one()
        org = s.exec(select(Organization)).one()
        assert t.organization_id == org.id
        parts = s.exec(
            select(Account.email).join(TicketParticipant).where(TicketParticipant.ticket_id == t.id)
        ).all()
        assert parts == ["kai.weber@bauwerk-ag.de"]  # the CC'd outsider is not
    # the colleague's comment is announced to the reporter, not to its author
    assert ("anna.mueller@bauwerk-ag.de", "comment_added", "SD-1") in outbox(desk)
    assert ("kai.weber@bauwerk-ag.de", "comment_added", "SD-1") not in outbox(desk)


def test_colleague_without_account_is_told_where_to_register(desk: App) -> None:
    """The reporter got an invitation; the colleague who wrote to her shared
    ticket never did: the mail of the agent's reply sends them to the signup
    page instead of "the link from our invitation"."""
    make_org(desk, "Bauwerk AG", "bauwerk-ag.de", shared=True)
    make_agent(desk, "sam.agent@xitrust.com")
    ingest(desk, "new-request-de.eml", "colleague-reply-same-org.eml", "agent-reply-trusted.eml")
    assert desk.flush_outbox()["sent"] >= 3
    mails = sent_mails(desk)
    invitation = "über den Link aus unserer Einladung"
    to_anna = [m for m in mails if "anna.mueller@bauwerk-ag.de" in m["To"]]
    to_kai = [m for m in mails if "kai.weber@bauwerk-ag.de" in m["To"]]
    assert [m["Subject"].startswith("[SD-1]") for m in to_kai] == [True]
    kai_text = to_kai[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert invitation not in kai_text
    assert "Registrieren Sie sich\nmit dieser E-Mail-Adresse unter http://localhost:8080/signup" in kai_text
    assert "Update 9.2.3" not in kai_text  # still nothing of the content before signup
    anna_texts = [m.get_body(("plain",)).get_content() for m in to_anna]  # type: ignore[union-attr]
    assert any(invitation in t for t in anna_texts), anna_texts


def sent_mails(app: App) -> list[EmailMessage]:
    new = Path(app.settings.outbound.maildir) / "new"
    return [
        BytesParser(policy=policy.default).parsebytes(f.read_bytes())  # type: ignore[misc]
        for f in sorted(new.iterdir())
    ]


# -- robots, duplicates ----------------------------------------------------


def test_auto_reply_is_ignored_and_triggers_nothing(desk: App) -> None:
    ingest(desk, "new-request-de.eml")
    before = outbox(desk)
    ingest(desk, "auto-reply-to-ack.eml")
    row = last_mail(desk)
    assert (row.status, row.disposition) == ("ignored", "ignored: auto-reply")
    assert comments(desk, "SD-1") == [] and outbox(desk) == before
    assert ticket(desk, "SD-1").status == "waiting_for_support"


def test_same_message_twice_has_one_effect(desk: App) -> None:
    assert ingest(desk, "new-request-de.eml", "new-request-de.eml") == 0
    row = last_mail(desk)
    assert row.status == "ignored" and row.disposition is not None
    assert row.disposition.startswith("ignored: duplicate of mail")
    with Session(desk.engine) as s:
        assert len(s.exec(select(Ticket)).all()) == 1


def test_reused_message_id_with_other_content_is_not_dropped(desk: App) -> None:
    ingest(desk, "new-request-de.eml", "message-id-reused-different-content.eml")
    assert last_mail(desk).disposition == "created SD-2"


# -- agents ---------------------------------------------------------------------


def test_trusted_agent_reply_is_public_and_relayed(desk: App) -> None:
    make_agent(desk, "sam.agent@xitrust.com")
    ingest(desk, "new-request-de.eml", "agent-reply-trusted.eml")
    assert comments(desk, "SD-1") == [
        (
            "sam.agent@xitrust.com",
            "Bitte installieren Sie das Update 9.2.3, dann ist der Fehler behoben.",
            True,
        )
    ]
    assert ticket(desk, "SD-1").status == "waiting_for_customer"
    assert outbox(desk)[-1] == ("anna.mueller@bauwerk-ag.de", "comment_added", "SD-1")


def test_agent_internal_note_is_not_relayed(desk: App) -> None:
    make_agent(desk, "sam.agent@xitrust.com")
    ingest(desk, "new-request-de.eml")
    before = outbox(desk)
    ingest(desk, "agent-reply-internal.eml")
    ((author, body, public),) = comments(desk, "SD-1")
    assert (author, public) == ("sam.agent@xitrust.com", False)
    assert body.strip() == "Kunde hat noch Version 9.1, Lizenz pruefen."
    assert outbox(desk) == before
    assert ticket(desk, "SD-1").status == "waiting_for_support"


def test_agent_mail_from_an_untrusted_source_is_quarantined(desk: App) -> None:
    make_agent(desk, "sam.agent@xitrust.com")
    ingest(desk, "new-request-de.eml", "agent-reply-untrusted-forged.eml")
    # Neither an agent's note on SD-1 (the From may be forged) nor a customer
    # ticket with a signup invitation to the agent: the quarantine, saying
    # what to configure.
    row = last_mail(desk)
    assert row.status == "quarantined" and "trusted_authserv_id" in (row.disposition or "")
    assert comments(desk, "SD-1") == []
    with Session(desk.engine) as s:
        assert s.exec(select(Ticket)).all()[-1].key == "SD-1"


def test_mail_from_an_agent_domain_without_trust_is_quarantined(desk: App, tmp_path: Path) -> None:
    path = tmp_path / "new-colleague.eml"
    path.write_bytes(
        b"From: Nina <nina@xitrust.com>\r\nTo: servicedesk@xitrust.com\r\nSubject: Test\r\n"
        b"Message-ID: <n-1@xitrust.com>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0100\r\n\r\nHallo\r\n"
    )
    assert desk.ingest([str(path)], None, progress=False) == 0
    assert last_mail(desk).status == "quarantined"
    assert outbox(desk) == []  # no invitation to an agent's address
    from gateway.store import read

    with Session(desk.engine) as s:
        assert read.status_json(s)["quarantined_agent_mail"] == 1  # `gateway status` says so


# -- statuses --------------------------------------------------------------------


def _set_status(app: App, key: str, status: str) -> None:
    with Session(app.engine) as s, s.begin():
        t = s.exec(select(Ticket).where(Ticket.key == key)).one()
        t.status = status
        s.add(t)


def test_customer_reply_reopens_resolved_ticket(desk: App) -> None:
    ingest(desk, "new-request-de.eml")
    _set_status(desk, "SD-1", "resolved")
    ingest(desk, "reply-in-reply-to-outlook-de.eml")
    assert ticket(desk, "SD-1").status == "waiting_for_support"


def test_reply_to_closed_ticket_starts_linked_ticket(desk: App) -> None:
    ingest(desk, "new-request-de.eml")
    _set_status(desk, "SD-1", "closed")
    ingest(desk, "reply-after-closed.eml")
    assert last_mail(desk).disposition == "created SD-2"
    assert ticket(desk, "SD-2").linked_key == "SD-1"
    assert ticket(desk, "SD-1").status == "closed"
    # Its own summary, without the old key; the old ticket's type.
    assert ticket(desk, "SD-2").summary == "Signatur schlägt fehl"
    assert ticket(desk, "SD-2").request_type == ticket(desk, "SD-1").request_type


def test_a_new_tickets_summary_leaves_the_desks_words_off() -> None:
    from gateway.pipeline.apply import summary_from

    assert summary_from("AW: [SD-3] [SD-1] Gelöst: Signatur schlägt fehl") == "Signatur schlägt fehl"
    assert summary_from("Re: Resolved: Login", "SD") == "Login"
    assert summary_from("[SD-5] Signatur") == "Signatur"  # a stranger's mention of a key: not theirs
    assert summary_from("Wichtig: Login geht nicht") == "Wichtig: Login geht nicht"
    assert summary_from("Re: [HD-7] Frage", "HD") == "Frage"
    assert summary_from("[SD-5]") == "(no subject)"


# -- limits ----------------------------------------------------------------------------


def test_auto_mails_per_hour_capped(app: App) -> None:
    capped = configured(app, security={"max_auto_mails_per_hour": 1})
    ingest(capped, "new-request-de.eml", "message-id-reused-different-content.eml")
    assert len(outbox(capped)) == 1


def test_oversize_message_rejected_with_65(
    app: App, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = configured(app, smtp={"max_message_size": 200})
    assert ingest(small, "new-request-de.eml") == 65
    err = capsys.readouterr().err
    assert "message too large" in err and err.count("\n") == 1
    with Session(app.engine) as s:
        assert s.exec(select(InboundMail)).all() == []


def test_attachments_stored_and_inline_logo_once_per_ticket(desk: App) -> None:
    ingest(desk, "html-inline-logo-with-pdf.eml", "html-inline-logo-reply.eml")
    assert last_mail(desk).disposition == "commented SD-1"
    with Session(desk.engine) as s:
        rows = s.exec(select(Attachment).order_by(Attachment.id)).all()
        assert sorted((a.filename, a.content_type, a.comment_id is None) for a in rows) == [
            ("Rechnung.pdf", "application/pdf", True),
            ("image001.png", "image/png", True),
        ]
        logo = next(a for a in rows if a.filename == "image001.png")
        assert logo.content_id == "logo001@bauwerk" and logo.size > 0
        assert desk.blobs.get(s, logo.sha256)[:8] == b"\x89PNG\r\n\x1a\n"


def test_reporter_answering_colleagues_separate_ticket_threads_home(desk: App) -> None:
    # Without a shared organization the colleague's reply became SD-2 of its
    # own; the reporter's answer to it (In-Reply-To only) belongs in SD-1,
    # and the colleague still never sees SD-1.
    ingest(
        desk, "new-request-de.eml", "colleague-reply-same-org.eml", "reporter-answers-colleague-no-org.eml"
    )
    assert last_mail(desk).disposition == "commented SD-1"
    assert comments(desk, "SD-2") == []
    assert ("kai.weber@bauwerk-ag.de", "comment_added", "SD-1") not in outbox(desk)


def test_bounce_marks_outbound_mail_and_address_instead_of_ticket(desk: App) -> None:
    ingest(desk, "new-request-de.eml")
    with Session(desk.engine) as s, s.begin():
        row = s.exec(select(OutboundMail)).one()
        row.message_id = "<sd-notify-0001@servicedesk.xitrust.com>"  # as the sender would record it
        s.add(row)
    ingest(desk, "dsn-bounce-of-desk-notification.eml")
    assert last_mail(desk).disposition == "ignored: bounce"
    with Session(desk.engine) as s:
        assert s.exec(select(OutboundMail)).one().status == "bounced"
        anna = s.exec(select(Account).where(Account.email == "anna.mueller@bauwerk-ag.de")).one()
        assert anna.bounced_at is not None
        assert len(s.exec(select(Ticket)).all()) == 1
    # a bounced address gets no more mail about its tickets (until it writes
    # again or an operator clears it: test_attacks)
    before = len(outbox(desk))
    make_agent(desk, "max@xitrust.com")
    desk.comment("SD-1", "max@xitrust.com", "Wir melden uns.", internal=False)
    assert len(outbox(desk)) == before


def test_unknown_sender_rejected_by_policy_creates_nothing(app: App) -> None:
    strict = configured(app, desk={"unknown_senders": "reject"})
    ingest(strict, "new-request-de.eml")
    row = last_mail(strict)
    assert (row.status, row.disposition) == ("ignored", "ignored: unknown sender")
    with Session(strict.engine) as s:
        assert s.exec(select(Account)).all() == [] and s.exec(select(Ticket)).all() == []
    assert outbox(strict) == []


def test_robots_never_create_accounts(desk: App) -> None:
    ingest(desk, "auto-reply-to-ack.eml", "dsn-bounce-of-desk-notification.eml")
    with Session(desk.engine) as s:
        assert s.exec(select(Account)).all() == []
