"""Several worker processes (and threads) drain one spool at once, on SQLite
and PostgreSQL: every message is processed exactly once, duplicates of the
same message have one effect, and ticket numbers never collide."""

from __future__ import annotations

import collections
import mailbox
import multiprocessing
import threading
from pathlib import Path

from sqlalchemy import func, select
from sqlmodel import Session

from gateway.app import App
from gateway.settings import Settings
from gateway.store.models import InboundMail, Ticket
from gateway.store.spool import Spool, SpoolItem
from tests.corpus.generate import generate, write_corpus
from tests.corpus.people import DOMAINS

N = 300


def _drain(settings: Settings, name: str) -> None:
    App(settings).runner(worker=name).drain()


def test_processes_and_threads_drain_one_spool_exactly_once(app: App) -> None:
    # small claims and batches, so the four workers really interleave
    workers = app.settings.workers.model_copy(update={"claim_size": 10, "batch_size": 5})
    app = App(app.settings.model_copy(update={"workers": workers}))
    raws = [raw for raw, _ in generate(N, 3)]
    copies = raws[:40]  # the same messages delivered twice (MTA retry)
    spool = Spool(app.engine, app.blobs)
    ids = spool.put_many([SpoolItem(raw=r, source="ingest") for r in raws + copies])
    assert len(ids) == N + len(copies)

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_drain, args=(app.settings, f"proc-{i}")) for i in range(2)]
    threads = [threading.Thread(target=_drain, args=(app.settings, f"thread-{i}")) for i in range(2)]
    for p in procs:
        p.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    for p in procs:
        p.join(timeout=240)
        assert p.exitcode == 0

    with Session(app.engine) as s:
        mails = s.execute(select(InboundMail)).scalars().all()
        assert {m.status for m in mails} <= {"done", "ignored"}, collections.Counter(m.status for m in mails)
        assert all(m.attempts == 1 for m in mails), "a row was claimed twice"
        by_worker = collections.Counter(m.claimed_by for m in mails)
        assert len(by_worker) >= 2, by_worker  # the workers shared the spool
        effects = collections.Counter(m.message_id for m in mails if m.status == "done")
        assert max(effects.values()) == 1, "one message, one effect"
        dupes = [m for m in mails if (m.disposition or "").startswith("ignored: duplicate")]
        assert len(dupes) == len(copies)
        numbers = s.execute(select(Ticket.number)).scalars().all()
        assert len(numbers) == len(set(numbers))
        created = s.execute(
            select(func.count()).select_from(InboundMail).where(InboundMail.disposition.like("created %"))  # type: ignore[union-attr]
        ).scalar_one()
        assert created == len(numbers)


def test_two_workers_thread_a_backlog_as_one_would(app: App, tmp_path: Path) -> None:
    """A backlog (after downtime, a mailbox drained at once) processed by two
    worker processes: a reply claimed by one worker while the mail it
    answers is still in the other's open batch waits for it, so every reply
    is threaded exactly as one worker would thread it. Before the wait, 34
    (SQLite) and 48 (PostgreSQL) of the 750 replies of the 2,000-message
    reference corpus the tests then used became tickets of their own."""
    from tests.integration.test_corpus import _create_orgs, _score

    mbox = tmp_path / "c.mbox"
    manifest = write_corpus(800, 1, mbox=mbox)
    _create_orgs(app, DOMAINS)
    raws = [m.as_bytes() for m in mailbox.mbox(str(mbox))]
    Spool(app.engine, app.blobs).put_many([SpoolItem(raw=r, source="ingest") for r in raws])
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_drain, args=(app.settings, f"proc-{i}")) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
        assert p.exitcode == 0
    scores = _score(app, manifest)
    with Session(app.engine) as s:
        by_worker = collections.Counter(s.execute(select(InboundMail.claimed_by)).scalars())
    assert len(by_worker) == 2, by_worker  # both workers took part
    assert scores["reply"].get("threaded", 0) == scores["reply"]["total"], scores["reply"]
    assert scores["tickets"] == scores["expected_tickets"]
