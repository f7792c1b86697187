"""Prometheus metrics of ``gateway serve`` on ``[metrics] listen``.

Two kinds, chosen by where the truth lives:

- **Events in the daemon process** are counters: SMTP answers by result and
  reason (counted by the listener's handler), the processing latency
  histogram (received → processed; the worker processes hand their
  measurements back with each batch's result, so no shared files between
  processes are needed), and what the retention job removed, with the time
  of its last run (on the instance that ran it: alert on the newest of all).
- **State** is read from the database on every scrape by a custom
  collector: spool depth, oldest queued age, mail by status (the pipeline's
  dispositions; quarantined among them), outbox by status, IMAP mailboxes'
  last success and error. Every process and every host that shares the
  database sees the same numbers, a restart loses nothing, and the numbers
  agree with ``gateway status`` because they come from the same query.
  With several instances on one database, one of them (the holder of the
  ``metrics:database`` lease) exports these; the others say
  ``gateway_database_gauges_exporter 0``.

Mail by status is a gauge, not a counter: a reprocessed quarantined mail
leaves ``quarantined``, so that count can fall.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from gateway.store import read
from gateway.store.db import reading

log = logging.getLogger("gateway.metrics")

RETENTION_KINDS = ("raw_mail", "outbox_body", "maildir_copy")  # gateway.retention.Result.removed()
# Seconds from spool to effect: sub-second when idle, minutes behind a burst.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


def _timestamp(iso: str | None) -> float | None:
    return dt.datetime.fromisoformat(iso).timestamp() if iso else None


class DatabaseCollector(Collector):
    """Gauges computed from the database when Prometheus scrapes (in the
    HTTP server's thread, never on the event loop)."""

    def __init__(self, engine: Engine, exporter: Callable[[], bool] | None = None) -> None:
        self.engine = engine
        # Several instances on one database: only the one ``exporter`` says
        # yes to exports the database's gauges, so a dashboard that sums the
        # instances does not count the spool two or three times.
        self.exporter = exporter

    def describe(self) -> Iterable[Any]:
        # Registering must not query the database (it may be down at start).
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("gateway_database_up", "1 when the status query succeeded")
        try:
            with reading(self.engine) as session:
                status = read.status_json(session)
        except Exception as exc:  # noqa: BLE001 - a scrape reports, it does not crash
            log.warning("metrics: status query failed: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        exports = self.exporter is None or self.exporter()
        exporter = GaugeMetricFamily(
            "gateway_database_gauges_exporter",
            "1 when this instance exports the database's gauges (one instance among those sharing it)",
        )
        exporter.add_metric([], 1 if exports else 0)
        yield exporter
        if exports:
            yield from self._families(status)

    def _families(self, status: dict[str, Any]) -> Iterator[GaugeMetricFamily]:
        spool = status["spool"]
        depth = GaugeMetricFamily(
            "gateway_spool_depth", "Spooled mail not yet processed (queued + processing)"
        )
        depth.add_metric([], spool["depth"])
        yield depth
        age = GaugeMetricFamily(
            "gateway_spool_oldest_queued_age_seconds", "Age of the oldest queued mail (0: none queued)"
        )
        age.add_metric([], spool["oldest_queued_age_seconds"] or 0)
        yield age
        quarantined = GaugeMetricFamily("gateway_quarantined_mails", "Inbound mail in the quarantine")
        quarantined.add_metric([], status["quarantined"])
        yield quarantined
        inbound = GaugeMetricFamily(
            "gateway_inbound_mails", "Inbound mail by status (the pipeline's dispositions)", labels=["status"]
        )
        for name, n in status["inbound"].items():
            inbound.add_metric([name], n)
        yield inbound
        outbox = GaugeMetricFamily("gateway_outbox_mails", "Outbound mail by status", labels=["status"])
        for name, n in status["outbox"].items():
            outbox.add_metric([name], n)
        yield outbox
        capped = GaugeMetricFamily(
            "gateway_outbox_unverified_capped_mails",
            "Automatic mail to unverified addresses held back by the desk-wide hourly cap "
            "(backscatter): waiting, or dropped after waiting too long",
            labels=["state"],
        )
        for name, n in status["outbox_unverified_capped"].items():
            capped.add_metric([name], n)
        yield capped
        yield from self._imap(status["imap"])

    def _imap(self, mailboxes: list[dict[str, Any]]) -> Iterator[GaugeMetricFamily]:
        failing = GaugeMetricFamily(
            "gateway_imap_poll_failing", "1 when the mailbox's last poll failed", labels=["mailbox"]
        )
        success = GaugeMetricFamily(
            "gateway_imap_last_success_timestamp_seconds", "Last successful poll", labels=["mailbox"]
        )
        error = GaugeMetricFamily(
            "gateway_imap_last_error_timestamp_seconds", "Last failed poll", labels=["mailbox"]
        )
        for box in mailboxes:
            failing.add_metric([box["mailbox"]], 1 if box["failing"] else 0)
            if (ts := _timestamp(box["last_success_at"])) is not None:
                success.add_metric([box["mailbox"]], ts)
            if (ts := _timestamp(box["last_error_at"])) is not None:
                error.add_metric([box["mailbox"]], ts)
        yield failing
        yield success
        yield error


class Metrics:
    """The daemon's registry (its own, not the process-global one, so two
    daemons in one test process do not collide) and its HTTP endpoint."""

    def __init__(self, engine: Engine | None = None, exporter: Callable[[], bool] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.smtp = Counter(
            "gateway_smtp_messages",
            "SMTP/LMTP answers by result (accepted, rejected, tempfailed) and reason",
            ["result", "reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_processing_latency_seconds",
            "Seconds from receiving a mail to its processing result",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.retention_removed = Counter(
            "gateway_retention_removed",
            "What the retention job removed: raw_mail (mails' raw bytes), outbox_body (outbound mails' "
            "render data), maildir_copy (sent mails' copies in the Maildir)",
            ["kind"],
            registry=self.registry,
        )
        for kind in RETENTION_KINDS:
            self.retention_removed.labels(kind)  # 0 from the start, not absent until the first removal
        self.retention_last_run = Gauge(
            "gateway_retention_last_run_timestamp_seconds",
            "When this instance last completed a retention run",
            registry=self.registry,
        )
        if engine is not None:
            self.registry.register(DatabaseCollector(engine, exporter))
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def count_smtp(self, result: str, reason: str) -> None:
        """The listener's ``on_result`` hook."""
        self.smtp.labels(result, reason).inc()

    def observe_latencies(self, seconds: Iterable[float]) -> None:
        for value in seconds:
            self.latency.observe(value)

    def count_retention(self, removed: dict[str, int], finished_at: float | None) -> None:
        """A retention run (``jobs.start_retention``'s ``on_result``);
        ``finished_at`` None: it left the database to another instance."""
        for kind, n in removed.items():
            self.retention_removed.labels(kind).inc(n)
        if finished_at is not None:
            self.retention_last_run.set(finished_at)

    def start(self, listen: str) -> tuple[str, int] | None:
        """Serve ``/metrics`` on ``host:port`` in a thread; returns the bound
        address, or None when disabled or the port cannot be bound (metrics
        are not worth refusing mail over: that is logged, and the daemon
        goes on)."""
        if not listen:
            return None
        host, _, port = listen.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        try:
            self._server, self._thread = start_http_server(int(port), addr=host, registry=self.registry)
        except OSError as exc:
            reason = exc.strerror or exc
            log.error("metrics: cannot listen on %s: %s; running without metrics", listen, reason)
            return None
        bound_host, bound_port = self._server.server_address[:2]
        return str(bound_host), int(bound_port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
