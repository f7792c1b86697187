"""Is the From address vouched for by our own MTA? Agent privileges by mail
need a DMARC pass, or an aligned DKIM pass, in an ``Authentication-Results``
header (RFC 8601) written by ``security.trusted_authserv_id`` (SPEC §3
"Agents").

Anyone can put Authentication-Results headers into a message, so only a
header carrying exactly the configured authserv-id counts, and of those only
the topmost: the MTA prepends its own results above everything the message
brought along (RFC 8601 §5), so a forged ``dmarc=pass`` with our id lies
below the genuine one and is never read. (A second genuine header directly
below the first — two milters — cannot be told from a forged one, so it is
not read either: one of them carrying a pass is enough in practice.) The
operator's MTA must still strip incoming headers with our id (OpenDMARC's
and Rspamd's defaults do): a message that reaches us without a genuine
header would otherwise have its forged one on top.
"""

from __future__ import annotations

import re

from gateway.domain import ParsedMail, normalize_address

# Headers this stage reads; the parser must keep every value.
TRUST_HEADERS = frozenset({"authentication-results"})

# A property value ends at whitespace or ";" unless quoted; comments are gone
# by the time this runs.
_TOKEN = re.compile(r'(?:[^\s"]+|"(?:[^"\\]|\\.)*")+')
_QUOTED_PAIR = re.compile(r"\\(.)")


def authenticated_by(mail: ParsedMail, authserv_id: str, *, spf: bool = False) -> bool:
    """True when an Authentication-Results header from ``authserv_id``
    reports ``dmarc=pass`` for the From domain, or ``dkim=pass`` for a
    signing domain equal to or a parent of it (with ``spf``, also
    ``spf=pass`` for an aligned envelope sender: enough to believe the
    address wrote, not enough for agent rights). ``authserv_id`` "" never
    trusts anything."""
    wanted = authserv_id.strip().lower()
    if not wanted:
        return False
    if "@" not in mail.from_addr:
        return False
    from_domain = _domain(mail.from_addr)
    for header in mail.headers.get("authentication-results", ()):  # top first, as in the message
        if wanted not in header.lower():  # cheap skip of other servers' headers
            continue
        statements = _statements(header)
        head = statements[0].split()  # authserv-id [version]
        if not head or _unquote(head[0]) != wanted:
            continue
        # The topmost header with our id decides; anything below it may be forged.
        return any(_passes(statement, from_domain, spf) for statement in statements[1:])
    return False


def _passes(statement: str, from_domain: str, spf: bool = False) -> bool:
    """One ``method=result prop=value ...`` result of the header."""
    tokens = _TOKEN.findall(statement)
    if not tokens:
        return False
    method, _, result = tokens[0].partition("=")
    method = method.split("/", 1)[0].lower()  # "dkim/1=pass": a method version
    if _unquote(result) != "pass":
        return False
    props: dict[str, str] = {}
    for token in tokens[1:]:
        name, sep, value = token.partition("=")
        if sep:
            props.setdefault(name.lower(), _unquote(value))
    if method == "dmarc":
        # header.from is the domain DMARC evaluated; when present it must be
        # ours, so a message with two From headers cannot borrow a pass.
        evaluated = props.get("header.from")
        return evaluated is None or _domain(evaluated) == from_domain
    if method == "dkim":
        signer = props.get("header.d") or _domain(props.get("header.i", ""))
        return _aligned(signer, from_domain)
    if method == "spf" and spf:
        envelope = props.get("smtp.mailfrom") or props.get("smtp.helo") or ""
        return _aligned(_domain(envelope), from_domain)
    return False


def _aligned(signer: str, from_domain: str) -> bool:
    signer = signer.strip(".")
    # A signing domain without a dot would be a TLD: never a real signer,
    # and "parent of" must not make it cover every domain below it.
    if "." not in signer:
        return False
    return from_domain == signer or from_domain.endswith("." + signer)


def _statements(header: str) -> list[str]:
    """The header split at top-level ``;``, with (nested) comments removed
    and quoted strings kept intact."""
    statements: list[str] = []
    current: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    for ch in header:
        if escaped:
            escaped = False
            if depth == 0:
                current.append(ch)
            continue
        if ch == "\\" and (quoted or depth):
            escaped = True
            if depth == 0:
                current.append(ch)
            continue
        if depth:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            continue
        if quoted:
            if ch == '"':
                quoted = False
            current.append(ch)
        elif ch == '"':
            quoted = True
            current.append(ch)
        elif ch == "(":
            depth = 1
            current.append(" ")
        elif ch == ";":
            statements.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    statements.append("".join(current).strip())
    return statements


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = _QUOTED_PAIR.sub(r"\1", value[1:-1])
    return value.lower()


def _domain(addr: str) -> str:
    """Domain part of an address, or the value itself when it is a bare
    domain (``header.from=example.com``); ``@example.com`` works too."""
    addr = normalize_address(addr)
    return addr.rpartition("@")[2].strip(".")
