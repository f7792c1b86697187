"""Reply text: the new part of a mail body, for the stored comment (SPEC §3
"Reply text").

Removes, in this order: everything from the desk's own "reply above this
line" marker down; quoted history under a German or English quote header
(Outlook ``-----Ursprüngliche Nachricht-----`` / ``Von:``+``Gesendet:``
blocks, ``Am … schrieb …:`` / ``On … wrote:`` attributions of Gmail, Apple
Mail, Thunderbird); ``>`` quoted lines; a ``-- `` signature and "Sent from my
iPhone" style trailers. Closing formulas ("Mit freundlichen Grüßen …") are
kept on purpose: when in doubt we keep text, never lose the message.

Own line-based rules rather than mail-parser-reply: on the corpus that
library's signature rule (any line starting with "- word" or "Thanks,"
truncates the rest of the mail) cut real content, and it strips every line's
indentation; see the tests for the cases covered.
"""

from __future__ import annotations

import re

REPLY_MARKER_DE = "-- Bitte oberhalb dieser Zeile antworten --"
REPLY_MARKER_EN = "-- Please reply above this line --"

# Matched loosely (quoted, re-wrapped or re-spaced by the customer's client).
_MARKER = re.compile(
    r"bitte\s+oberhalb\s+dieser\s+zeile\s+antworten|please\s+reply\s+above\s+this\s+line", re.IGNORECASE
)
_ORIGINAL_SEPARATOR = re.compile(
    r"^\s*[-_=*]{2,}\s*(?:Ursprüngliche\s+(?:Nachricht|Mail)|Original\s*Message|Originalnachricht|"
    r"Original-Nachricht|Antwort\s+Nachricht)\s*[-_=*]{2,}\s*$",  # "Mail": Zimbra
    re.IGNORECASE,
)
_UNDERSCORES = re.compile(r"^\s*_{10,}\s*$")
_HEADER_FROM = re.compile(r"^\s*\*?(?:From|Von)\s*:\*?\s*\S", re.IGNORECASE)
_HEADER_OTHER = re.compile(
    r"^\s*\*?(Sent|Gesendet|Date|Datum|To|An|Cc|Subject|Betreff)\s*:", re.IGNORECASE
)
_HEADER_ONE_LINE = re.compile(r"\b(?:From|Von)\s*:.*\b(?:Sent|Gesendet|Date|Datum)\s*:", re.IGNORECASE)
# Attributions: "On <date>, <who> wrote:", "Am <date> (um <time>) schrieb <who>:",
# "<who> schrieb am <date>:", "<who> wrote:" (Thunderbird), "<who> hat geschrieben:".
_ATTRIBUTION_STRONG = re.compile(
    r"^(?:On\s.*\bwrote|Am\s.*\bschrieb\b.*|Am\s.*\bgeschrieben)\s*:\s*$", re.IGNORECASE | re.DOTALL
)
# After the verb only a date may follow, whose time has colons between digits
# (Lotus Notes: "… schrieb am 18.03.2024 10:13:37:"). Horde: "Zitat von …:",
# "Quoting …:". All bounded: no line costs more than a few hundred steps.
_ATTRIBUTION_WEAK = re.compile(
    r"^(?:.{1,200}\b(?:wrote|schrieb|geschrieben)\b(?:[^:]|(?<=\d):(?=\d)){0,120}|"
    r"(?:Zitat\s+von|Quoting)\s.{1,200}):\s*$",
    re.IGNORECASE,
)
_SIG_DASHES = re.compile(r"^--\s?$")
_SENT_FROM = re.compile(
    r"^\s*(?:Sent\s+from\s+my\s|Sent\s+from\s+(?:Mail|Outlook)\s|Get\s+Outlook\s+for\s|"
    r"Von\s+meinem\s.{1,60}\sgesendet|Gesendet\s+von\s+meinem\s|Gesendet\s+(?:von|mit)\s+(?:Mail|Outlook)\s|"
    r"Von\s+Outlook\s+für\s)",
    re.IGNORECASE,
)
_TRAILING_JUNK = re.compile(r"^\s*(?:[-_=*~]{3,}\s*)?$")


def extract_reply(text: str) -> str:
    """The new text of a reply; falls back to the marker-stripped text when
    stripping would leave nothing."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for i, line in enumerate(lines):
        if _MARKER.search(line):
            lines = lines[:i]
            break
    fallback = "\n".join(lines).strip()

    cut = _history_start(lines)
    if cut is not None:
        lines = lines[:cut]
    lines = _drop_quotes(lines)
    lines = _drop_signature(lines)
    while lines and _TRAILING_JUNK.match(lines[-1]):
        lines.pop()
    result = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return result or fallback


def trim_blank_lines(text: str) -> str:
    """The text without blank lines before and whitespace after it (a
    description from mail ends in the empty lines clients leave before a
    signature or quote); the first line's indentation stays."""
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    return "\n".join(lines[start:]).rstrip()


def _is_quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _next_content(lines: list[str], start: int) -> int | None:
    for j in range(start, min(len(lines), start + 4)):
        if lines[j].strip():
            return j
    return None


def _attribution_span(lines: list[str], i: int) -> tuple[int, bool]:
    """(number of lines, strong?) of a quote attribution starting at line i,
    or (0, False). Gmail wraps long ones over two or three lines; a strong
    one starts with On/Am and carries a date (a digit)."""
    first = lines[i].strip()
    multi = first[:3].lower() in ("on ", "am ")
    for span in (1, 2, 3) if multi else (1,):
        if i + span > len(lines):
            break
        last = lines[i + span - 1].rstrip()
        if not last.endswith(":"):
            continue
        joined = " ".join(x.strip() for x in lines[i : i + span])
        if multi and _ATTRIBUTION_STRONG.match(joined) and any(c.isdigit() for c in joined):
            return span, True
        if _ATTRIBUTION_WEAK.match(joined):
            return span, False
        break
    return 0, False


def _history_start(lines: list[str]) -> int | None:
    """Index of the first line of quoted history that is *not* marked with
    ">" (Outlook style, or an attribution followed by unquoted text)."""
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped[0] == ">":
            continue
        if _ORIGINAL_SEPARATOR.match(stripped):
            return _with_separator(lines, i)
        if _HEADER_FROM.match(stripped) and (_header_block(lines, i) or _HEADER_ONE_LINE.search(stripped)):
            return _with_separator(lines, i)
        span, strong = _attribution_span(lines, i)
        if strong:
            nxt = _next_content(lines, i + span)
            if nxt is None or not _is_quoted(lines[nxt]):
                return i
    return None


def _header_block(lines: list[str], i: int) -> bool:
    """A From:/Von: line followed by at least two other header lines
    (Sent/Gesendet, To/An, Subject/Betreff ...) within the next six lines."""
    kinds = set()
    for line in lines[i + 1 : i + 7]:
        m = _HEADER_OTHER.match(line)
        if m:
            kinds.add(m.group(1).lower())
    return len(kinds) >= 2


def _with_separator(lines: list[str], i: int) -> int:
    """Include an Outlook "____" rule line directly above the header."""
    j = i - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    return j if j >= 0 and _UNDERSCORES.match(lines[j]) else i


def _drop_quotes(lines: list[str]) -> list[str]:
    """Remove ">" lines and the attribution lines that introduce them;
    unquoted lines in between (inline answers) stay."""
    keep = [True] * len(lines)
    for i, line in enumerate(lines):
        if _is_quoted(line):
            keep[i] = False
            continue
        span, _strong = _attribution_span(lines, i)
        if span:
            nxt = _next_content(lines, i + span)
            if nxt is not None and _is_quoted(lines[nxt]):
                keep[i : i + span] = [False] * span
    return [line for line, k in zip(lines, keep, strict=True) if k]


def _drop_signature(lines: list[str]) -> list[str]:
    """Cut at a "-- " signature separator or a mobile "sent from" trailer,
    but only below some real content."""
    seen_content = False
    for i, line in enumerate(lines):
        if seen_content and (_SIG_DASHES.match(line) or (len(line) < 100 and _SENT_FROM.match(line))):
            return lines[:i]
        if line.strip():
            seen_content = True
    return lines
