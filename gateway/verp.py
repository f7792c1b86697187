"""VERP return paths: each outbound mail goes out with its own envelope
sender, ``servicedesk+bounce-<outbox id>-<token>@xitrust.com``, so a bounce
names the mail it bounced even when it quotes none of it (the desk accepts
sub-addresses of its addresses). The token ties the path to that mail: it is
derived from the mail's Message-ID, which only the desk and the mail's
recipient know, so nobody can make up a return path for a mail they never
got. A bounce still counts only when it names that mail's recipient as
failed (``repo.record_bounce``)."""

from __future__ import annotations

import hashlib
import re

_VERP = re.compile(r"^(?P<local>[^+@]+)\+bounce-(?P<id>[0-9]{1,18})-(?P<token>[0-9a-f]{12})@(?P<domain>.+)$")


def token(message_id: str) -> str:
    return hashlib.sha256(b"verp\0" + message_id.encode("utf-8", "replace")).hexdigest()[:12]


def return_path(sender: str, outbox_id: int, message_id: str) -> str:
    """The envelope sender of outbox row ``outbox_id``: ``sender`` with a
    ``+bounce-…`` sub-address."""
    local, _, domain = sender.rpartition("@")
    return f"{local.split('+', 1)[0]}+bounce-{outbox_id}-{token(message_id)}@{domain}"


def parse(recipient: str | None) -> tuple[int, str] | None:
    """(outbox id, token) of a VERP address, or None."""
    m = _VERP.match((recipient or "").strip().lower())
    return (int(m.group("id")), m.group("token")) if m else None
