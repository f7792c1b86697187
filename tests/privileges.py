"""What a test needs from the machine beyond the project's virtualenv.

``make test`` as root installs the Debian packages the integration tests
talk to (``scripts/debian-packages.txt``) and runs everything: there a
missing tool is a failure, never a skip. As another user it cannot install
or mount anything, so a test that needs root, or a tool that is not
installed, is skipped with the reason, which pytest's summary lists (-rs)."""

from __future__ import annotations

import os
import shutil

import pytest

IS_ROOT = os.geteuid() == 0
_SEARCH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def require_root(why: str) -> None:
    """Skip the calling test or fixture unless running as root."""
    if not IS_ROOT:
        pytest.skip(f"needs root: {why}")


def require_tool(name: str, package: str | None = None) -> str:
    """The path of ``name``; skipped (not root) or failed (root) without it."""
    path = shutil.which(name, path=_SEARCH)
    if path is not None:
        return path
    package = package or name
    if IS_ROOT:
        pytest.fail(f"{name} is not installed: `make test` installs the Debian package {package}",
                    pytrace=False)
    pytest.skip(f"{name} is not installed (Debian package {package}; `make test` as root installs it)")
