"""Few statement shapes: a list bound to an expanding ``IN`` and the rows of
a multi-row ``INSERT … RETURNING`` become part of the SQL text, one text per
length. Every text is a prepared statement the driver caches per connection
(pysqlite keeps 128, psycopg prepares up to 100 on the server), so lengths
that vary from batch to batch fill those caches with near-copies: in the
200,000-message soak the daemon's SQLite memory grew with every new batch
size. Rounding lengths to powers of two keeps it to a handful of texts, the
way Hibernate's ``in_clause_parameter_padding`` does."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

# Lists longer than this are not a batch (an operator's ``mail reprocess``
# of thousands): left as they are, so that padding never pushes one past a
# driver's limit of bound values (psycopg: 65,535).
PAD_UP_TO = 1024


def padded(values: Iterable[T]) -> list[T]:
    """``values`` for an expanding ``IN``: its length rounded up to a power of
    two by repeating the last value (a repeat changes no ``IN``/``NOT IN``).
    Empty stays empty (SQLAlchemy renders that as a constant), and so does
    a list longer than ``PAD_UP_TO``."""
    out = list(values)
    if 0 < len(out) <= PAD_UP_TO:
        out.extend([out[-1]] * ((1 << (len(out) - 1).bit_length()) - len(out)))
    return out


def chunks(rows: Sequence[T]) -> Iterator[Sequence[T]]:
    """``rows`` in order, cut into runs whose lengths are distinct powers of
    two, longest first (37: 32, 4, 1): a multi-row insert of up to 2ⁿ − 1
    rows has n shapes instead of 2ⁿ − 1."""
    start, left = 0, len(rows)
    while left:
        size = 1 << (left.bit_length() - 1)
        yield rows[start:start + size]
        start += size
        left -= size
