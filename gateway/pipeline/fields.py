"""Ticket fields and priority from a mail: ``Key: value`` lines at the very
top of the body (German or English labels), else the priority headers
(``X-Priority``, ``Importance``, ``Priority``) — SPEC §3 "Fields from mail".

Only the leading block is read: the scan stops at the first non-blank line
that is not a recognised ``Key: value`` line, so prose, quoted history and
forwarded headers further down never become fields.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.domain import ParsedMail, Priority
from gateway.settings import FieldOption, FieldsSettings

# Headers this stage reads; the parser must keep them in ``ParsedMail.headers``.
FIELD_HEADERS = frozenset({"x-priority", "importance", "priority", "x-msmail-priority"})

MAX_VALUE_CHARS = 500
# Labels are short; a longer text before the first colon is a sentence.
_MAX_KEY_CHARS = 40

_PRIORITY = "priority"
_LABELS: dict[str, str] = {
    "priorität": _PRIORITY,
    "prioritaet": _PRIORITY,
    "prioritat": _PRIORITY,
    "priority": _PRIORITY,
    "moxis domain": "moxis_domain",
    "moxis domäne": "moxis_domain",
    "browser": "browser",
    "hosting": "hosting",
    "komponenten": "components",
    "komponente": "components",
    "components": "components",
    "component": "components",
    "datum": "first_occurred_at",
    "date": "first_occurred_at",
    "erstes auftreten": "first_occurred_at",
    "first occurred": "first_occurred_at",
    "first occurred at": "first_occurred_at",
    "first occurrence": "first_occurred_at",
    "verantwortlich": "responsible_user",
    "verantwortlicher": "responsible_user",
    "responsible user": "responsible_user",
    "responsible": "responsible_user",
}

_PRIORITY_WORDS: dict[str, Priority] = {
    "niedrig": Priority.low,
    "low": Priority.low,
    "mittel": Priority.medium,
    "normal": Priority.medium,
    "medium": Priority.medium,
    "hoch": Priority.high,
    "high": Priority.high,
    "kritisch": Priority.critical,
    "critical": Priority.critical,
    "blocker": Priority.blocker,
    "blockierend": Priority.blocker,
}

_KEY_SEPARATORS = re.compile(r"[\s_\-]+")
_FIRST_WORD = re.compile(r"[^\W\d_]+")
# C0/C1 controls and DEL; tabs and newlines are turned into spaces first.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_WHITESPACE_CONTROL = re.compile(r"[\t\n\r]")

_TIME = r"(?:[T ,]\s*(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2}))?(?:\s*uhr)?)?"
_DATE_DE = re.compile(r"(?P<d>\d{1,2})\.(?P<m>\d{1,2})\.(?P<y>\d{4})" + _TIME + r"\s*$", re.IGNORECASE)
_DATE_ISO = re.compile(r"(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})" + _TIME + r"\s*$", re.IGNORECASE)

_X_PRIORITY = re.compile(r"\s*(\d)")
_HEADER_PRIORITY: dict[str, Priority | None] = {
    "high": Priority.high,
    "urgent": Priority.high,
    "low": Priority.low,
    "non-urgent": Priority.low,
    "normal": None,
}


@dataclass
class ExtractedFields:
    """What the mail says about the ticket; ``priority`` None means "keep the
    default"."""

    priority: Priority | None = None
    fields: dict[str, Any] = field(default_factory=dict)


def extract_fields(mail: ParsedMail, options: FieldsSettings | None = None) -> ExtractedFields:
    """Priority and custom fields from the top of the body, then headers;
    list fields and hosting matched to ``options`` (SPEC §2)."""
    result = ExtractedFields()
    text = mail.reply_text or mail.text
    for name, value in _leading_fields(text)[0]:
        if name == _PRIORITY:
            if result.priority is None:
                result.priority = _priority_from_word(value)
        elif value and name not in result.fields:  # the first line for a key wins
            result.fields[name] = _parse_date(value) if name == "first_occurred_at" else value
    if result.priority is None:
        result.priority = _priority_from_headers(mail)
    if options is not None:
        result.fields = match_options(result.fields, options)
    return result


_LIST_SEPARATORS = re.compile(r"\s*(?:[,;/]|\bund\b|\band\b|&)\s*", re.IGNORECASE)


def match_options(fields: dict[str, Any], options: FieldsSettings) -> dict[str, Any]:
    """Values from mail as the form's options where they can be: "Firefox,
    Edge" -> ``["firefox", "edge"]``, "MOXIS Cloud" -> ``"cloud"``; a part no
    option matches is kept as the customer wrote it."""
    out = dict(fields)
    for name in ("browser", "components"):
        value = out.get(name)
        if isinstance(value, str):
            parts = [p for p in _LIST_SEPARATORS.split(value) if p.strip()]
            matched = [_match(p, getattr(options, name)) or p.strip() for p in parts]
            out[name] = list(dict.fromkeys(matched))  # once each, in the customer's order
    hosting = out.get("hosting")
    if isinstance(hosting, str):
        out["hosting"] = _match(hosting, options.hosting) or hosting
    return out


def _match(text: str, options: Sequence[FieldOption]) -> str | None:
    wanted = _KEY_SEPARATORS.sub(" ", text).strip().casefold()
    for option in options:
        names = {option.value.replace("_", " "), option.de, option.en}
        if wanted in {_KEY_SEPARATORS.sub(" ", n).strip().casefold() for n in names if n}:
            return option.value
    return None


def strip_field_lines(text: str) -> str:
    """``text`` without the leading recognised ``Key: value`` lines (and the
    blank lines around them); unchanged when it has none."""
    found, end = _leading_fields(text)
    if not found:
        return text
    return text[end:].lstrip("\r\n")


def _leading_fields(text: str) -> tuple[list[tuple[str, str]], int]:
    """The recognised leading lines as (field name, clean value) pairs, and
    the offset just after the last of them."""
    found: list[tuple[str, str]] = []
    end = 0
    for stop, line in _lines(text):
        if not line.strip():
            continue
        parsed = _field_line(line)
        if parsed is None:
            break
        found.append(parsed)
        end = stop
    return found, end


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines with the offset just past each, lazily: bodies can be large and
    only the first few lines are ever looked at."""
    pos = 0
    length = len(text)
    while pos < length:
        nl = text.find("\n", pos)
        stop = length if nl < 0 else nl + 1
        yield stop, text[pos:stop].rstrip("\r\n")
        pos = stop


def _field_line(line: str) -> tuple[str, str] | None:
    key, sep, value = line.partition(":")
    if not sep or len(key) > _MAX_KEY_CHARS:
        return None
    # Mail clients render bold labels from HTML as "*Priorität:*".
    key = unicodedata.normalize("NFC", key).strip().strip("*").strip()
    name = _LABELS.get(_KEY_SEPARATORS.sub(" ", key).casefold())
    if name is None:
        return None
    return name, _clean(value.lstrip("*"))


def _clean(value: str) -> str:
    value = _CONTROL.sub("", _WHITESPACE_CONTROL.sub(" ", value)).strip()
    return value[:MAX_VALUE_CHARS].rstrip()


def _priority_from_word(value: str) -> Priority | None:
    # "Hoch (Produktion steht)" -> "hoch"; an unknown word is ignored rather
    # than guessed.
    m = _FIRST_WORD.match(value.casefold())
    return _PRIORITY_WORDS.get(m.group(0)) if m else None


def _parse_date(value: str) -> str:
    """ISO-8601 for ``dd.mm.yyyy`` / ``yyyy-mm-dd`` (with optional time),
    otherwise the text as the customer wrote it."""
    m = _DATE_DE.match(value) or _DATE_ISO.match(value)
    if m is None:
        return value
    try:
        day = dt.date(int(m["y"]), int(m["m"]), int(m["d"]))
        if m["H"] is None:
            return day.isoformat()
        time = dt.time(int(m["H"]), int(m["M"]), int(m["S"] or 0))
    except ValueError:  # 31.02.2026, 25:00
        return value
    return dt.datetime.combine(day, time).isoformat()


def _priority_from_headers(mail: ParsedMail) -> Priority | None:
    x_priority = mail.header("x-priority")
    if x_priority is not None:
        m = _X_PRIORITY.match(x_priority)
        if m is not None:
            level = int(m.group(1))
            if level in (1, 2):
                return Priority.high
            if level in (4, 5):
                return Priority.low
            # 3 is "Normal" (Outlook puts it on every mail): no opinion, so
            # Importance may still speak.
    for name in ("importance", "priority", "x-msmail-priority"):
        value = mail.header(name)
        if value is not None:
            word = value.split("(", 1)[0].strip().lower()
            if word in _HEADER_PRIORITY:
                return _HEADER_PRIORITY[word]
    return None
