"""Locate the team's shared tools (``../shared/tools`` beside the checkout;
``$GATEWAY_SHARED`` overrides). A missing folder is an error, not a skip."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def shared_tool(name: str) -> Path:
    base = Path(os.environ.get("GATEWAY_SHARED", ROOT.parent / "shared"))
    path = base / "tools" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: set GATEWAY_SHARED to the shared/ folder")
    return path
