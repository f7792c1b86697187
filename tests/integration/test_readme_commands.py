"""The README's operator guide, run: every command in it that is not marked
``# as root`` is listed here verbatim, the guide may contain no other, and
each one runs (in the guide's order, against a temp state directory, a
copy of the example config and the test PostgreSQL cluster) with the
outcome the guide promises. Paths of the target machine are mapped into
the temp directory; nothing else is changed."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from netutil import free_port
from pgcluster import PgCluster
from privileges import require_tool

from tests.gatewayproc import message

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"

# The guide's commands, in its order (checked against README.md below).
SETUP = [
    "export GATEWAY_CONFIG=/etc/servicedesk-gateway/gateway.toml",
    "cd /var/lib/servicedesk-gateway",
    "gateway check-config",
    "gateway db upgrade",
]
INGEST = "gateway ingest --recipient servicedesk@xitrust.com < message.eml"
DB_UPGRADE = "gateway db upgrade"
SQLITE_BACKUP = [
    "mkdir -p /var/backups/servicedesk-gateway",
    'sqlite3 var/gateway.db ".backup /var/backups/servicedesk-gateway/gateway.db"',
    "cp -a var/blobs /var/backups/servicedesk-gateway/",
]
SQLITE_RESTORE = [
    "rm -f var/gateway.db-wal var/gateway.db-shm",
    "cp /var/backups/servicedesk-gateway/gateway.db var/gateway.db",
    "cp -a /var/backups/servicedesk-gateway/blobs var/",
    "gateway db upgrade",
    "gateway ticket list",
]
PG_BACKUP = [
    "pg_dump --format=custom --file=/var/backups/servicedesk-gateway/gateway.pgdump "
    "postgresql://gateway@db.internal/gateway",
    "pg_restore --clean --if-exists --no-owner --dbname=postgresql://gateway@db.internal/gateway "
    "/var/backups/servicedesk-gateway/gateway.pgdump",
]
QUARANTINE = [
    "gateway mail list --status quarantined",
    "gateway mail show ID",
    "gateway mail show ID --raw > mail-ID.eml",
]
REPROCESS = "gateway mail reprocess ID"
RETENTION = ["gateway retention run --dry-run", "gateway retention run"]
STATUS = ["gateway status", "gateway status --json"]
METRICS = "curl -s http://127.0.0.1:9125/metrics"
FIND = [
    "gateway mail list --from anna@bauwerk-ag.de --since 7d",
    "gateway mail list --status quarantined --newest --limit 20",
    "gateway outbox list --to @bauwerk-ag.de --template comment_added --since 2026-11-01",
    "gateway account list --role agent",
    'gateway account list --org "Bauwerk AG" --limit 50 --offset 50',
]

GDPR = [
    "gateway account export anna@bauwerk-ag.de --output anna-export.json",
    "gateway account erase anna@bauwerk-ag.de",
    "gateway account erase anna@bauwerk-ag.de --yes",
]

GUIDE = [*SETUP, INGEST, DB_UPGRADE, *SQLITE_BACKUP, *SQLITE_RESTORE, *PG_BACKUP, DB_UPGRADE,
         *QUARANTINE, REPROCESS, *RETENTION, *STATUS, METRICS, *FIND, *GDPR]


def guide_commands() -> list[str]:
    """Command lines of the operator guide's ``sh`` blocks, except blocks
    whose first line is ``# as root``."""
    text = README.read_text().split("## Operator guide", 1)[1]
    text = re.split(r"^## ", text, flags=re.M)[0]
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, flags=re.M | re.S):
        lines = block.splitlines()
        if lines and lines[0].startswith("# as root"):
            continue
        commands += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return commands


def test_the_guide_has_no_untested_command() -> None:
    assert guide_commands() == GUIDE


def deep_message(depth: int) -> bytes:
    """Nested multiparts: over the default limits.max_depth (30), so the
    pipeline quarantines it."""
    head = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(depth))
    tail = "".join(f"\r\n--b{i}--\r\n" for i in reversed(range(depth)))
    return (
        "From: kai@bauwerk-ag.de\r\nTo: servicedesk@xitrust.com\r\nSubject: deep\r\n"
        "Message-ID: <deep@bauwerk-ag.de>\r\nMIME-Version: 1.0\r\n" + head
        + "Content-Type: text/plain\r\n\r\nganz unten" + tail
    ).encode()


class Operator:
    """A shell as the service user: GATEWAY_CONFIG exported, in the state
    directory, the target machine's paths mapped into tmp_path."""

    def __init__(self, tmp_path: Path) -> None:
        self.state = tmp_path / "var-lib"
        self.etc = tmp_path / "etc"
        self.backup = tmp_path / "backups"
        self.state.mkdir()
        self.etc.mkdir()
        self.map = {
            "/etc/servicedesk-gateway": str(self.etc),
            "/var/lib/servicedesk-gateway": str(self.state),
            "/var/backups/servicedesk-gateway": str(self.backup),
        }
        bin_dir = str(Path(sys.executable).parent)  # the venv's `gateway`
        self.env = {k: v for k, v in os.environ.items() if not k.upper().startswith("GATEWAY_")}
        self.env["PATH"] = f"{bin_dir}:{self.env.get('PATH', '/usr/bin:/bin')}"
        self.env.pop("NOTIFY_SOCKET", None)
        self.exported = False
        self.cwd = tmp_path

    def sub(self, command: str) -> str:
        for a, b in self.map.items():
            command = command.replace(a, b)
        return command

    def run(self, command: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        line = self.sub(command)
        if line.startswith("export "):
            key, value = line.split(" ", 1)[1].split("=", 1)
            self.env[key] = value
            return subprocess.CompletedProcess(line, 0, "", "")
        if line.startswith("cd "):
            self.cwd = Path(line[3:])
            return subprocess.CompletedProcess(line, 0, "", "")
        done = subprocess.run(["bash", "-c", line], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == expect, f"{command}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def gateway_json(self, args: str) -> object:
        return json.loads(self.run(f"gateway {args} --json").stdout)


def test_operator_guide_commands(tmp_path: Path, pg_cluster: PgCluster) -> None:
    require_tool("sqlite3")  # the backup command
    op = Operator(tmp_path)
    config = (REPO / "config" / "gateway.example.toml").read_text()
    (op.etc / "gateway.toml").write_text(config)  # `install ... gateway.toml`

    # Installing: check the config, create the schema.
    for command in SETUP:
        op.run(command)
    assert op.cwd == op.state
    assert "[database]" in op.run("gateway check-config").stdout
    assert (op.state / "var" / "gateway.db").exists()

    # Postfix by hand: one good message (exit 0), one too big (exit 65).
    (op.state / "message.eml").write_bytes(message(1))
    op.run(INGEST)
    (op.state / "message.eml").write_bytes(message(2, body="x" * 27_000_000))
    op.run(INGEST, expect=65)
    op.run(DB_UPGRADE)

    # The quarantine: a mail over the depth limit.
    (op.state / "message.eml").write_bytes(deep_message(40))
    op.run(INGEST)

    # SQLite backup, then a restore into the same (stopped) state directory.
    for command in SQLITE_BACKUP:
        op.run(command)
    shutil.rmtree(op.state / "var" / "blobs")
    (op.state / "var" / "gateway.db").unlink()
    for command in SQLITE_RESTORE:
        op.run(command)
    assert "SD-1" in op.run("gateway ticket list").stdout

    # PostgreSQL: schema, backup, restore over it.
    pg_url = pg_cluster.create_database()
    libpq = pg_url.replace("postgresql+psycopg://", "postgresql://")
    op.map["postgresql://gateway@db.internal/gateway"] = libpq
    pg_env = {**op.env, "GATEWAY__DATABASE__URL": pg_url}
    subprocess.run(["gateway", "db", "upgrade"], env=pg_env, cwd=op.state, check=True,
                   capture_output=True, timeout=120)
    for command in PG_BACKUP:
        op.run(command)
    assert (op.backup / "gateway.pgdump").stat().st_size > 0

    # Upgrading: the schema is current, nothing to do.
    op.run(DB_UPGRADE)

    # Reading the quarantine.
    listed = op.gateway_json("mail list --status quarantined")
    assert isinstance(listed, list) and len(listed) == 1, listed
    mail_id = str(listed[0]["id"])
    assert listed[0]["message_id"] == "<deep@bauwerk-ag.de>"
    assert "nest" in listed[0]["error"], listed  # the reason names the depth budget
    op.map["ID"] = mail_id
    assert "quarantined" in op.run(QUARANTINE[0]).stdout
    assert "<deep@bauwerk-ag.de>" in op.run(QUARANTINE[1]).stdout
    op.run(QUARANTINE[2])
    assert (op.state / f"mail-{mail_id}.eml").read_bytes() == deep_message(40)

    # The fix: a raised limit (as an operator would in gateway.toml), then reprocess.
    (op.etc / "gateway.toml").write_text(config.replace("max_depth = 30", "max_depth = 60"))
    op.run(REPROCESS)
    assert op.gateway_json(f"mail show {mail_id}")["status"] == "done"  # type: ignore[index]

    # Retention: everything here is recent; nothing is due.
    due = "0 raw mails older than 90 days, 0 outbox bodies older than 30 days"
    assert op.run(RETENTION[0]).stdout.startswith(f"retention (dry run): would remove {due}")
    assert op.run(RETENTION[1]).stdout.startswith(f"retention: removed {due}")

    # Status, and metrics from a running daemon.
    assert "2 done" in op.run(STATUS[0]).stdout
    status = op.gateway_json("status")
    assert status["spool"]["depth"] == 0 and status["quarantined"] == 0  # type: ignore[index]
    op.run(STATUS[1])
    # Ports picked just before the start: other test runs may share the machine.
    smtp_port, metrics_port = free_port(), free_port()
    (op.etc / "gateway.toml").write_text(
        config.replace("max_depth = 30", "max_depth = 60")
        .replace('listen = "127.0.0.1:2525"', f'listen = "127.0.0.1:{smtp_port}"')
        .replace('listen = "127.0.0.1:9125"', f'listen = "127.0.0.1:{metrics_port}"')
    )
    op.map["127.0.0.1:9125"] = f"127.0.0.1:{metrics_port}"
    log = tmp_path / "serve.log"
    with open(log, "wb") as err:
        serve = subprocess.Popen(["gateway", "serve"], cwd=op.state, env=op.env,
                                 stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 60
        while True:
            done = subprocess.run(["bash", "-c", op.sub(METRICS)], capture_output=True, text=True, timeout=30)
            if done.returncode == 0 and "gateway_inbound_mails" in done.stdout:
                break
            assert serve.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert 'gateway_inbound_mails{status="done"} 2.0' in done.stdout
    finally:
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(60) == 0

    # Finding mail: every listing runs; the sender's mails are found.
    for command in FIND:
        op.run(command)
    assert "anna@bauwerk-ag.de" in op.run(FIND[0]).stdout

    # Erasure and export: Anna, who wrote SD-1 at the start.
    op.run(GDPR[0])
    export = json.loads((op.state / "anna-export.json").read_text(encoding="utf-8"))
    assert [t["key"] for t in export["tickets"]] == ["SD-1"]
    assert "would be erased" in op.run(GDPR[1], expect=1).stdout
    assert "is erased" in op.run(GDPR[2]).stdout
    assert op.gateway_json("ticket show SD-1")["reporter"] == "deleted user"  # type: ignore[index]
