"""The corpus generator (tests/corpus) keeps its promises: deterministic
bytes, the advertised mix, consistent threads and headers, messages that
parse as the manifest says, valid attachments, an mbox that round-trips, a
CLI that keeps the manifest out of the mail directory, and a scorer that
counts right."""

from __future__ import annotations

import collections
import email
import email.policy
import json
import mailbox
import re
import struct
import subprocess
import sys
import unicodedata
import zlib
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.corpus.generate import Message, generate, main, write_mbox
from tests.corpus.people import DOMAINS
from tests.corpus.score import score

REPO = Path(__file__).resolve().parents[2]
N, SEED = 2000, 1
MIME_TYPES = {"png": "image/png", "pdf": "application/pdf", "log": "text/plain"}


@pytest.fixture(scope="module")
def corpus() -> list[Message]:
    return generate(N, SEED)


@pytest.fixture(scope="module")
def parsed(corpus: list[Message]) -> list[EmailMessage]:
    return [email.message_from_bytes(raw, policy=email.policy.default) for raw, _ in corpus]


def _rows(corpus: list[Message]) -> list[dict[str, Any]]:
    return [info for _, info in corpus]


# -- determinism ---------------------------------------------------------------
def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    first, again, other = generate(300, 5), generate(300, 5), generate(300, 6)
    assert first == again
    assert [raw for raw, _ in first] != [raw for raw, _ in other]
    assert len({raw for raw, _ in first} & {raw for raw, _ in other}) == 0


# -- the mix -------------------------------------------------------------------
def test_mix_within_loose_bounds(corpus: list[Message]) -> None:
    rows = _rows(corpus)
    assert [r["index"] for r in rows] == list(range(1, N + 1))
    kinds = collections.Counter(r["kind"] for r in rows)
    assert 0.55 * N <= kinds["new"] <= 0.65 * N, kinds
    assert 0.32 * N <= kinds["reply"] <= 0.42 * N, kinds
    assert 0.01 * N <= kinds["auto_reply"] <= 0.035 * N, kinds
    assert 0.004 * N <= kinds["bounce"] <= 0.02 * N, kinds

    replies = [r for r in rows if r["kind"] == "reply"]
    colleague = sum(r["colleague"] for r in replies)
    assert 0.10 <= colleague / len(replies) <= 0.20, colleague
    assert 0.02 <= sum(1 for r in replies if not r["references"]) / len(replies) <= 0.15
    assert 0.02 <= sum(1 for r in replies if r["in_reply_to"] is None) / len(replies) <= 0.15
    assert 0.15 * N <= sum(r["html"] for r in rows) <= 0.27 * N
    assert 0.07 * N <= sum(r["attachment"] is not None for r in rows) <= 0.13 * N
    assert {r["attachment"]["type"] for r in rows if r["attachment"]} >= {"png", "pdf"}
    assert {r["lang"] for r in rows} == {"de", "en"}
    assert {r["charset"] for r in rows} >= {"utf-8", "iso-8859-1", "windows-1252", "us-ascii"}
    assert {r["cte"] for r in rows} == {"quoted-printable", "base64", "8bit", "7bit"}
    prefixes = {re.match(r"(?:(?:AW|RE|Re|Antwort): )+", r["subject"]).group(0) for r in replies}  # type: ignore[union-attr]
    assert prefixes >= {"AW: ", "RE: ", "Re: ", "AW: AW: "}

    # ~200 senders over ~40 domains, some companies writing far more than others
    new = [r for r in rows if r["kind"] == "new"]
    assert 150 <= len({r["sender"] for r in new}) <= 220
    assert len(DOMAINS) == len(set(DOMAINS)) >= 38
    per_domain = collections.Counter(r["sender"].rpartition("@")[2] for r in new)
    assert set(per_domain) <= set(DOMAINS) and len(per_domain) >= 36
    counts = sorted(per_domain.values())
    assert counts[-1] >= 4 * counts[len(counts) // 2], per_domain.most_common(3)
    assert all(r["sender"] == r["sender"].lower() for r in rows if r["kind"] != "bounce")


# -- threads and headers -------------------------------------------------------
def test_threads_start_with_an_earlier_new_request(corpus: list[Message]) -> None:
    rows = _rows(corpus)
    by_id = {r["message_id"]: r for r in rows}
    assert len(by_id) == N, "Message-IDs are unique"
    for r in rows:
        root = by_id[r["thread"]]
        assert root["kind"] == "new" and root["thread"] == root["message_id"]
        if r["kind"] == "new":
            assert r["thread"] == r["message_id"] and r["in_reply_to"] is None and not r["references"]
            continue
        assert root["index"] < r["index"], r
        if r["kind"] == "reply":
            assert r["subject"].endswith(root["subject"]) and r["subject"] != root["subject"]
            sender_domain = r["sender"].rpartition("@")[2]
            assert sender_domain == root["sender"].rpartition("@")[2]
            assert r["colleague"] == (r["sender"] != root["sender"])
            if r["in_reply_to"]:
                parent = by_id[r["in_reply_to"]]
                assert parent["index"] < r["index"] and parent["thread"] == r["thread"]
                assert parent["kind"] in ("new", "reply")


def test_raw_headers_match_the_manifest(corpus: list[Message], parsed: list[EmailMessage]) -> None:
    rows = _rows(corpus)
    by_id = {r["message_id"]: r for r in rows}
    for (raw, r), msg in zip(corpus, parsed, strict=True):
        head = raw.split(b"\n\n", 1)[0]
        assert head.isascii() and max(len(line) for line in head.split(b"\n")) <= 998
        assert msg["Message-ID"] == r["message_id"]
        assert str(msg["Subject"]) == r["subject"]
        assert msg["From"].addresses[0].addr_spec == r["sender"]
        assert not re.search(r"\[?SD-\d+", r["subject"]), "no ticket keys: the desk assigns them"
        irt = msg["In-Reply-To"]
        assert (str(irt).strip() if irt else None) == r["in_reply_to"]
        assert ("References" in msg) == r["references"]
        if r["kind"] == "reply" and r["references"]:
            refs = str(msg["References"]).split()
            assert refs[-1] == r["in_reply_to"] or r["in_reply_to"] is None
            for ref in refs:
                assert by_id[ref]["thread"] == r["thread"] and by_id[ref]["index"] < r["index"]
        if r["kind"] == "auto_reply":
            robot = {k.lower(): str(v).lower() for k, v in msg.items()}
            assert (robot.get("auto-submitted", "no") != "no" or robot.get("x-autoreply") == "yes"
                    or robot.get("precedence") in ("bulk", "auto_reply"))
            assert r["in_reply_to"].endswith("@servicedesk.xitrust.com>")
        if r["kind"] == "bounce":
            assert msg["Return-Path"] == "<>" and r["sender"].lower().startswith("mailer-daemon@")
            assert msg.get_content_type() == "multipart/report"
            assert msg.get_param("report-type") == "delivery-status"
            status = next(p for p in msg.walk() if p.get_content_type() == "message/delivery-status")
            blocks: list[Any] = status.get_payload()  # type: ignore[assignment]
            assert any(str(b["Action"]) == "failed" and r["failed_recipient"] in str(b["Final-Recipient"])
                       for b in blocks)
            returned = next(p for p in msg.walk() if p.get_content_type() == "text/rfc822-headers")
            assert "@servicedesk.xitrust.com>" in returned.get_content()
        else:
            assert "X-Mailer" in msg or "User-Agent" in msg or r["client"] in ("owa", "gmail")


# -- MIME as the manifest says -------------------------------------------------
def _valid_png(data: bytes) -> bool:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, size = 8, b"", (0, 0)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(tag + body) == crc
        if tag == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif tag == b"IDAT":
            idat += body
        pos += 12 + length
    width, height = size
    return tag == b"IEND" and len(zlib.decompress(idat)) == height * (1 + 3 * width)


def _valid_pdf(data: bytes) -> bool:
    assert data.startswith(b"%PDF-1.") and data.rstrip().endswith(b"%%EOF")
    start = int(data.rsplit(b"startxref", 1)[1].split()[0])
    assert data[start:start + 4] == b"xref"
    table = data[start:].split(b"trailer", 1)[0].split(b"\n")[3:]
    offsets = [int(line[:10]) for line in table if line.strip()]
    return all(data[off:].startswith(b"%d 0 obj" % n) for n, off in enumerate(offsets, 1))


def test_every_message_parses_as_the_manifest_says(corpus: list[Message], parsed: list[EmailMessage]) -> None:
    for (_, r), msg in zip(corpus, parsed, strict=True):
        assert not msg.defects, (r["index"], msg.defects)
        leaves = [p for p in msg.walk() if not p.is_multipart()]
        body = next(p for p in leaves if p.get_content_type() == "text/plain"
                    and p.get_content_disposition() != "attachment")
        assert body.get_content_charset() == r["charset"]
        assert str(body.get("Content-Transfer-Encoding", "7bit")).lower() == r["cte"]
        text = body.get_content()
        assert "\ufffd" not in text and text.strip()
        if r["cte"] == "7bit":
            assert text.isascii()
        text.encode(r["charset"])  # the declared charset encodes the text
        assert any(p.get_content_type() == "text/html" for p in leaves) == r["html"]
        files = [p for p in leaves if p.get_content_disposition() == "attachment"]
        if r["attachment"] is None:
            assert files == []
            continue
        (part,) = files
        data = part.get_payload(decode=True)
        assert isinstance(data, bytes)
        assert unicodedata.normalize("NFC", part.get_filename() or "") == r["attachment"]["filename"]
        assert len(data) == r["attachment"]["bytes"]
        kind = r["attachment"]["type"]
        assert part.get_content_type() == MIME_TYPES[kind]
        if kind == "png":
            assert _valid_png(data)
        elif kind == "pdf":
            assert _valid_pdf(data)


def test_some_filenames_need_rfc2231_or_encoded_words(corpus: list[Message]) -> None:
    raws = [raw for raw, r in corpus if r["attachment"] and not r["attachment"]["filename"].isascii()]
    assert raws
    assert any(b"filename*=utf-8''" in raw or b"filename*0*=" in raw for raw in raws)
    assert any(re.search(rb'filename="=\?[\w-]+\?[BQ]\?', raw) for raw in raws)


def test_replies_quote_in_the_styles_of_real_clients(corpus: list[Message]) -> None:
    rows = _rows(corpus)
    styles = collections.Counter(r["reply_style"] for r in rows if r["kind"] == "reply")
    assert set(styles) >= {"outlook_rule", "outlook_classic", "gmail", "thunderbird", "apple", None}
    texts = b"\n".join(raw for raw, r in corpus if r["kind"] == "reply" and r["cte"] in ("8bit", "7bit"))
    assert b"-----Original Message-----" in texts or b"Gesendet:" in texts or b"Sent:" in texts
    assert re.search(rb"\nAm \d\d\.\d\d\.\d\d(\d\d)? um \d\d:\d\d schrieb ", texts)
    assert re.search(rb"\nOn .{5,40}\d\d:\d\d.{0,4}, .+ wrote:", texts)


def test_extra_styles_are_on_by_default() -> None:
    """Zimbra, classic Notes and Horde replies (which the reply-text
    extraction once missed) are part of the default corpus, as well-formed
    mail; --basic-styles leaves them out."""
    extra = {"notes_classic", "zimbra", "horde"}
    assert not extra & {r["reply_style"] for _, r in generate(600, 4, extra_styles=False)}
    messages = generate(600, 4)
    assert messages == generate(600, 4)
    assert len(extra & {r["reply_style"] for _, r in messages}) >= 2
    for raw, r in messages:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert not msg.defects and str(msg["Subject"]) == r["subject"]


# -- mbox and CLI --------------------------------------------------------------
def test_mbox_round_trips(corpus: list[Message], tmp_path: Path) -> None:
    path = write_mbox(tmp_path / "c.mbox", corpus)
    assert re.search(rb"\n>From ", path.read_bytes()), "a body line starting with 'From ' is escaped"
    box = mailbox.mbox(str(path))
    keys = list(box.keys())
    assert len(keys) == len(corpus)
    for key, (raw, r) in zip(keys, corpus, strict=True):
        # mailbox.mbox does not undo mboxrd escaping: one '>' less on >*From lines
        got = re.sub(rb"(?m)^>(>*From )", rb"\1", box.get_bytes(key))
        assert got == raw, r["index"]
        assert box.get_message(key).get_from().split()[0] == ("MAILER-DAEMON" if r["kind"] == "bounce"
                                                               else r["sender"])
    box.close()


def test_cli_writes_eml_files_and_a_manifest_beside_the_directory(tmp_path: Path) -> None:
    out = tmp_path / "mail"
    assert main(["--n", "30", "--seed", "2", "--dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{i:06d}.eml" for i in range(1, 31)]
    manifest = tmp_path / "mail.manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    assert [r["index"] for r in rows] == list(range(1, 31))
    required = {"index", "kind", "message_id", "thread", "in_reply_to", "references", "sender", "subject",
                "lang", "charset", "cte", "html", "attachment"}
    assert all(required <= set(r) for r in rows)
    assert (out / "000001.eml").read_bytes() == generate(1, 2)[0][0]
    with pytest.raises(SystemExit):
        main(["--n", "3", "--dir", str(out), "--manifest", str(out / "m.jsonl")])


def test_cli_runs_as_a_module(tmp_path: Path) -> None:
    mbox = tmp_path / "c.mbox"
    done = subprocess.run(
        [sys.executable, "-m", "tests.corpus.generate", "--n", "20", "--seed", "3", "--mbox", str(mbox)],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
    )
    assert json.loads(done.stderr)["n"] == 20
    assert Path(f"{mbox}.manifest.jsonl").is_file() and mbox.read_bytes().startswith(b"From ")


# -- the scorer ------------------------------------------------------------------
def _row(index: int, kind: str, mid: str, thread: str, irt: str | None = None) -> dict[str, Any]:
    return {"index": index, "kind": kind, "message_id": mid, "thread": thread, "in_reply_to": irt}


def test_score_counts_a_hand_made_mapping(tmp_path: Path) -> None:
    a, b = "<a@x.at>", "<b@y.de>"
    manifest = [
        _row(1, "new", a, a), _row(2, "new", b, b),
        _row(3, "reply", "<r3@x.at>", a, a),  # threaded
        _row(4, "reply", "<r4@y.de>", b, b),  # became a ticket of its own
        _row(5, "reply", "<r5@x.at>", a, a),  # landed in b's ticket
        _row(6, "auto_reply", "<o6@x.at>", a, "<n@servicedesk.xitrust.com>"),  # not stored
        _row(7, "bounce", "<d7@mx>", b),  # opened a ticket (wrongly)
        _row(8, "reply", "<r8@x.at>", a),  # only References; threaded
    ]
    mapping = {a: "T1", "b@y.de": "T2", "<r3@x.at>": "T1", "<r4@y.de>": "T3", "<r5@x.at>": "T2",
               "<d7@mx>": "T4", "<r8@x.at>": "T1", "<unrelated@z>": "T9"}
    expected = {
        "new": {"own_ticket": 2, "threaded": 0, "misthreaded": 0, "dropped": 0, "total": 2},
        "reply": {"own_ticket": 1, "threaded": 2, "misthreaded": 1, "dropped": 0, "total": 4},
        "auto_reply": {"own_ticket": 0, "threaded": 0, "misthreaded": 0, "dropped": 1, "total": 1},
        "bounce": {"own_ticket": 1, "threaded": 0, "misthreaded": 0, "dropped": 0, "total": 1},
        "reply_subsets": {"no_in_reply_to_total": 1, "no_in_reply_to_threaded": 1},
        "tickets": 5, "stored_msgs": 7, "expected_tickets": 2,
    }
    assert score(manifest, mapping) == expected
    # the same from files, as the CLI reads them
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in manifest))
    tsv = tmp_path / "map.tsv"
    tsv.write_text("".join(f"{k}\t{v}\n" for k, v in mapping.items()))
    command = [sys.executable, "-m", "tests.corpus.score", "--manifest", str(path), "--map", str(tsv)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout) == expected
