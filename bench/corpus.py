"""The benchmarks' corpus: the project's own seeded generator
(``tests/corpus``), written as ``.eml`` files or as one mbox, exactly as the
tests use it."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for ``tests.corpus`` when run as bench/<script>.py

from tests.corpus.generate import write_corpus  # noqa: E402


def make_corpus(n: int, seed: int, *, out_dir: Path | None = None, mbox: Path | None = None) -> None:
    """Write ``n`` messages (seeded) as ``.eml`` files into ``out_dir`` or
    as one mbox file; the manifest goes beside them."""
    if out_dir is not None:
        write_corpus(n, seed, directory=out_dir)
    else:
        write_corpus(n, seed, mbox=mbox)


def eml_files(n: int, seed: int, out_dir: Path) -> list[Path]:
    """``make_corpus`` into ``out_dir``; its messages in a stable order."""
    make_corpus(n, seed, out_dir=out_dir)
    return sorted(out_dir.glob("*.eml"))
