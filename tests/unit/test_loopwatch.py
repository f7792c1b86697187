"""The slow-callback detector used by the "never block the loop" tests is
live: it catches work that holds the loop (CPU, a sleeping call) and does
not blame the loop for time the kernel gave another process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

from loopwatch import LoopWatch
from privileges import require_root


def run_on_loop(work: object) -> LoopWatch:
    async def callback() -> None:
        work()  # type: ignore[operator]

    with LoopWatch(0.05) as watch:
        asyncio.run(callback(), debug=True)
    return watch


def cpu_for(seconds: float) -> None:
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        pass


def test_cpu_work_on_the_loop_is_caught() -> None:
    assert run_on_loop(lambda: cpu_for(0.1)).held


def test_a_blocking_call_on_the_loop_is_caught() -> None:
    watch = run_on_loop(lambda: time.sleep(0.1))
    assert watch.held and not watch.descheduled


def test_time_spent_waiting_for_a_cpu_is_not_blamed_on_the_loop() -> None:
    """Pin this thread and a high-priority busy process to one CPU: 5 ms of
    work then takes far longer than 50 ms of wall time, all of it waiting
    for the CPU."""
    require_root("raises a busy process's priority (nice -15) to take the CPU from this one")
    cpu = min(os.sched_getaffinity(0))
    spin = f"import os; os.sched_setaffinity(0, {{{cpu}}}); os.nice(-15)\nwhile True: pass"
    hog = subprocess.Popen([sys.executable, "-c", spin])
    saved = os.sched_getaffinity(0)
    try:
        time.sleep(0.3)  # the hog is running on that CPU
        os.sched_setaffinity(0, {cpu})  # this thread only
        watch = run_on_loop(lambda: cpu_for(0.005))
    finally:
        os.sched_setaffinity(0, saved)
        hog.kill()
        hog.wait()
    assert watch.descheduled, "the callback was not slowed: the test proves nothing"
    assert watch.held == []
