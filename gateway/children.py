"""Processes of the daemon on this host: its children (pipeline workers,
portal workers) die with it, however it dies; and whether a process a
database row names (an instance, a worker's claim) still runs here."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with(daemon_pid: int) -> None:
    """Have the kernel SIGKILL this worker when the daemon dies, however it
    dies: after a SIGKILL or a crash of the daemon its pool workers lived
    on, idle, each with its memory and database connections, until someone
    killed them by hand. (Under systemd the unit's cgroup is killed anyway;
    this is for every other way of running ``gateway serve``.) Their claimed
    rows go back to the queue when the daemon starts again."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != daemon_pid:  # it died before prctl took effect
        os._exit(1)


def gone_here(host: str, pid: int, *, node: str | None = None) -> bool:
    """Whether the process ``pid`` that a row says runs on ``host`` surely
    no longer exists: only on this host (``node``, by default this host's
    name) can we tell, and a process we may not signal exists."""
    if host != (node if node is not None else os.uname().nodename):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # exists, owned by someone else
    return False
