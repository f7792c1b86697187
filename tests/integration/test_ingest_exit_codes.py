"""``gateway ingest`` as an MTA's pipe transport sees it: 0 accepted,
65 bad data, 75 temporary failure (database locked or down) — always one
line on stderr, never a traceback."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

FIXTURE = Path(__file__).parent.parent / "fixtures" / "rules" / "new-request-de.eml"


def run(
    tmp_path: Path, *args: str, stdin: bytes | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY")}
    base.update(
        GATEWAY__DATABASE__URL=f"sqlite:///{tmp_path}/gw.db",
        GATEWAY__STORAGE__BLOBS=str(tmp_path / "blobs"),
        GATEWAY__OUTBOUND__MAILDIR=str(tmp_path / "sent"),
    )
    base.update(env)
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        input=stdin.decode("latin-1") if stdin is not None else None,
        capture_output=True,
        text=True,
        env=base,
        timeout=120,
    )


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_stdin_message_accepted_with_0(tmp_path: Path) -> None:
    result = run(tmp_path, "ingest", stdin=FIXTURE.read_bytes())
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_not_a_mail_rejected_with_65(tmp_path: Path) -> None:
    result = run(tmp_path, "ingest", stdin=b"\x00\x01 binary garbage, no header at all\n")
    assert result.returncode == 65
    assert "not an e-mail message" in one_line(result.stderr)


def test_missing_path_is_not_a_traceback(tmp_path: Path) -> None:
    result = run(tmp_path, "ingest", str(tmp_path / "nope.eml"))
    assert result.returncode == 66  # EX_NOINPUT
    assert "no such file" in one_line(result.stderr)


def test_locked_sqlite_gives_75(tmp_path: Path) -> None:
    assert run(tmp_path, "db", "upgrade").returncode == 0
    holder = sqlite3.connect(tmp_path / "gw.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        result = run(tmp_path, "ingest", stdin=FIXTURE.read_bytes(), GATEWAY__DATABASE__BUSY_TIMEOUT_MS="200")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 75, result.stderr
    line = one_line(result.stderr)
    assert "temporary failure" in line and "gw.db" not in line
    # after the lock is gone, the MTA's retry is accepted
    assert run(tmp_path, "ingest", stdin=FIXTURE.read_bytes()).returncode == 0


def test_reads_do_not_wait_for_a_sqlite_writer(tmp_path: Path) -> None:
    """Listings, status and metrics read a WAL snapshot: while another
    process holds the write lock (the daemon committing a batch), they
    answer at once instead of waiting for it and failing with 75."""
    assert run(tmp_path, "ingest", stdin=FIXTURE.read_bytes()).returncode == 0
    holder = sqlite3.connect(tmp_path / "gw.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("UPDATE inbound_mail SET error = 'in flight'")
        for argv in (("status", "--json"), ("mail", "list", "--json"), ("ticket", "list", "--json")):
            result = run(tmp_path, *argv, GATEWAY__DATABASE__BUSY_TIMEOUT_MS="200")
            assert result.returncode == 0, (argv, result.stderr)
        mails = json.loads(run(tmp_path, "mail", "list", "--json").stdout)
        assert [m["error"] for m in mails] == [None]  # the snapshot, not the uncommitted write
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_postgresql_down_gives_75(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/gateway"
    result = run(tmp_path, "ingest", stdin=FIXTURE.read_bytes(), GATEWAY__DATABASE__URL=url)
    assert result.returncode == 75, result.stderr
    line = one_line(result.stderr)
    assert "temporary failure" in line and "127.0.0.1" not in line
