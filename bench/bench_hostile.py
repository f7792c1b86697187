"""Benchmark: time against input size for the header shapes an attacker
can make big, through what every message goes through in a worker (parse,
the raw header peek for the mail log, screen, trust). Linear code shows a
constant time per KB; quadratic code doubles it with each doubling.

    python bench/bench_hostile.py [--max-kb 2048]

Issue #10.4 measured before the fix: a From folded over 160,000 lines
(480 KB) took 65-75 s to ingest, a 40,000-character X-Loop 10 s."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

# --tree: measure another checkout of the gateway (an older version, before/after)
_HERE = str(Path(__file__).resolve().parent.parent)
_TREE = sys.argv[sys.argv.index("--tree") + 1] if "--tree" in sys.argv else _HERE
sys.path.insert(0, _TREE)

from gateway.pipeline.parse import parse_mail  # noqa: E402
from gateway.pipeline.parsing import _header_peek  # noqa: E402
from gateway.pipeline.screen import screen  # noqa: E402
from gateway.pipeline.trust import authenticated_by  # noqa: E402
from gateway.settings import LimitsSettings  # noqa: E402

HEAD = b"To: servicedesk@xitrust.com\r\nSubject: x\r\nMessage-ID: <h@evil.example>\r\n"


def folded_from(kb: int) -> bytes:
    lines = kb * 1024 // 3
    return b"From: a" + b"\r\n a" * lines + b" <eve@evil.example>\r\n" + HEAD + b"\r\nbody\r\n"


def long_header(name: bytes, filler: bytes) -> Callable[[int], bytes]:
    def make(kb: int) -> bytes:
        value = filler * (kb * 1024 // len(filler))
        return b"From: eve@evil.example\r\n" + name + b": " + value + b"\r\n" + HEAD + b"\r\nbody\r\n"

    return make


SHAPES: dict[str, Callable[[int], bytes]] = {
    "From folded over many lines": folded_from,
    "X-Loop without '@'": long_header(b"X-Loop", b"a"),
    "X-Loop of 'a@' words": long_header(b"X-Loop", b"a@"),
    "Authentication-Results ';' and '('": long_header(b"Authentication-Results", b"mx.xitrust.com; (("),
    "Subject of encoded words": long_header(b"Subject", b"=?utf-8?q?a?= "),
    "References of '<'": long_header(b"References", b"<"),
    "Content-Type parameters": long_header(b"Content-Type", b'; a="b'),
}


def run_once(raw: bytes, limits: LimitsSettings) -> float:
    start = time.perf_counter()
    try:
        mail = parse_mail(raw, limits)
    except Exception:  # noqa: BLE001 - a quarantine is a fine answer; its cost counts
        _header_peek(raw)
    else:
        screen(mail, desk_addresses=frozenset({"servicedesk@xitrust.com"}), envelope_from=None)
        authenticated_by(mail, "mx.xitrust.com")
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-kb", type=int, default=2048)
    ap.add_argument("--tree", help="import the gateway from this checkout instead")
    a = ap.parse_args()
    limits = LimitsSettings()
    sizes = [kb for kb in (64, 128, 256, 512, 1024, 2048, 4096) if kb <= a.max_kb]
    print(f"{'shape':<38}" + "".join(f"{kb:>9} KB" for kb in sizes) + "   ms per KB (first, last)")
    for name, make in SHAPES.items():
        times = [run_once(make(kb), limits) for kb in sizes]
        per_kb = [t * 1000 / kb for t, kb in zip(times, sizes, strict=True)]
        print(f"{name:<38}" + "".join(f"{t:>10.3f}s" for t in times)
              + f"   {per_kb[0]:.3f}, {per_kb[-1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
