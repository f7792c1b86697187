"""Where a spooled message's bytes live, on SQLite and PostgreSQL: a small
one inside its row until a worker processes it, then in the blob store; a
large one (over ``storage.spool_inline_max``) in the blob store at once.
Every reader finds them either way, and nothing is lost in the move."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from gateway.app import App
from gateway.store.blobs import FileBlobStore, sha256_hex
from gateway.store.repo import MAIL
from gateway.store.spool import Spool, SpoolItem


def mail(n: int, body: str = "Der Drucker im 2. Stock druckt nicht.") -> bytes:
    return (
        f"From: Anna Berger <anna@bauwerk-ag.de>\r\nTo: servicedesk@xitrust.com\r\n"
        f"Subject: Drucker {n}\r\nMessage-ID: <spool-{n}@bauwerk-ag.de>\r\n\r\n{body}\r\n"
    ).encode()


def row(app: App, mail_id: int) -> tuple[bytes | None, str, str]:
    with app.engine.connect() as conn:
        found = conn.execute(
            select(MAIL.c.raw_inline, MAIL.c.raw_sha256, MAIL.c.status).where(MAIL.c.id == mail_id)
        ).one()
    return (bytes(found[0]) if found[0] is not None else None), found[1], found[2]


def spool_for(app: App, inline_max: int) -> Spool:
    return Spool(app.engine, app.blobs, inline_max)


def test_small_mail_waits_in_its_row_then_moves_to_the_blob_store(app: App) -> None:
    assert isinstance(app.blobs, FileBlobStore)
    raw = mail(1)
    spool = spool_for(app, app.settings.storage.spool_inline_max)
    (mail_id,) = spool.put_many([SpoolItem(raw=raw, source="smtp")])

    inline, digest, status = row(app, mail_id)
    assert (inline, status) == (raw, "queued")
    assert digest == sha256_hex(raw)
    assert not app.blobs.path_for(digest).exists()  # no file per accepted message
    assert spool.read_raw(mail_id) == raw

    counts = app.runner().drain()
    assert counts["done"] == 1
    inline, digest, status = row(app, mail_id)
    assert (inline, status) == (None, "done")
    assert app.blobs.path_for(digest).read_bytes() == raw
    assert spool.read_raw(mail_id) == raw


def test_large_mail_goes_to_the_blob_store_at_once(app: App) -> None:
    raw = mail(2, body="x" * 2000)
    spool = spool_for(app, 1000)
    (mail_id,) = spool.put_many([SpoolItem(raw=raw, source="smtp")])
    inline, digest, _ = row(app, mail_id)
    assert inline is None
    assert spool.read_raw(mail_id) == raw
    assert app.runner().drain()["done"] == 1
    assert spool.read_raw(mail_id) == raw


def test_mixed_batch_keeps_each_message_with_its_row(app: App) -> None:
    raws = [mail(10), mail(11, body="y" * 5000), mail(12)]
    spool = spool_for(app, 1000)
    ids = spool.put_many([SpoolItem(raw=r, source="ingest") for r in raws])
    assert [row(app, i)[0] is not None for i in ids] == [True, False, True]
    assert [spool.read_raw(i) for i in ids] == raws
    assert app.runner().drain()["done"] == 3
    assert [row(app, i)[0] for i in ids] == [None, None, None]
    assert [spool.read_raw(i) for i in ids] == raws


def test_quarantined_mail_keeps_its_bytes_for_reprocessing(app: App) -> None:
    raw = b"\x00\x01 not a mail at all" * 3
    spool = spool_for(app, app.settings.storage.spool_inline_max)
    (mail_id,) = spool.put_many([SpoolItem(raw=raw, source="ingest")])
    counts = app.runner().drain()
    assert sum(counts.values()) == 1
    inline, _, status = row(app, mail_id)
    assert inline is None
    assert spool.read_raw(mail_id) == raw
    assert app.reprocess([mail_id])  # finds its bytes in the blob store
    assert spool.read_raw(mail_id) == raw


def test_mail_show_raw_before_and_after_processing(app: App, tmp_path: Path) -> None:
    """``gateway mail show --raw`` prints the bytes of a queued mail (from
    its row) and of a processed one (from the blob store)."""
    raw = mail(20)
    (mail_id,) = spool_for(app, app.settings.storage.spool_inline_max).put_many(
        [SpoolItem(raw=raw, source="ingest")]
    )
    env = {
        "GATEWAY__DATABASE__URL": app.settings.database.url,
        "GATEWAY__STORAGE__BLOBS": app.settings.storage.blobs,
        "PATH": "/usr/bin:/bin",
    }

    def show() -> bytes:
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "mail", "show", str(mail_id), "--raw"],
            env=env, capture_output=True, check=True, cwd=tmp_path,
        )
        return done.stdout

    assert show() == raw
    app.runner().drain()
    assert row(app, mail_id)[0] is None
    assert show() == raw


def test_quick_message_id_reads_only_the_header_block() -> None:
    from gateway.store.spool import quick_message_id

    assert quick_message_id(b"From: a\r\nMessage-ID: <a@b>\r\n\r\nMessage-ID: <c@d>\r\n") == "<a@b>"
    assert quick_message_id(b"Message-Id:\r\n <folded@b>\r\n\r\n") == "<folded@b>"
    assert quick_message_id(b"message-id:<x@y> (comment)\n\nbody") == "<x@y>"
    assert quick_message_id(b"Subject: x\r\n\r\nMessage-ID: <in-body@b>\r\n") is None
    assert quick_message_id(b"X-Message-ID: <other@b>\r\n\r\n") is None
    assert quick_message_id(b"Message-ID: <with space@b>\r\n\r\n") is None
