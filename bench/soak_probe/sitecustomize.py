"""Memory probe for ``bench_soak.py --probe``: imported by every Python
process the soaked daemon starts (this directory is put on PYTHONPATH), it
writes, every few seconds, where the process's memory is: resident size,
glibc's heap in use and free (``mallinfo2``), SQLite's own allocations
(page caches, statements) and Python's allocated blocks. That tells a leak
(memory in use growing) from caches filling to their bound or freed memory
the allocator keeps (free heap growing). With ``SOAK_PROBE_TRACE`` set it
also runs tracemalloc and writes, once a minute, the 15 places whose
allocations grew most since the first minute (``<pid>.trace.txt``): slow,
for finding a leak, not for the figures. Not part of the gateway."""

from __future__ import annotations

import ctypes
import json
import os
import sys
import threading
import time
import tracemalloc


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
        "keepcost")]


def _probe(out: str, every: float) -> None:
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    sqlite = ctypes.CDLL("libsqlite3.so.0")
    sqlite.sqlite3_memory_used.restype = ctypes.c_int64
    with open("/proc/self/cmdline", "rb") as f:
        cmdline = f.read().replace(b"\0", b" ")
    role = "worker" if b"multiprocessing" in cmdline else "daemon" if b"serve" in cmdline else "other"
    path = os.path.join(out, f"{os.getpid()}.jsonl")
    tracing = tracemalloc.is_tracing()
    base: tracemalloc.Snapshot | None = None
    started = time.monotonic()
    last_trace = started
    while True:
        if tracing and time.monotonic() - last_trace >= 60:
            last_trace = time.monotonic()
            if base is None:
                base = tracemalloc.take_snapshot()
            else:
                top = tracemalloc.take_snapshot().compare_to(base, "traceback")[:15]
                with open(os.path.join(out, f"{os.getpid()}.trace.txt"), "w") as f:
                    for stat in top:
                        f.write(f"{stat.size_diff / 1024:+.0f} KiB, {stat.count_diff:+d} blocks\n")
                        f.writelines(f"    {line}\n" for line in stat.traceback.format())
        info = libc.mallinfo2()
        rss = 0
        with open(f"/proc/{os.getpid()}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        row = {
            "t": time.time(), "role": role, "rss_kib": rss,
            "heap_used_kib": (info.uordblks + info.hblkhd) // 1024, "heap_free_kib": info.fordblks // 1024,
            "sqlite_kib": sqlite.sqlite3_memory_used() // 1024, "py_blocks": sys.getallocatedblocks(),
        }
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
        time.sleep(every)


if os.environ.get("SOAK_PROBE_DIR"):
    if os.environ.get("SOAK_PROBE_TRACE"):
        tracemalloc.start(int(os.environ["SOAK_PROBE_TRACE"]))
    threading.Thread(target=_probe, args=(os.environ["SOAK_PROBE_DIR"], 5.0), daemon=True,
                     name="soak-probe").start()
