"""A tiny client of systemd's notify protocol (``sd_notify(3)``): one
datagram of ``KEY=value`` lines to the AF_UNIX socket named by
``$NOTIFY_SOCKET``. Pure Python, no libsystemd; a no-op when the variable is
unset (a laptop run, the tests, any supervisor other than systemd).

The daemon sends ``READY=1`` once it listens, ``WATCHDOG=1`` from its event
loop (so a stuck loop stops the pings and systemd restarts it),
``STATUS=…`` lines an operator sees in ``systemctl status``, and
``STOPPING=1`` when it drains.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("gateway.sdnotify")

# A send must never stall the event loop for long: systemd reads its
# notification socket promptly, so a full queue means it is in trouble
# itself, and a lost status line is better than a frozen listener.
SEND_TIMEOUT = 0.5


def socket_address(value: str) -> str | bytes:
    """``$NOTIFY_SOCKET`` as an address for ``sendto``: ``@name`` is the
    Linux abstract namespace (a leading NUL byte), anything else a path."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


class Notifier:
    """Sends notifications to systemd, or nothing when not under systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        value = env.get("NOTIFY_SOCKET", "")
        # Only a path or an abstract name; systemd >= 253 may also pass
        # "vsock:…", which a gateway service has no use for.
        self.address: str | bytes | None = (
            socket_address(value) if value.startswith(("/", "@")) else None
        )
        self.watchdog_usec = _watchdog_usec(env)
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings: half of ``WATCHDOG_USEC``
        (sd_watchdog_enabled(3) recommends pinging at half the timeout);
        None when systemd expects no pings from this process."""
        if self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2_000_000

    def send(self, **fields: str | int) -> bool:
        """Send one notification, e.g. ``send(READY=1, STATUS="listening")``.
        Returns whether it was sent; failures are logged, never raised (the
        daemon's job is mail, not reporting)."""
        if self.address is None or not fields:
            return False
        lines = [f"{key}={_one_line(str(value))}" for key, value in fields.items()]
        data = ("\n".join(lines) + "\n").encode("utf-8", "replace")
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.settimeout(SEND_TIMEOUT)
                self._sock = sock
            self._sock.sendto(data, self.address)
        except OSError as exc:
            log.debug("sd_notify failed: %s", exc)
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    """``$WATCHDOG_USEC`` when it is meant for this process: systemd sets
    ``$WATCHDOG_PID`` to the main process, and a child that inherited the
    environment must not ping on the parent's behalf."""
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    return int(usec)


def _one_line(text: str) -> str:
    # The protocol is line-based: a newline in a STATUS would start a new,
    # bogus assignment.
    return " ".join(text.split())
