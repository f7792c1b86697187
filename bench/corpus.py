"""The shared test corpus for the benchmarks: ``make_corpus.py`` from the
team's shared tools, found the way the tests find it (``tests/shared.py``:
``../shared`` beside the checkout, or ``$GATEWAY_SHARED``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from shared import shared_tool  # noqa: E402


def make_corpus(n: int, seed: int, *, out_dir: Path | None = None, mbox: Path | None = None) -> None:
    """Write ``n`` messages (seeded) as ``.eml`` files into ``out_dir`` or
    as one mbox file; the tool's own report is not shown."""
    target = ["--dir", str(out_dir)] if out_dir is not None else ["--mbox", str(mbox)]
    subprocess.run(
        [sys.executable, str(shared_tool("make_corpus.py")), "--n", str(n), "--seed", str(seed), *target],
        check=True,
        capture_output=True,
    )


def eml_files(n: int, seed: int, out_dir: Path) -> list[Path]:
    """``make_corpus`` into ``out_dir``; its messages in a stable order."""
    make_corpus(n, seed, out_dir=out_dir)
    return sorted(out_dir.glob("*.eml"))
