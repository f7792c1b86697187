"""Each command imports only what it uses (issue: every command took 1.5 s
to start). Checked in a fresh interpreter per command by the modules it
loaded, not by timing: ``bench/bench_cli.py`` has the figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

_PROBE = """
import contextlib, io, json, sys
from gateway.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""

# Never needed by a read-only command on SQLite.
SQLITE_READ_NEVER = {
    "psycopg", "alembic", "aiosmtpd", "aiosmtplib", "aioimaplib", "apscheduler", "jinja2", "tqdm",
    "argon2", "prometheus_client", "sqlalchemy.dialects.postgresql", "gateway.pipeline.runner",
    "gateway.pipeline.parse", "gateway.daemon", "gateway.outbound.render",
}


def loaded(tmp_path: Path, *argv: str) -> tuple[int, set[str]]:
    env = {"PATH": "/usr/bin:/bin", "GATEWAY__DATABASE__URL": f"sqlite:///{tmp_path / 'gateway.db'}",
           "GATEWAY__STORAGE__BLOBS": str(tmp_path / "blobs")}
    out = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=120)
    report = json.loads(out.stdout.splitlines()[-1])
    return report["code"], set(report["modules"])


@pytest.mark.parametrize(
    "argv", [["--help"], ["ticket", "--help"], ["ingest", "--help"], ["mail", "list", "-h"]]
)
def test_help_imports_nothing_heavy(tmp_path: Path, argv: list[str]) -> None:
    code, modules = loaded(tmp_path, *argv)
    assert code == 0
    heavy = {m.split(".")[0] for m in modules} & {"sqlalchemy", "sqlmodel", "pydantic", "pydantic_settings"}
    assert not heavy
    assert not any(m.startswith(("gateway.store", "gateway.pipeline", "gateway.settings")) for m in modules)


def test_read_commands_on_sqlite_skip_what_they_do_not_use(tmp_path: Path) -> None:
    assert loaded(tmp_path, "db", "upgrade")[0] == 0  # a migrated database (Alembic used here only)
    for argv in (["ticket", "list"], ["mail", "list", "--json"], ["status"], ["account", "list"]):
        code, modules = loaded(tmp_path, *argv)
        assert code == 0, argv
        unused = {m for m in modules if m in SQLITE_READ_NEVER or m.split(".")[0] in SQLITE_READ_NEVER}
        assert not unused, argv
