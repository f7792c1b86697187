"""Is this an e-mail message at all? One test, shared by ``gateway ingest``
when it spools a message itself (``pipe``) and when it hands the message to
the daemon (``handoff``, and the daemon's local socket in ``smtp``), so that
whether a daemon runs never changes which input is refused."""

from __future__ import annotations

import re

# A header line: a field name, a colon. Used to tell mail from other files.
_HEADER_LINE = re.compile(rb"^[!-9;-~]+:")


def check_message(raw: bytes) -> str | None:
    """Why ``raw`` is no e-mail message at all, or None."""
    if not raw.strip() or not _HEADER_LINE.match(raw.lstrip(b"\r\n")):
        return "not an e-mail message (no header)"
    return None
