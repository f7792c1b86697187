"""Who sent it: the one addr-spec of the From header (SPEC §3 "Who sent it").

A display name that looks like an address (``From: anna@bauwerk-ag.de
<attacker@evil.example>``) must not make the mail Anna's: the sender is the
address in angle brackets, and a From that does not name exactly one
address is not guessed at but quarantined with the reason. The standard
library's ``getaddresses`` is the wrong tool here: before the fix of
CVE-2023-27043 it splits such a value into two addresses and the first one
wins, and with the fix it gives up without saying why.

One left-to-right scan over the value that keeps track of quoted strings,
comments and angle brackets: linear in the length of the value, whatever
it contains (a From folded over thousands of lines must not cost more than
reading it), and the value is bounded before the scan.
"""

from __future__ import annotations

from gateway.domain import Quarantine, normalize_address
from gateway.pipeline.charsets import FOLD, decode_header_value, fix_8bit

_UNCLOSED = "\0unclosed"  # marks an angle address that never closed
MAX_FROM = 4096  # characters of an unfolded From value; real ones are far shorter
MAX_ADDRESS = 254  # RFC 5321 4.5.3.1.3: the longest path that can be delivered


def sender_of(value: str) -> tuple[str, str]:
    """(display name, normalised address) of a From value; Quarantine when
    it does not name exactly one address."""
    text = FOLD.sub("", fix_8bit(value))
    if len(text) > MAX_FROM:
        raise Quarantine(f"From header longer than {MAX_FROM} characters")
    outside, angles, commas = _scan(text)
    if angles and angles[-1] == _UNCLOSED:
        raise Quarantine("From header is malformed (a '<' without '>')")
    if len(angles) > 1 or (commas and _has_more_than_one_part(outside)):
        raise Quarantine("From header names more than one address")
    if angles:
        addr = angles[0].rpartition(":")[2]  # an obsolete route "@a,@b:user@host"
        name = _display_name("".join(outside).strip())
    else:
        addr, name = "".join(outside).strip(), ""
    addr = addr.strip()
    if "@" not in addr:
        raise Quarantine("From header does not name an address")
    if not _is_addr_spec(addr):
        raise Quarantine("From header's address is malformed")
    if len(addr) > MAX_ADDRESS:
        raise Quarantine(f"From header's address is longer than {MAX_ADDRESS} characters")
    return name, normalize_address(addr)


def _scan(text: str) -> tuple[list[str], list[str], int]:
    """The text outside angle brackets (comments dropped, quoted strings
    kept), the contents of each ``<…>`` and the number of top-level commas.
    (A group, ``undisclosed-recipients:;``, names no address and fails the
    addr-spec check; ``Name: anna@x <eve@y>`` is eve@y, whose address is in
    the brackets.)"""
    outside: list[str] = []
    angles: list[str] = []
    current: list[str] | None = None  # inside <…>
    depth = commas = 0
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
            (current if current is not None else outside).append(ch)
            continue
        if depth:  # inside a (comment), which may nest
            if ch == "\\":
                escaped = True
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            continue
        if quoted:
            if ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
            (current if current is not None else outside).append(ch)
            continue
        if current is not None:
            if ch == ">":
                angles.append("".join(current))
                current = None
            elif ch == '"':
                quoted = True
                current.append(ch)
            else:
                current.append(ch)
            continue
        if ch == '"':
            quoted = True
            outside.append(ch)
        elif ch == "(":
            depth = 1
            outside.append(" ")
        elif ch == "<":
            current = []
        elif ch == ",":
            commas += 1
            outside.append(ch)
        else:
            outside.append(ch)
    if current is not None:  # an unclosed "<": not an address we can trust
        angles.append(_UNCLOSED)
    return outside, angles, commas


def _has_more_than_one_part(outside: list[str]) -> bool:
    """A comma outside quotes separates addresses unless all but one of the
    pieces are empty (``anna@x.de,`` is one address)."""
    pieces = [p.strip() for p in "".join(outside).split(",")]
    return sum(1 for p in pieces if p) > 1


def _display_name(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return decode_header_value(text)


def _is_addr_spec(addr: str) -> bool:
    """local@domain: a non-empty local part (quoted or not) and a domain of
    one word, no spaces or brackets anywhere outside the quotes."""
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain:
        return False
    if any(ch.isspace() or ch in '<>()[],;:"\\\0' for ch in domain):
        return False
    if local.startswith('"') and local.endswith('"') and len(local) >= 2:
        return True
    return not any(ch.isspace() or ch in '<>()[],;:"\\\0@' for ch in local)
