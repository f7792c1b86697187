"""Logging of ``gateway serve`` and its workers: one handler on stderr
(journald captures it under systemd), human-readable by default, JSON lines
when ``[logging] format = "json"``. Lines about a message carry its spool id
and Message-ID as structured fields (``extra={"spool": …, "message_id": …}``),
so a JSON consumer can filter on them without parsing text.

What is logged at info level never includes passwords, tokens or mail
bodies: the loggers only ever get ids, addresses and dispositions.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from typing import Any, TextIO

from gateway.settings import LoggingSettings

# The attributes every LogRecord has; anything else came through ``extra=``.
_STANDARD = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}

# syslog priorities for journald's "<N>" line prefix (sd-daemon(3)).
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}

# Third-party loggers that are chatty at INFO: aiosmtpd logs every SMTP
# command (slow, and it would put envelope data of every session in the log).
# Libraries whose info lines say nothing an operator needs: aiosmtpd's
# per-command log, Alembic's "context impl" lines at every start, the
# scheduler's job chatter.
_QUIET = {
    "mail.log": logging.WARNING,
    "alembic": logging.WARNING,
    "apscheduler": logging.WARNING,
}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a caller attached with ``extra=``."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the ``extra``
    fields, and ``exc`` with the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            doc.setdefault(key, value)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


class HumanFormatter(logging.Formatter):
    """``time level logger: message``; under journald the time is left out
    (the journal has its own) and the level becomes a ``<N>`` prefix, so
    ``journalctl -p warning`` works."""

    def __init__(self, journald: bool = False) -> None:
        fmt = "%(name)s: %(message)s" if journald else "%(asctime)s %(levelname)s %(name)s: %(message)s"
        super().__init__(fmt)
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not self.journald:
            return text
        prio = _PRIORITY.get(record.levelno, 6)
        # Every line of a traceback gets the prefix, or journald files the
        # continuation lines at the default priority.
        return "\n".join(f"<{prio}>{line}" for line in text.split("\n"))


class _GatewayHandler(logging.StreamHandler[TextIO]):
    """Marks the handler this module installed, so a reconfiguration
    replaces it and leaves handlers of others (pytest's caplog) alone."""


def stream_is_journal(stream: TextIO, environ: dict[str, str] | None = None) -> bool:
    """Whether ``stream`` is connected to journald: systemd sets
    ``$JOURNAL_STREAM`` to ``device:inode`` of that socket."""
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    if ":" not in value:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return value == f"{st.st_dev}:{st.st_ino}"


def effective_level(config: LoggingSettings) -> int:
    """``$GATEWAY_LOG_LEVEL`` (a quick override for one run) beats the config."""
    name = (os.environ.get("GATEWAY_LOG_LEVEL") or config.level).upper()
    level = logging.getLevelName(name)
    return level if isinstance(level, int) else logging.INFO


def configure(config: LoggingSettings | None = None, stream: TextIO | None = None) -> None:
    """Install (or replace) the gateway's stderr handler on the root logger
    with the configured level and format. Safe to call again on reload."""
    config = config or LoggingSettings()
    stream = stream or sys.stderr
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _GatewayHandler)]:
        root.removeHandler(old)
    handler = _GatewayHandler(stream)
    if config.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(HumanFormatter(journald=stream_is_journal(stream)))
    root.addHandler(handler)
    root.setLevel(effective_level(config))
    for name, level in _QUIET.items():
        logging.getLogger(name).setLevel(level)


def is_configured_elsewhere() -> bool:
    """Root has handlers that are not ours (an embedding application, or
    pytest): then the daemon leaves logging as it is."""
    root = logging.getLogger()
    return any(not isinstance(h, _GatewayHandler) for h in root.handlers)
