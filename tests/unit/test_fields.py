"""fields: ``Key: value`` lines at the top of the body, priority headers."""

from __future__ import annotations

import pytest

from gateway.domain import Priority
from gateway.pipeline.fields import (
    MAX_VALUE_CHARS,
    ExtractedFields,
    extract_fields,
    match_options,
    strip_field_lines,
)
from gateway.settings import Settings
from tests.mailfactory import fixture_bytes, make_mail, parsed_from_bytes


def body(text: str, **kw: object) -> ExtractedFields:
    return extract_fields(make_mail(text=text, **kw))


def test_german_fixture_with_all_fields() -> None:
    mail = parsed_from_bytes(fixture_bytes("fields-de-technical-support.eml"))
    result = extract_fields(mail)
    # The body's "Kritisch" beats the header's X-Priority 5.
    assert result.priority is Priority.critical
    assert result.fields == {
        "moxis_domain": "moxis.bauwerk-ag.de",
        "browser": "Microsoft Edge 131",
        "hosting": "Cloud",
        "components": "Signaturfeld, PDF-Viewer",
        "first_occurred_at": "2026-11-26T14:05:00",
        "responsible_user": "Herr Lechner",
    }


def test_fields_below_the_greeting_are_not_read_headers_are() -> None:
    mail = parsed_from_bytes(fixture_bytes("fields-none-xpriority-high.eml"))
    result = extract_fields(mail)
    assert result.fields == {}
    assert result.priority is Priority.high  # from X-Priority 1, not "niedrig" in the prose


def test_english_labels_case_and_whitespace() -> None:
    result = body(
        "PRIORITY :high\n"
        "moxis domain:   https://moxis.northwind.example  \n"
        "Components: Workflow\n"
        "First occurred: 2026-11-20\n"
        "Responsible user: j.smith@northwind.example\n"
        "\n"
        "Hi, the workflow hangs.\n"
    )
    assert result.priority is Priority.high
    assert result.fields == {
        "moxis_domain": "https://moxis.northwind.example",
        "components": "Workflow",
        "first_occurred_at": "2026-11-20",
        "responsible_user": "j.smith@northwind.example",
    }


@pytest.mark.parametrize(
    ("value", "priority"),
    [
        ("niedrig", Priority.low),
        ("Low", Priority.low),
        ("mittel", Priority.medium),
        ("normal", Priority.medium),
        ("Medium", Priority.medium),
        ("HOCH", Priority.high),
        ("high", Priority.high),
        ("kritisch", Priority.critical),
        ("Critical!", Priority.critical),
        ("Blocker", Priority.blocker),
        ("blockierend", Priority.blocker),
        ("Hoch (Produktion steht)", Priority.high),
        ("sehr dringend", None),
        ("5", None),
        ("", None),
    ],
)
def test_priority_words(value: str, priority: Priority | None) -> None:
    assert body(f"Priorität: {value}\n\nText").priority is priority


@pytest.mark.parametrize("label", ["Prioritaet", "priorität", "Priority", "*Priorität:*"])
def test_priority_label_spellings(label: str) -> None:
    line = f"{label} hoch" if label.endswith(":*") else f"{label}: hoch"
    assert body(line + "\nText").priority is Priority.high


def test_decomposed_umlaut_in_label() -> None:
    assert body("Priorita\u0308t: hoch\n").priority is Priority.high  # NFD from macOS Mail


def test_unknown_priority_value_keeps_block_and_falls_back_to_headers() -> None:
    result = body("Priorität: asap\nBrowser: Chrome\n", headers={"importance": "High"})
    assert result.priority is Priority.high
    assert result.fields == {"browser": "Chrome"}


def test_scan_stops_at_first_unrecognised_line() -> None:
    result = body("Browser: Safari\nKunde: Bauwerk AG\nHosting: Cloud\n")
    assert result.fields == {"browser": "Safari"}


def test_greeting_first_means_no_fields() -> None:
    assert body("Hallo,\nBrowser: Safari\n").fields == {}


def test_leading_and_inner_blank_lines_allowed() -> None:
    result = body("\n\r\n   \nBrowser: Safari\r\n\r\nHosting: On-Premise\r\nText")
    assert result.fields == {"browser": "Safari", "hosting": "On-Premise"}


def test_reply_text_is_preferred_over_text() -> None:
    mail = make_mail(text="Browser: Chrome\n\n> Browser: Opera", reply_text="Browser: Firefox\n")
    assert extract_fields(mail).fields == {"browser": "Firefox"}
    mail = make_mail(text="Browser: Chrome\n", reply_text="")
    assert extract_fields(mail).fields == {"browser": "Chrome"}


def test_first_line_for_a_key_wins_and_empty_values_are_skipped() -> None:
    result = body("Browser:\nBrowser: Edge\nBrowser: Chrome\n")
    assert result.fields == {"browser": "Edge"}


def test_value_is_capped_and_control_characters_stripped() -> None:
    result = body("Komponente: Sig\x00na\x1btur\tfeld\x7f\nMOXIS Domain: " + "x" * 2000 + "\n")
    assert result.fields["components"] == "Signatur feld"
    assert result.fields["moxis_domain"] == "x" * MAX_VALUE_CHARS


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("26.11.2026", "2026-11-26"),
        ("1.2.2026", "2026-02-01"),
        ("26.11.2026 14:05", "2026-11-26T14:05:00"),
        ("26.11.2026, 14:05:30 Uhr", "2026-11-26T14:05:30"),
        ("2026-11-26", "2026-11-26"),
        ("2026-11-26T08:15", "2026-11-26T08:15:00"),
        ("2026-11-26 08:15:09", "2026-11-26T08:15:09"),
        ("31.02.2026", "31.02.2026"),
        ("26.11.2026 25:00", "26.11.2026 25:00"),
        ("letzte Woche Dienstag", "letzte Woche Dienstag"),
        ("26.11.2026 ungefähr", "26.11.2026 ungefähr"),
    ],
)
def test_first_occurred_dates(value: str, stored: str) -> None:
    for label in ("Datum", "Date", "Erstes Auftreten", "First occurred"):
        assert body(f"{label}: {value}\n").fields == {"first_occurred_at": stored}


@pytest.mark.parametrize(
    ("headers", "priority"),
    [
        ({"x-priority": "1 (Highest)"}, Priority.high),
        ({"x-priority": "2 (High)"}, Priority.high),
        ({"x-priority": "1"}, Priority.high),
        ({"x-priority": "3 (Normal)"}, None),
        ({"x-priority": "4 (Low)"}, Priority.low),
        ({"x-priority": "5 (Lowest)"}, Priority.low),
        ({"x-priority": "3 (Normal)", "importance": "high"}, Priority.high),
        ({"x-priority": "5", "importance": "high"}, Priority.low),
        ({"importance": "High"}, Priority.high),
        ({"importance": "low"}, Priority.low),
        ({"importance": "normal"}, None),
        ({"priority": "urgent"}, Priority.high),
        ({"priority": "non-urgent"}, Priority.low),
        ({"x-msmail-priority": "High"}, Priority.high),
        ({"x-priority": "garbage"}, None),
        ({}, None),
    ],
)
def test_priority_headers(headers: dict[str, str], priority: Priority | None) -> None:
    assert body("Hallo,\nText", headers=headers).priority is priority


def test_body_priority_beats_headers() -> None:
    assert body("Priority: low\n", headers={"x-priority": "1 (Highest)"}).priority is Priority.low


def test_strip_field_lines() -> None:
    text = "\nPriorität: hoch\n\nBrowser: Edge\n\nHallo,\nDatum: gestern\n"
    assert strip_field_lines(text) == "Hallo,\nDatum: gestern\n"


def test_strip_field_lines_without_fields_is_identity() -> None:
    text = "\n\nHallo,\nBrowser: Edge\n"
    assert strip_field_lines(text) is text


def test_strip_field_lines_only_fields() -> None:
    assert strip_field_lines("Browser: Edge\r\nHosting: Cloud") == ""


def test_long_body_only_top_is_scanned() -> None:
    text = "Browser: Edge\nHallo\n" + "Hosting: Cloud\n" * 100_000
    assert body(text).fields == {"browser": "Edge"}


def test_values_from_mail_are_matched_to_the_forms_options() -> None:
    options = Settings().fields
    got = match_options({
        "browser": "Firefox, Edge und Opera", "hosting": "MOXIS Cloud",
        "components": "Signieren; User management", "moxis_domain": "moxis.example.com",
    }, options)
    assert got == {
        "browser": ["firefox", "edge", "Opera"],  # what matches nothing stays as written
        "hosting": "cloud",
        "components": ["signing", "user_management"],
        "moxis_domain": "moxis.example.com",
    }
    assert match_options({"hosting": "On-Premise", "browser": "chrome/CHROME"}, options) == {
        "hosting": "On-Premise", "browser": ["chrome"]}
    custom = Settings(fields={"browser": ["chrome", {"value": "ie", "de": "Internet Explorer",
                                                      "en": "Internet Explorer"}]}).fields
    assert match_options({"browser": "internet explorer, Chrome"}, custom) == {"browser": ["ie", "chrome"]}
    assert custom.browser[0].de == "Chrome"  # a plain known value keeps its built-in labels
