"""Reply stripping (SPEC §3 "Reply text"): new text only, German and English
quote headers, the desk's marker, signatures; never the actual message."""

from __future__ import annotations

import pytest

from gateway.pipeline.reply_text import REPLY_MARKER_DE, REPLY_MARKER_EN, extract_reply, trim_blank_lines


def test_marker_constants_are_the_exact_desk_lines() -> None:
    assert REPLY_MARKER_DE == "-- Bitte oberhalb dieser Zeile antworten --"
    assert REPLY_MARKER_EN == "-- Please reply above this line --"


@pytest.mark.parametrize("marker", [REPLY_MARKER_DE, REPLY_MARKER_EN, "> " + REPLY_MARKER_EN])
def test_everything_from_the_marker_down_is_removed(marker: str) -> None:
    text = f"Danke, passt.\n\n{marker}\n\nIhr Ticket SD-12 wurde aktualisiert.\nLink: https://x\n"
    assert extract_reply(text) == "Danke, passt."


def test_on_wrote_with_quoted_lines() -> None:
    text = (
        "Works now, thanks!\n\n"
        "On Mon, 4 Mar 2024 at 08:22, Markus Weiß <markus@example.com> wrote:\n"
        "> Please restart the service.\n>\n> Regards\n"
    )
    assert extract_reply(text) == "Works now, thanks!"


def test_gmail_attribution_wrapped_over_two_lines() -> None:
    text = (
        "Thanks, fixed.\n\n"
        "On Fri, Mar 8, 2024 at 4:02 PM XiTrust Servicedesk <\n"
        "servicedesk@xitrust.com> wrote:\n\n"
        "> Please check the URL.\n"
    )
    assert extract_reply(text) == "Thanks, fixed."


def test_am_schrieb_apple_mail_style() -> None:
    text = (
        "Hallo,\n\nes geht wieder.\n\n"
        "> Am 27.11.2026 um 09:30 schrieb XiTrust Servicedesk <servicedesk@xitrust.com>:\n"
        ">\n> Bitte testen Sie erneut.\n"
    )
    assert extract_reply(text) == "Hallo,\n\nes geht wieder."


def test_am_schrieb_followed_by_unquoted_history_is_cut() -> None:
    text = (
        "Passt, danke.\n\n"
        "Am 04.03.2024 um 08:22 schrieb Anna Huber <anna@bauwerk-ag.de>:\n"
        "Hallo Support,\nder Login geht nicht.\n"
    )
    assert extract_reply(text) == "Passt, danke."


@pytest.mark.parametrize(
    "separator, header",
    [
        ("-----Ursprüngliche Nachricht-----", "Von: Anna <a@b.de>\nGesendet: 04.03.2024 14:58\nAn: sd@x.com"),
        ("-----Original Message-----", "From: Anna <a@b.de>\nSent: 04.03.2024 14:58\nTo: sd@x.com"),
    ],
)
def test_outlook_original_message_separator(separator: str, header: str) -> None:
    text = (
        f"Neue Info: Fehler 500.\n\nMfG\nKai\n\n{separator}\n{header}\n"
        "Betreff: X\n\nAlter Text\nmehr alter Text\n"
    )
    assert extract_reply(text) == "Neue Info: Fehler 500.\n\nMfG\nKai"


@pytest.mark.parametrize(
    "block",
    [
        "Von: XiTrust Servicedesk <servicedesk@xitrust.com>\nGesendet: Freitag, 8. März 2024 16:02\n"
        "An: Markus <m@x.at>\nBetreff: [SD-12] Zertifikat",
        "From: XiTrust Servicedesk <servicedesk@xitrust.com>\nSent: Friday, March 8, 2024 4:02 PM\n"
        "To: Markus <m@x.at>\nSubject: [SD-12] Certificate",
        "*From:* XiTrust Servicedesk <servicedesk@xitrust.com>\n*Sent:* Friday, March 8, 2024 4:02 PM\n"
        "*To:* Markus <m@x.at>",
    ],
)
def test_outlook_header_block_with_underscore_rule(block: str) -> None:
    text = f"Erledigt.\n\n________________________________\n{block}\n\nOld text that must go.\n"
    assert extract_reply(text) == "Erledigt."


def test_dash_dash_signature_removed() -> None:
    assert extract_reply("Version 9.2.3.\n\n-- \nOliver Brown\nOrbit Labs\n") == "Version 9.2.3."


@pytest.mark.parametrize(
    "trailer", ["Sent from my iPhone", "Von meinem iPhone gesendet", "Get Outlook for Android"]
)
def test_mobile_trailer_removed(trailer: str) -> None:
    assert extract_reply(f"Geht wieder.\n\n{trailer}\n") == "Geht wieder."


def test_interleaved_answers_are_kept() -> None:
    text = (
        "On 3/11/24 17:20, XiTrust Servicedesk wrote:\n"
        "> Which version?\n\nVersion 9.2.3.\n\n> Small documents?\n\nYes, those work.\n"
    )
    assert extract_reply(text) == "Version 9.2.3.\n\nYes, those work."


def test_conservative_with_prose_that_looks_like_a_header() -> None:
    # no date and no quote below: this is the customer's own text
    text = "Am Montag schrieb mir der Kollege:\nder Export bricht ab.\n\nFrom the server log:\n  ERROR x\n"
    assert extract_reply(text) == text.strip()


def test_key_value_fields_are_not_a_header_block() -> None:
    text = "Priorität: hoch\nDatum: 04.03.2024\nBrowser: Firefox\n\nHallo,\nbitte prüfen.\n"
    assert extract_reply(text) == text.strip()


def test_closing_formula_is_kept() -> None:
    text = "Bitte um Rückruf.\n\nMit freundlichen Grüßen\nAnna Huber\nBauwerk AG\n"
    assert extract_reply(text) == text.strip()


def test_only_quote_falls_back_to_marker_stripped_text() -> None:
    text = "> just a quote\n> nothing new\n\n" + REPLY_MARKER_EN + "\nold\n"
    assert extract_reply(text) == "> just a quote\n> nothing new"


def test_empty_and_crlf() -> None:
    assert extract_reply("") == ""
    assert extract_reply("Hi\r\n\r\n> old\r\n") == "Hi"



@pytest.mark.parametrize(
    "history",
    [
        # Zimbra: its separator line says "Mail", not "Nachricht"
        '----- Ursprüngliche Mail -----\nVon: "Noël Dvořák" <n.dvorak@klinikum-hochrhein.de>\n'
        'An: "Servicedesk" <servicedesk@xitrust.com>\nGesendet: Montag, 4. März 2024 10:43:46\n'
        "Betreff: Zertifikat läuft ab\n\nalter Text\n",
        # classic Lotus Notes: the time after "schrieb am" has colons
        "Ursula Wimmer <ursulaw@stubenberg.gv.at> schrieb am 18.03.2024 10:13:37:\n\n> alter Text\n",
        "Ursula Wimmer <ursulaw@stubenberg.gv.at> wrote on 03/18/2024 10:13:37 AM:\n\n> old text\n",
        # Horde webmail
        "Zitat von Johannes Höllrigl <johannesh@wohnbau-suedtirol.it>:\n\n> alter Text\n",
        "Quoting Johannes Höllrigl <johannesh@wohnbau-suedtirol.it>:\n\n> old text\n",
    ],
)
def test_zimbra_notes_and_horde_histories(history: str) -> None:
    assert extract_reply("Danke, das hat geholfen.\n\n" + history) == "Danke, das hat geholfen."


@pytest.mark.parametrize(
    ("text", "trimmed"),
    [
        ("Text\n\n\n\n", "Text"),
        ("\n\n  \nHallo,\n\n  der Drucker.\n \t\n", "Hallo,\n\n  der Drucker."),
        ("    eingerückt\nzweite Zeile  \n", "    eingerückt\nzweite Zeile"),
        ("\n \n", ""),
    ],
)
def test_trim_blank_lines(text: str, trimmed: str) -> None:
    assert trim_blank_lines(text) == trimmed
