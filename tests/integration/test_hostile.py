"""Hostile mail through the real command line: every message ends as a
ticket or a quarantine entry with its reason, ``gateway ingest`` never
prints a traceback, and a 20 MB attachment is handled in bounded memory."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import hostile, tnefwriter

FIXTURES = Path(__file__).parent.parent / "fixtures"
HOSTILE_FIXTURES = [
    "broken-mime-no-boundary.eml",
    "raw-8bit-headers.eml",
    "path-traversal-filename.eml",
    "garbage-headers.eml",
    "winmail-dat.eml",
    "utf8-labelled-us-ascii.eml",
    "cp1252-labelled-latin1.eml",
]

# Measures the peak RSS of the gateway process it starts (ru_maxrss, KiB).
RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.run(sys.argv[1:]).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


def gateway(
    tmp_path: Path, *args: str, stdin: bytes | None = None, **overrides: str
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY")}
    env.update(overrides)
    env.update(
        GATEWAY__DATABASE__URL=f"sqlite:///{tmp_path}/gw.db",
        GATEWAY__STORAGE__BLOBS=str(tmp_path / "blobs"),
        GATEWAY__OUTBOUND__MAILDIR=str(tmp_path / "sent"),
    )
    return subprocess.run(
        [sys.executable, "-c", RSS_WRAPPER, sys.executable, "-m", "gateway", *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=300,
    )


def mail_log(tmp_path: Path) -> list[dict[str, object]]:
    out = gateway(tmp_path, "mail", "list", "--json")
    assert out.returncode == 0, out.stderr
    rows: list[dict[str, object]] = json.loads(out.stdout)
    return rows


def assert_clean(result: subprocess.CompletedProcess[bytes]) -> None:
    err = result.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err, err


@pytest.mark.parametrize("name", HOSTILE_FIXTURES)
def test_hostile_fixture_ends_as_ticket_or_quarantine(tmp_path: Path, name: str) -> None:
    result = gateway(tmp_path, "ingest", str(FIXTURES / name))
    assert_clean(result)
    assert result.returncode == 0
    (row,) = mail_log(tmp_path)
    assert row["status"] in ("done", "quarantined"), row
    if row["status"] == "quarantined":
        assert row["error"], row


@pytest.mark.parametrize(
    ("maker", "reason"),
    [
        (lambda: hostile.deep_nesting(1000), "MIME nesting too deep"),
        (lambda: hostile.deep_rfc822(1000), "nest"),
        (lambda: hostile.many_parts(20_000), "too many MIME parts"),
    ],
    ids=["1000-deep-nesting", "1000-deep-rfc822", "20000-parts"],
)
def test_structural_bombs_are_quarantined_with_reason(tmp_path: Path, maker: object, reason: str) -> None:
    raw = maker()  # type: ignore[operator]
    result = gateway(tmp_path, "ingest", stdin=raw)
    assert_clean(result)
    assert result.returncode == 0
    (row,) = mail_log(tmp_path)
    assert row["status"] == "quarantined" and reason in str(row["disposition"]), row


def test_path_traversal_filename_never_becomes_a_path(tmp_path: Path) -> None:
    gateway(tmp_path, "ingest", str(FIXTURES / "path-traversal-filename.eml"))
    (row,) = mail_log(tmp_path)
    shown = gateway(tmp_path, "ticket", "show", str(row["ticket"]), "--json")
    names = [a["filename"] for a in json.loads(shown.stdout)["attachments"]]
    assert names and all("/" not in n and "\\" not in n and not n.startswith(".") for n in names), names
    # blobs are stored under their digest only
    for path in (tmp_path / "blobs").rglob("*"):
        assert path.is_dir() or len(path.name) == 64


def ticket_of_stdin(tmp_path: Path, raw: bytes) -> dict[str, object]:
    result = gateway(tmp_path, "ingest", stdin=raw)
    assert_clean(result)
    assert result.returncode == 0, result.stderr
    (row,) = mail_log(tmp_path)
    assert row["status"] == "done", row
    shown = gateway(tmp_path, "ticket", "show", str(row["ticket"]), "--json")
    assert shown.returncode == 0, shown.stderr
    ticket: dict[str, object] = json.loads(shown.stdout)
    return ticket


def test_winmail_dat_becomes_its_real_attachments_and_is_kept(tmp_path: Path) -> None:
    pdf, xlsx = b"%PDF-1.4\n" + bytes(range(256)) * 64, b"PK\3\4 sheet"
    stream = tnefwriter.tnef(
        [
            tnefwriter.Attachment("Prüfbericht März.pdf", pdf, mime_type="application/pdf", title="PRFBER~1"),
            tnefwriter.Attachment("..\\Messwerte.xlsx", xlsx),
        ],
        rtf=tnefwriter.compress_rtf(rb"{\rtf1\ansi Der Export bricht mit Fehler 413 ab.\par Gr\'fc\'dfe}"),
    )
    ticket = ticket_of_stdin(tmp_path, tnefwriter.mail_with_winmail(stream))  # no text part at all
    attachments = ticket["attachments"]
    assert isinstance(attachments, list)
    assert [(a["filename"], a["content_type"], a["size"]) for a in attachments] == [
        ("Prüfbericht März.pdf", "application/pdf", len(pdf)),
        ("Messwerte.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", len(xlsx)),
        ("winmail.dat", "application/ms-tnef", len(stream)),
    ]
    # the bytes in the blob store are the files' own
    assert [a["sha256"] for a in attachments] == [
        hashlib.sha256(data).hexdigest() for data in (pdf, xlsx, stream)
    ]
    assert ticket["description"] == "Der Export bricht mit Fehler 413 ab.\nGrüße"


def test_corrupt_winmail_dat_still_makes_a_ticket_with_the_dat_kept(tmp_path: Path) -> None:
    stream = tnefwriter.tnef([tnefwriter.Attachment("a.pdf", b"%PDF" * 1000)])
    cut = stream[: len(stream) // 2]
    ticket = ticket_of_stdin(tmp_path, tnefwriter.mail_with_winmail(cut, text="Siehe Anhang."))
    attachments = ticket["attachments"]
    assert isinstance(attachments, list)
    assert [(a["filename"], a["size"]) for a in attachments] == [("winmail.dat", len(cut))]
    assert ticket["description"] == "Siehe Anhang."


def test_20mb_attachment_in_bounded_memory(tmp_path: Path) -> None:
    # 20 MiB decoded is ~28 MB of base64: above the 25 MiB default, so this
    # desk allows 40 MB messages.
    result = gateway(
        tmp_path,
        "ingest",
        stdin=hostile.big_attachment(20 * 1024 * 1024),
        GATEWAY__SMTP__MAX_MESSAGE_SIZE=str(40 * 1024 * 1024),
        GATEWAY__LIMITS__MAX_ATTACHMENT_SIZE=str(40 * 1024 * 1024),
    )
    assert_clean(result)
    assert result.returncode == 0, result.stderr
    peak_kib = int(result.stderr.decode().strip().splitlines()[-1])
    assert peak_kib < 300 * 1024, f"peak RSS {peak_kib / 1024:.0f} MiB"
    (row,) = mail_log(tmp_path)
    assert row["status"] == "done", row
    shown = json.loads(gateway(tmp_path, "ticket", "show", str(row["ticket"]), "--json").stdout)
    assert max(a["size"] for a in shown["attachments"]) >= 20 * 1024 * 1024


def test_oversize_message_refused_with_65_and_one_line(tmp_path: Path) -> None:
    env_limit = 1024 * 1024
    raw = hostile.big_attachment(2 * 1024 * 1024)
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "ingest"],
        input=raw,
        capture_output=True,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY")},
            "GATEWAY__DATABASE__URL": f"sqlite:///{tmp_path}/gw.db",
            "GATEWAY__STORAGE__BLOBS": str(tmp_path / "blobs"),
            "GATEWAY__SMTP__MAX_MESSAGE_SIZE": str(env_limit),
        },
        timeout=120,
    )
    assert result.returncode == 65
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "message too large" in lines[0], lines
