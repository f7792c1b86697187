"""Read one or two keys of the configuration without validating all of it.

``gateway ingest`` hands its message to a running daemon (``ingress/handoff``)
and must start in a few tens of milliseconds: loading ``Settings`` (pydantic,
pydantic-settings) alone costs more than the whole hand-off. This reads the
same sources in the same order — ``GATEWAY__SECTION__KEY`` from the
environment (case-insensitive, as pydantic-settings reads it), then the TOML
file (``--config``, else ``$GATEWAY_CONFIG``) — for the few keys the thin
client needs. Anything it cannot read returns None, and the caller takes the
full path, which then reports the problem properly.

The defaults live here so that ``settings.py`` and this module cannot
disagree about them.
"""

from __future__ import annotations

import os
import tomllib

TYPE_CHECKING = False  # typing costs ~5 ms at start; the type checker reads this block anyway
if TYPE_CHECKING:
    from typing import Any

DEFAULT_DESK_ADDRESS = "servicedesk@xitrust.com"
DEFAULT_LOCAL_SOCKET = "var/gateway.sock"

_MISSING = object()


class Peek:
    """The raw TOML table and the environment, read once."""

    def __init__(self, config_path: str | None) -> None:
        self.ok = True
        self.table: dict[str, Any] = {}
        path = config_path or os.environ.get("GATEWAY_CONFIG") or None
        if path is not None:
            try:
                with open(path, "rb") as fh:
                    self.table = tomllib.load(fh)
            except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
                self.ok = False
        self.env = {k.upper(): v for k, v in os.environ.items() if k.upper().startswith("GATEWAY__")}

    def get(self, section: str, key: str) -> Any:
        """The value of ``[section] key`` (environment first), or ``_MISSING``."""
        env = self.env.get(f"GATEWAY__{section}__{key}".upper())
        if env is not None:
            return env
        table = self.table.get(section)
        if isinstance(table, dict) and key in table:
            return table[key]
        return _MISSING

    def local_socket(self) -> str | None:
        """``[smtp] socket``: the daemon's local LMTP socket; None when the
        configuration disables it or cannot be read here."""
        value = self.get("smtp", "socket") if self.ok else None
        if value is _MISSING:
            return DEFAULT_LOCAL_SOCKET
        return value if isinstance(value, str) and value else None

    def first_desk_address(self) -> str | None:
        """The first of ``[desk] addresses`` (the default recipient of
        ``gateway ingest``); None when it cannot be read here."""
        value = self.get("desk", "addresses") if self.ok else None
        if value is _MISSING:
            return DEFAULT_DESK_ADDRESS
        if isinstance(value, str):  # from the environment: JSON, as pydantic-settings reads it
            import json

            try:
                value = json.loads(value)
            except ValueError:
                return None
        if isinstance(value, list) and value and isinstance(value[0], str):
            return value[0].strip().lower()
        return None
