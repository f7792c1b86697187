"""Statement shapes stay few (``gateway.store.shapes``), on SQLite and
PostgreSQL. A list in an ``IN`` and the rows of a multi-row insert are part
of the SQL text; each distinct text is a prepared statement the driver
keeps per connection. When the texts followed every batch size, the
200,000-message soak's daemon grew by the SQLite memory of those cached
near-copies. Here batches of every size from 1 to 40 go through the spool
and the pipeline, and each statement may take only as many texts as there
are powers of two up to the largest batch."""

from __future__ import annotations

import mailbox
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from gateway.app import App
from gateway.store.repo import MAIL
from gateway.store.shapes import PAD_UP_TO, chunks, padded
from gateway.store.spool import SpoolItem
from tests.corpus.generate import write_corpus

LARGEST = 40
SHAPES = LARGEST.bit_length() + 1  # 1, 2, 4, …, 64: a list of 33 to 40 is padded to 64

# An IN list or a VALUES list: the part of a text that follows the batch.
# (PostgreSQL's placeholders are "%(name)s": parentheses inside the list.)
_LIST = r"\((?:[^()]|\(\w+\))*\)"
_LISTS = re.compile(rf"IN {_LIST}|VALUES (?:{_LIST}(?:, )?)+")


def skeleton(sql: str) -> str:
    return _LISTS.sub("…", sql)


@pytest.fixture
def texts(app: App) -> Iterator[dict[str, set[str]]]:
    """Every SQL text the engine sends, by skeleton."""
    seen: dict[str, set[str]] = defaultdict(set)

    def record(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen[skeleton(statement)].add(statement)

    event.listen(app.engine, "before_cursor_execute", record)
    yield seen
    event.remove(app.engine, "before_cursor_execute", record)


def corpus(tmp_path: Path, n: int) -> list[bytes]:
    mbox = tmp_path / "corpus.mbox"
    write_corpus(n, 7, mbox=mbox)
    return [m.as_bytes() for m in mailbox.mbox(str(mbox))]


def test_padding_and_chunks() -> None:
    assert [len(padded(range(n))) for n in range(10)] == [0, 1, 2, 4, 4, 8, 8, 8, 8, 16]
    assert padded(["a", "b", "c"]) == ["a", "b", "c", "c"]
    assert len(padded(range(PAD_UP_TO))) == PAD_UP_TO
    assert len(padded(range(PAD_UP_TO + 1))) == PAD_UP_TO + 1  # not a batch: as it is
    assert [len(c) for c in chunks(list(range(37)))] == [32, 4, 1]
    for n in range(70):
        rows = list(range(n))
        assert [r for c in chunks(rows) for r in c] == rows


def test_spool_batches_of_every_size_share_a_few_insert_texts(app: App, texts: dict[str, set[str]]) -> None:
    n = 0
    for size in range(1, LARGEST + 1):
        items = [SpoolItem(raw=f"Message-ID: <s{n + i}@x.example>\r\n\r\nhallo\r\n".encode(), source="smtp")
                 for i in range(size)]
        ids = app.spool.put_many(items)
        with app.engine.connect() as conn:
            got = conn.execute(select(MAIL.c.message_id).where(MAIL.c.id.in_(ids)).order_by(MAIL.c.id))
            # the ids returned line up with the items
            assert list(got.scalars()) == [f"<s{n + i}@x.example>" for i in range(size)]
        n += size
    inserts = {k: len(v) for k, v in texts.items() if k.startswith("INSERT INTO inbound_mail")}
    assert inserts and all(n <= SHAPES for n in inserts.values()), inserts


def test_pipeline_batches_of_every_size_share_a_few_texts(
    app: App, tmp_path: Path, texts: dict[str, set[str]]
) -> None:
    raws = corpus(tmp_path, sum(range(1, LARGEST + 1)))
    app.spool.put_many([SpoolItem(raw=r, source="smtp") for r in raws])
    runner = app.runner()
    texts.clear()
    for size in range(1, LARGEST + 1):
        claimed = app.spool.claim(runner.worker, size)
        assert len(claimed) == size
        list(runner.process(claimed))
    assert runner.drain().total() == 0
    many = {k: len(v) for k, v in texts.items() if len(v) > SHAPES}
    assert not many, many
    # The check sees what it is for: some statements did take several texts.
    assert any(len(v) > 2 for v in texts.values()), {k[:80]: len(v) for k, v in texts.items()}
