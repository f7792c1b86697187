"""Run one ``gateway`` command in this process, measured: every SQL
statement timed (SQLAlchemy's ``before/after_cursor_execute`` events,
summed per statement text, with the first parameters seen, so that the
statement can be explained afterwards) and the main thread under cProfile.
Writes both to a pickle for ``bench_growth.py --profile``.

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
    start = time.perf_counter()
    profile.enable()
    rc = gateway_main(argv)
    profile.disable()
    elapsed = time.perf_counter() - start
    buf = io.StringIO()
    stats = pstats.Stats(profile, stream=buf)
    # (file, line, function) -> (calls, own seconds, cumulative seconds)
    functions = {
        f"{Path(k[0]).name}:{k[1]}({k[2]})": (v[1], v[2], v[3])
        for k, v in stats.stats.items()  # type: ignore[attr-defined]
    }
    out.write_bytes(pickle.dumps({"rc": rc, "elapsed": elapsed, "sql": sql.stats, "functions": functions}))
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
