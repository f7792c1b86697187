"""screen: robots, auto-replies, loops, the desk's own addresses, bounces."""

from __future__ import annotations

import pytest

from gateway.domain import DeliveryReport, ParsedAttachment, ParsedMail
from gateway.pipeline.screen import MAX_RECEIVED, is_bounce, screen
from tests.mailfactory import fixture_bytes, make_mail, parsed_from_bytes

DESK = frozenset({"servicedesk@xitrust.com", "support@xitrust.com"})


def run(mail: ParsedMail, envelope_from: str | None = None) -> str | None:
    return screen(mail, desk_addresses=DESK, envelope_from=envelope_from)


@pytest.mark.parametrize(
    ("fixture", "envelope_from", "reason"),
    [
        ("auto-reply-out-of-office-de.eml", "m.huber@bauwerk-ag.de", "auto-reply"),
        ("auto-reply-out-of-office-en-precedence.eml", "j.smith@northwind-logistics.co.uk", "auto-reply"),
        ("x-autoreply-header.eml", "info@druckerei-lehner.example", "auto-reply"),
        ("exchange-inbox-rule-forward.eml", "h.gruber@bauwerk-ag.de", "auto-reply"),
        ("precedence-bulk-newsletter.eml", "bounce-4711@news.softwarenews.example", "bulk"),
        ("mailing-list-list-id.eml", "users-bounces@lists.opensign.example", "mailing list"),
        ("dsn-bounce-postfix.eml", "", "bounce"),
        ("bounce-qmail-failure-notice.eml", None, "bounce"),
        ("from-desk-own-address-loop.eml", "servicedesk@xitrust.com", "loop"),
        ("x-loop-desk-address.eml", "tickets@partner-helpdesk.example", "loop"),
        ("normal-outlook-with-suppress-header.eml", "anna.berger@bauwerk-ag.de", None),
    ],
)
def test_fixture(fixture: str, envelope_from: str | None, reason: str | None) -> None:
    mail = parsed_from_bytes(fixture_bytes(fixture))
    assert run(mail, envelope_from) == reason


def test_normal_outlook_mail_is_not_screened_with_unknown_envelope() -> None:
    mail = parsed_from_bytes(fixture_bytes("normal-outlook-with-suppress-header.eml"))
    assert "x-auto-response-suppress" in mail.headers  # the point of the fixture
    assert run(mail, None) is None
    assert not is_bounce(mail)


def test_dsn_fixture_is_bounce_even_without_parsed_report() -> None:
    mail = parsed_from_bytes(fixture_bytes("dsn-bounce-postfix.eml"))
    assert mail.report == DeliveryReport(
        failed_recipients=("k.wagner@bauwerk-ag.de",),
        original_message_id="<sd-12.1732702500.f00d@xitrust.com>",
        status="5.1.1",
    )
    assert is_bounce(mail)
    # The Content-Type alone identifies a DSN when a parser gives no report.
    mail.report = None
    assert is_bounce(mail)
    assert run(mail, "<>") == "bounce"


def test_bounce_wins_over_auto_submitted_null_sender_and_mailer_daemon() -> None:
    mail = make_mail(
        from_addr="mailer-daemon@mx.example.com",
        subject="Mail delivery failed: returning message to sender",
        headers={"auto-submitted": "auto-replied", "return-path": "<>"},
        report=DeliveryReport(failed_recipients=("x@example.com",), original_message_id=None),
    )
    assert run(mail, "") == "bounce"


def test_bounce_by_delivery_status_attachment() -> None:
    part = ParsedAttachment("details.txt", "message/delivery-status", b"Action: failed\n")
    assert is_bounce(make_mail(attachments=[part]))


@pytest.mark.parametrize(
    "subject",
    [
        "Undeliverable: Signatur schlägt fehl",
        "Unzustellbar: Ihr Ticket",
        "Delivery Status Notification (Failure)",
    ],
)
def test_plain_text_bounce_from_postmaster(subject: str) -> None:
    assert run(make_mail(from_addr="postmaster@bauwerk-ag.de", subject=subject)) == "bounce"


def test_failure_subject_from_a_person_is_not_a_bounce() -> None:
    mail = make_mail(subject="Undeliverable: why do I get this when sending to you?")
    assert not is_bounce(mail)
    assert run(mail, "anna.berger@bauwerk-ag.de") is None


def test_read_receipt_report_is_not_a_bounce_but_a_robot() -> None:
    mail = make_mail(
        headers={
            "content-type": 'multipart/report; report-type="disposition-notification"; boundary="b"',
            "auto-submitted": "auto-replied",
        }
    )
    assert not is_bounce(mail)
    assert run(mail) == "auto-reply"


def test_from_desk_address_is_loop_before_auto_reply() -> None:
    mail = make_mail(from_addr="Support@XiTrust.com", headers={"auto-submitted": "auto-generated"})
    assert run(mail) == "loop"


def test_x_loop_with_display_name() -> None:
    assert run(make_mail(headers={"x-loop": "XiTrust <support@xitrust.com>"})) == "loop"
    assert run(make_mail(headers={"x-loop": "tickets@partner-helpdesk.example"})) is None


def test_too_many_received_headers_is_loop() -> None:
    hop = "from a.example by b.example; Thu, 27 Nov 2026 09:00:00 +0100"
    assert run(make_mail(headers={"received": [hop] * MAX_RECEIVED})) is None
    assert run(make_mail(headers={"received": [hop] * (MAX_RECEIVED + 1)})) == "loop"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("auto-replied", "auto-reply"),
        ("Auto-Generated", "auto-reply"),
        ("auto-replied; owner-email=boss@bauwerk-ag.de", "auto-reply"),
        ("auto-notified (vacation)", "auto-reply"),
        ("no", None),
        ("No", None),
        ("no (sent by a person)", None),
    ],
)
def test_auto_submitted(value: str, reason: str | None) -> None:
    assert run(make_mail(headers={"auto-submitted": value})) == reason


@pytest.mark.parametrize("name", ["X-Autoreply", "X-Autorespond", "X-MS-Exchange-Inbox-Rules-Loop"])
def test_auto_reply_headers(name: str) -> None:
    assert run(make_mail(headers={name: "yes"})) == "auto-reply"


def test_x_auto_response_suppress_alone_is_not_a_reason() -> None:
    assert run(make_mail(headers={"x-auto-response-suppress": "All"})) is None


def test_out_of_office_subject_needs_a_robot_header() -> None:
    subject = "Abwesenheitsnotiz: Re: [SD-12] Signatur"
    assert run(make_mail(subject=subject)) is None
    assert run(make_mail(subject=subject, headers={"auto-submitted": "no"})) is None
    assert run(make_mail(subject=subject, headers={"precedence": "junk"})) == "auto-reply"
    assert run(make_mail(subject="Automatic reply: hi", headers={"precedence": "list"})) == "auto-reply"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"precedence": "bulk"}, "bulk"),
        ({"precedence": "JUNK"}, "bulk"),
        ({"precedence": "list"}, "bulk"),
        ({"precedence": "list", "list-unsubscribe": "<mailto:u@lists.example>"}, "mailing list"),
        ({"list-id": "Users <users.lists.example>"}, "mailing list"),
        ({"precedence": "bulk", "list-id": "<news.example>"}, "bulk"),
        # Transactional mail carries List-Unsubscribe too; alone it is no reason.
        ({"list-unsubscribe": "<https://example.com/u>"}, None),
        ({"precedence": "normal"}, None),
    ],
)
def test_bulk_and_lists(headers: dict[str, str], reason: str | None) -> None:
    assert run(make_mail(headers=headers)) == reason


@pytest.mark.parametrize("envelope_from", ["", "<>", " <> "])
def test_null_envelope_sender(envelope_from: str) -> None:
    assert run(make_mail(), envelope_from) == "null sender"


def test_unknown_envelope_is_not_null() -> None:
    assert run(make_mail(), None) is None


def test_null_return_path() -> None:
    assert run(make_mail(headers={"return-path": "<>"}), None) == "null sender"
    assert run(make_mail(headers={"return-path": "<anna.berger@bauwerk-ag.de>"}), None) is None


def test_list_wins_over_null_sender() -> None:
    assert run(make_mail(headers={"list-id": "<users.lists.example>"}), "") == "mailing list"


@pytest.mark.parametrize("sender", ["MAILER-DAEMON@mx.bauwerk-ag.de", "postmaster@bauwerk-ag.de"])
def test_mailer_daemon_sender(sender: str) -> None:
    assert run(make_mail(from_addr=sender, subject="Warnung: Postfach fast voll")) == "mailer-daemon"


def test_mailer_daemon_envelope() -> None:
    assert run(make_mail(), "MAILER-DAEMON@mx.bauwerk-ag.de") == "mailer-daemon"


def test_customer_named_postmaster_elsewhere_in_address_passes() -> None:
    assert run(make_mail(from_addr="postmaster.team@bauwerk-ag.de"), "postmaster.team@bauwerk-ag.de") is None
