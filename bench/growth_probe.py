"""Run one ``gateway`` command in this process, measured: every SQL
statement timed (SQLAlchemy's ``before/after_cursor_execute`` events,
summed per statement text, with the first parameters seen, so that the
statement can be explained afterwards) and the main thread under cProfile.
Writes both to a pickle for ``bench_growth.py --profile``. Every
thread is profiled; a function's time is summed over them.

    python bench/growth_probe.py OUT.pickle ingest --no-progress corpus.mbox

Parsing runs in worker processes (``pipeline/parsing``): cProfile sees the
main thread's pipeline and database work, which is what grows with the
store; parsing does not."""

from __future__ import annotations

import cProfile
import io
import pickle
import pstats
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


class SqlTimes:
    """Per statement text: executions, seconds, first parameters, whether
    it ran as executemany."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stats: dict[str, list[Any]] = {}
        self.local = threading.local()

    def install(self) -> None:
        event.listen(Engine, "before_cursor_execute", self._before)
        event.listen(Engine, "after_cursor_execute", self._after)
        # A SELECT's rows are fetched after ``after_cursor_execute``, and
        # SQLite does its work then (``execute`` steps to the first row
        # only): a scan that finds its first row at once shows up here.
        from sqlalchemy.engine import cursor

        for cls in (cursor.CursorFetchStrategy, cursor.BufferedRowCursorFetchStrategy):
            for name in ("fetchone", "fetchmany", "fetchall"):
                if name in cls.__dict__:
                    setattr(cls, name, self._timed_fetch(cls.__dict__[name]))

    def _timed_fetch(self, fetch: Any) -> Any:
        def timed(strategy: Any, result: Any, *args: Any, **kwargs: Any) -> Any:
            if getattr(self.local, "fetching", False):  # one strategy calling another
                return fetch(strategy, result, *args, **kwargs)
            self.local.fetching = True
            started = time.perf_counter()
            try:
                return fetch(strategy, result, *args, **kwargs)
            finally:
                self.local.fetching = False
                statement = getattr(getattr(result, "context", None), "statement", None)
                with self.lock:
                    entry = self.stats.get(statement) if statement is not None else None
                    if entry is not None:
                        entry[1] += time.perf_counter() - started

        return timed

    def _before(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                executemany: bool) -> None:
        self.local.started = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
               executemany: bool) -> None:
        # Per thread: a thread runs one statement at a time (the ingest's
        # spooler thread and its main thread each have theirs).
        started = getattr(self.local, "started", None)
        if started is None:
            return
        seconds = time.perf_counter() - started
        self.local.started = None
        with self.lock:
            entry = self.stats.get(statement)
            if entry is None:
                # executemany: a list of parameter sets (insertmanyvalues
                # passes one flat set with executemany set too)
                many = (executemany and isinstance(parameters, list | tuple) and len(parameters) > 0
                        and isinstance(parameters[0], tuple | list | dict))
                first = parameters[0] if many else parameters
                self.stats[statement] = [1, seconds, _picklable(first), executemany]
            else:
                entry[0] += 1
                entry[1] += seconds


def _picklable(value: Any) -> Any:
    try:
        pickle.dumps(value)
    except Exception:  # noqa: BLE001 - a driver's wrapper type: explain without it
        return None
    return value


def main() -> int:
    out, argv = Path(sys.argv[1]), sys.argv[2:]
    sql = SqlTimes()
    sql.install()
    from gateway.cli import main as gateway_main

    profile = cProfile.Profile()
    # Every other thread too (the ingest's spooler, the outbox sender's
    # database threads): each gets a profiler of its own when it starts.
    threads: list[cProfile.Profile] = []

    def start_thread_profile(*_: Any) -> None:
        mine = cProfile.Profile()
        threads.append(mine)
        mine.enable()

    threading.setprofile(start_thread_profile)
    start = time.perf_counter()
    profile.enable()
    rc = gateway_main(argv)
    profile.disable()
    elapsed = time.perf_counter() - start
    threading.setprofile(None)
    buf = io.StringIO()
    stats = pstats.Stats(profile, stream=buf)
    for other in threads:
        other.snapshot_stats()  # its thread may still run
        stats.add(other)
    # (file, line, function) -> (calls, own seconds, cumulative seconds)
    functions = {
        f"{Path(k[0]).name}:{k[1]}({k[2]})": (v[1], v[2], v[3])
        for k, v in stats.stats.items()  # type: ignore[attr-defined]
    }
    out.write_bytes(pickle.dumps({"rc": rc, "elapsed": elapsed, "sql": sql.stats, "functions": functions}))
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
