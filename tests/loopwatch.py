"""Find callbacks that hold an event loop's thread, without counting the
time the kernel kept that thread off a CPU.

asyncio's debug mode logs every callback whose wall time reaches
``loop.slow_callback_duration``. On a 2-core VM shared by the daemon's
worker processes, PostgreSQL and the test's own load client, the loop's
thread is sometimes runnable but not running for tens of milliseconds; the
wall time then says "slow" although the daemon did nothing wrong (CI saw a
71 ms report for a callback that handles one small SMTP command).

The watch wraps ``asyncio.Handle._run`` and reads the loop thread's
``/proc/thread-self/schedstat`` before and after each callback: its second
field is the time the thread spent waiting on a run queue. A reported slow
callback *holds the loop* when its wall time minus that wait is still over
the threshold: time on the CPU, in a blocking call (fsync, a database
round trip, ``time.sleep``) or waiting for a lock or the GIL all count.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from typing import Any, Self

_SCHEDSTAT = "/proc/thread-self/schedstat"
_TOOK = re.compile(r"took ([0-9.]+) seconds")


def _runqueue_wait_ns(fd: int) -> int:
    return int(os.pread(fd, 128, 0).split()[1])


class LoopWatch(logging.Handler):
    """Context manager around ``asyncio.run(..., debug=True)`` on the
    current thread. ``held`` lists the callbacks that held the loop;
    ``descheduled`` those that were slow only while waiting for a CPU."""

    def __init__(self, threshold: float = 0.05) -> None:
        super().__init__(logging.WARNING)
        self.threshold = threshold
        self.held: list[str] = []
        self.descheduled: list[str] = []
        self._thread = threading.get_ident()
        self._fd = -1
        self._last_wait = 0.0
        self._original: Any = None

    def __enter__(self) -> Self:
        self._fd = os.open(_SCHEDSTAT, os.O_RDONLY)  # opened on, and so about, this thread
        self._original = asyncio.Handle._run
        original, watch = self._original, self

        def _run(handle: asyncio.Handle) -> None:
            if threading.get_ident() != watch._thread:
                return original(handle)  # type: ignore[no-any-return]
            before = _runqueue_wait_ns(watch._fd)
            try:
                return original(handle)  # type: ignore[no-any-return]
            finally:
                watch._last_wait = (_runqueue_wait_ns(watch._fd) - before) / 1e9

        asyncio.Handle._run = _run  # type: ignore[method-assign]
        logging.getLogger("asyncio").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("asyncio").removeHandler(self)
        asyncio.Handle._run = self._original  # type: ignore[method-assign]
        os.close(self._fd)

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        took = _TOOK.search(text)
        if not text.startswith("Executing") or took is None:
            return
        # asyncio logs right after the callback returns, on the loop's thread,
        # so _last_wait belongs to this callback.
        wait = self._last_wait if threading.get_ident() == self._thread else 0.0
        note = f"{text} ({wait:.3f} s of it waiting for a CPU)"
        if float(took.group(1)) - wait >= self.threshold:
            self.held.append(note)
        else:
            self.descheduled.append(note)


def busy(seconds: float) -> None:
    """Hold the CPU (what parsing on the loop would do)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
