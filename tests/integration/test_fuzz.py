"""Property-based fuzzing of the whole pipeline (issue #10): generated and
mutated messages go through the real spool and runner — parse, screen,
identify, thread, apply, notify — on a real database. Whatever the bytes:

- every message ends ``done``, ``ignored`` or ``quarantined`` with one of
  the pipeline's own reasons, never an unexpected exception (the runner
  turns those into "internal error: …", the parser into "parser error: …"
  or "unparseable message: …", which this test treats as failures);
- nothing is written outside the state's blob store and database: not in
  the working directory, not next to the state, not under an attachment's
  file name.

Bounded in examples (a few seconds); derandomized, so a failure in CI is a
failure on every machine, and Hypothesis prints the shrunk example."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlmodel import Session, select

from gateway.app import App
from gateway.store.models import InboundMail
from gateway.store.spool import Spool, SpoolItem
from tests.corpus.generate import generate

SEEDS = [raw for raw, _ in generate(40, 11)]
# Fragments an attacker reaches for: line breaks and NUL, encoded words
# that decode to line breaks, MIME delimiters, quotes and brackets, broken
# UTF-8, and headers that change how the rest is read.
FRAGMENTS = [
    b"\x00", b"\r", b"\n", b"\r\n", b"\r\n\r\n", b"\r\n ", b"=?utf-8?b?DQpYOiB5DQoNCg==?=", b"=?x?q?=00=0A?=",
    b"=?utf-8?q?", b"?=", b"--", b"\r\n--b--\r\n", b'"', b"<", b">", b"(", b")", b";", b",", b":", b"@",
    b"\xff\xfe", b"\xc3", b"\xe9", b"\\",
    b"From: a@b.example, c@d.example\r\n", b"From: anna@bauwerk-ag.de <eve@evil.example>\r\n",
    b"Message-ID: <\x00x@evil.example>\r\n", b"In-Reply-To: <" + b"a" * 300 + b">\r\n",
    b"References: <a@b> <c@d> <=?utf-8?q?x=0D=0AX:y?=@e>\r\n",
    b"Subject: [SD-1] AW: [SD-99999999999999999999]\r\n",
    b"Content-Type: multipart/mixed; boundary=b\r\n", b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Disposition: attachment; filename=\"../../etc/passwd\"\r\n",
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n",
    b"Auto-Submitted: no\r\n", b"X-Spam-Flag: YES\r\n",
    b"Authentication-Results: mx.xitrust.com; dmarc=pass\r\n",
    b"Priorit\xc3\xa4t: blocker\r\nBrowser: \x00\r\n",
]

_fragment = st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=40))
_mutation = st.tuples(st.sampled_from(["insert", "replace", "truncate", "repeat"]),
                      st.floats(0, 1), st.integers(0, 64), _fragment)


def mutate(raw: bytes, mutations: list[tuple[str, float, int, bytes]]) -> bytes:
    for op, where, span, fragment in mutations:
        pos = int(where * len(raw))
        if op == "insert":
            raw = raw[:pos] + fragment + raw[pos:]
        elif op == "replace":
            raw = raw[:pos] + fragment + raw[pos + span:]
        elif op == "truncate":
            raw = raw[: max(pos, 1)]
        else:  # a line of the message several times over (a header, a delimiter)
            start = raw.rfind(b"\n", 0, pos) + 1
            end = raw.find(b"\n", pos)
            line = raw[start: end + 1 if end >= 0 else len(raw)]
            raw = raw[:start] + line * (span % 8 + 2) + raw[start:]
    return raw


_mutated = st.builds(mutate, st.sampled_from(SEEDS), st.lists(_mutation, min_size=1, max_size=6))
_built = st.builds(
    lambda headers, body: b"".join(headers) + b"\r\n" + body,
    st.lists(st.sampled_from(FRAGMENTS) | st.binary(max_size=60).map(lambda b: b"X-F: " + b + b"\r\n"),
             min_size=1, max_size=12),
    st.binary(max_size=400),
)
messages = st.lists(st.one_of(_mutated, _mutated, _mutated, _built), min_size=1, max_size=4)

OWN_SIGNALS_FAILED = ("internal error:", "parser error:", "unparseable message:")


def files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*") if p.is_file()}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("examples", [150])
def test_any_bytes_end_as_an_outcome_of_the_pipeline_and_write_only_blobs(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, examples: int
) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)  # anything written relative to the working directory shows up here
    spool = Spool(app.engine, app.blobs)
    runner = app.runner(worker="fuzz")
    state_files_allowed = {"gateway.db", "gateway.db-wal", "gateway.db-shm", "gateway.db-journal"}
    blobs = Path(app.settings.storage.blobs)

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large])
    @given(batch=messages)
    def one(batch: list[bytes]) -> None:
        ids = spool.put_many([SpoolItem(raw=raw, source="ingest") for raw in batch])
        runner.drain(ids=ids)
        with Session(app.engine) as s:
            rows = s.exec(select(InboundMail).where(InboundMail.id.in_(ids))).all()  # type: ignore[union-attr]
        assert len(rows) == len(batch)
        for row in rows:
            assert row.status in ("done", "ignored", "quarantined"), (row.status, row.disposition)
            reason = row.disposition or ""
            assert not any(bad in reason for bad in OWN_SIGNALS_FAILED), reason
        assert files_under(work) == set(), "written into the working directory"
        stray = {p for p in files_under(tmp_path) if not p.is_relative_to(blobs)
                 and p.name not in state_files_allowed}
        assert stray == set(), f"written outside the blob store: {sorted(map(str, stray))[:5]}"

    one()
    assert os.listdir(work) == []
