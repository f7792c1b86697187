"""A full disk is transient trouble (SPEC §3): ``gateway ingest`` exits 75
and the SMTP listener answers ``451 4.3.0``, each with one plain line, never
a 5xx, never a traceback; the daemon keeps running, and once space is free
again the same message goes through, exactly once.

The gateway's state (SQLite and the blob store) lives on a small tmpfs
mounted for the test (the tests run as root, as CI does), which a filler
file then fills to the last byte. The message is larger than
``storage.spool_inline_max``, so the spool writes its raw bytes to the blob
store first: that write is what meets ENOSPC, deterministically. (A small
message spooled inline into the database may still fit: SQLite reuses its
WAL file's pages after a checkpoint, which needs no new space.)"""

from __future__ import annotations

import json
import os
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gatewayproc import DESK, GatewayProcess, child_env
from privileges import require_root

MESSAGE = (
    b"From: anna@bauwerk-ag.de\r\nTo: servicedesk@xitrust.com\r\nSubject: Protokoll anbei\r\n"
    b"Message-ID: <disk-full-1@bauwerk-ag.de>\r\n\r\n"
    + b"Das Protokoll des Exports:\r\n"
    + b"".join(b"%06d Export-Schritt abgeschlossen, keine Fehler gefunden.\r\n" % i for i in range(8000))
)  # ~480 KB: over spool_inline_max (256 KiB), so it goes to the blob store


class Disk:
    """A 16 MiB tmpfs; ``fill()`` takes every free byte, ``free()`` gives
    them back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        with open(self.filler, "ab") as fh:
            chunk = b"\0" * 65536
            try:
                while True:
                    fh.write(chunk)
                    fh.flush()
            except OSError:
                pass
            for size in (4096, 512, 1):  # the last partial blocks too
                try:
                    while True:
                        os.write(fh.fileno(), b"\0" * size)
                except OSError:
                    pass
        assert os.statvfs(self.path).f_bavail == 0

    def free(self) -> None:
        self.filler.unlink()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    require_root("mounts a 16 MiB tmpfs to fill the disk")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], check=True)
    try:
        yield Disk(mnt)
    finally:
        subprocess.run(["umount", "--lazy", str(mnt)], check=True)


def _gateway(
    tmp_path: Path, disk: Disk, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    env = child_env()
    env.update(
        GATEWAY__DATABASE__URL=f"sqlite:///{disk.path / 'gateway.db'}",
        GATEWAY__STORAGE__BLOBS=str(disk.path / "blobs"),
        GATEWAY__OUTBOUND__MAILDIR=str(tmp_path / "sent"),
    )
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], input=stdin, capture_output=True, env=env, cwd=tmp_path,
        timeout=120,
    )


def test_ingest_on_a_full_disk_exits_75_then_succeeds_once(tmp_path: Path, disk: Disk) -> None:
    first = _gateway(tmp_path, disk, "db", "upgrade")
    assert first.returncode == 0, first.stderr
    disk.fill()
    full = _gateway(tmp_path, disk, "ingest", stdin=MESSAGE)
    assert full.returncode == 75, full.stderr
    lines = full.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0] and str(disk.path) not in lines[0], lines[0]

    disk.free()
    again = _gateway(tmp_path, disk, "ingest", stdin=MESSAGE)
    assert again.returncode == 0, again.stderr
    mails = json.loads(_gateway(tmp_path, disk, "mail", "list", "--json").stdout)
    assert [(m["message_id"], m["status"], m["disposition"]) for m in mails] == [
        ("<disk-full-1@bauwerk-ag.de>", "done", "created SD-1")
    ]


def test_smtp_on_a_full_disk_answers_451_and_keeps_the_session(tmp_path: Path, disk: Disk) -> None:
    gw = GatewayProcess(
        tmp_path,
        database={"url": f"sqlite:///{disk.path / 'gateway.db'}"},
        storage={"blobs": str(disk.path / "blobs")},
    )
    try:
        gw.start()
        disk.fill()
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as c:
            c.ehlo("mx.bauwerk-ag.de")
            c.mail("anna@bauwerk-ag.de")
            c.rcpt(DESK)
            code, text = c.data(MESSAGE)
            assert (code, text) == (451, b"4.3.0 Temporary failure, please try again later"), (code, text)
            # The same session goes on: once there is space, the retry is accepted.
            disk.free()
            assert c.sendmail("anna@bauwerk-ag.de", [DESK], MESSAGE) == {}
        gw.wait_processed(1)
        assert gw.query("SELECT message_id, status, disposition FROM inbound_mail") == [
            ("<disk-full-1@bauwerk-ag.de>", "done", "created SD-1")
        ]
        assert "Traceback" not in gw.log_text()
        assert gw.stop() == 0
    finally:
        gw.kill()
