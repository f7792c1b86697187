"""The ``gateway`` command line called in-process, as the CLI tests call it:
a config file naming a test ``App``'s database, blobs and Maildir, and one
call that returns the exit code with what it printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway import cli
from gateway.app import App


def cli_config(app: App, tmp_path: Path, extra: str = "") -> str:
    """Write ``gateway.toml`` for ``app``'s stores (``extra``: more TOML
    sections) and return its path."""
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"[database]\nurl = {json.dumps(app.settings.database.url)}\n"
        f"[storage]\nblobs = {json.dumps(app.settings.storage.blobs)}\n"
        f"[outbound]\nmaildir = {json.dumps(app.settings.outbound.maildir)}\n"
        + extra
    )
    return str(path)


def gateway(config: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``gateway --config CONFIG ARGS…``: exit code, stdout, stderr."""
    capsys.readouterr()
    code = cli.main(["--config", config, *args])
    out, err = capsys.readouterr()
    return code, out, err


def ok(config: str, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Stdout of a command that must succeed (its stderr if it does not)."""
    code, out, err = gateway(config, capsys, *args)
    assert code == 0, err
    return out
