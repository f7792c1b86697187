"""Benchmark: does ingest slow down as the store grows? The same corpus
(``tests/corpus``, 1,500 messages by default) through ``gateway ingest``
into an empty store and into one that already holds a million tickets with
their Message-IDs (``message_ref``: each ticket's mail and its
acknowledgement), 100,000 accounts and 5,000 organizations; prints msgs/s
of both and their ratio (issue #17: at most 1.2x at a million).

    python bench/bench_growth.py [--tickets 1000000] [--repeat 3]
    python bench/bench_growth.py --pg                 # on a throwaway PostgreSQL 15
    python bench/bench_growth.py --flush              # and the sender: `gateway outbox flush`
    python bench/bench_growth.py --history            # each ticket's mail log, outbox, history too
    python bench/bench_growth.py --profile [--explain] # where the time goes, and the plans

``--flush`` times ``gateway outbox flush`` of the mail the ingest queued,
after it, in both stores: the sender reads the thread's Message-IDs and the
hourly caps. ``--history`` seeds, beside each ticket, the mail that made
it: its mail-log row (``inbound_mail``) and processed key, the
acknowledgement in the outbox (sent) and the ``created`` history entry: a
store that grew through the desk, not only its tickets (about twice the
size, and twice the seeding time).

The seeded store is disjoint from the corpus (its people write from
``*.bench.example``), so both stores do the same work: the same
dispositions, tickets, comments and mails, checked after every run; only
the size of what is already there differs. (Replies to seeded tickets would
be new tickets in the empty store: a different workload, not a ratio.)

Seeding is SQL (``INSERT … SELECT`` over a generated series, secondary
indexes dropped and rebuilt afterwards: B-tree builds from sorted input),
into a database ``gateway db upgrade`` migrated: a million tickets take
well under a minute on SQLite. The seeded SQLite file is cached under
``--cache`` (keyed by the schema and the seed's parameters) and copied per
run; on PostgreSQL each run gets a copy of a seeded template database
(``CREATE DATABASE … TEMPLATE``), vacuumed and analysed as autovacuum would
leave it.

Each round runs the empty store and the seeded one back to back (the order
alternating), so that load from other work on the machine meets both.

``--profile``: one more run of each, in-process under cProfile with every
SQL statement timed (``growth_probe.py``), printing the statements and
functions whose time grew most; ``--explain`` adds the plan of every
statement of the hot path on the seeded store (SQLite: ``EXPLAIN QUERY
PLAN``; PostgreSQL: ``EXPLAIN (ANALYZE, BUFFERS)`` in a rolled-back
transaction)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corpus import make_corpus

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
SEED_VERSION = 1  # bump when the seeded data changes: the cached files are rebuilt
DESK_DOMAIN = "bench.example"
START = 1_650_000_000  # seeded tickets run from here (2022-04-15) ...
SPAN = 3 * 365 * 86_400  # ... over three years

# Independent-looking pseudo-random numbers in plain SQL (both databases):
# bits 8..31 of i * an odd constant, modulo what is wanted. Seeded, so the
# same store every time.
MULS = (2654435761, 2246822519, 3266489917, 668265263, 374761393, 1103515245, 2869860233,
        1597334677, 3812015801, 2971215073)


def h(k: int, col: str = "i") -> str:
    """SQL for the k-th pseudo-random number (0..2^24) of row ``col``."""
    return f"(((CAST({col} AS BIGINT) * {MULS[k]}) % 4294967296) / 256)"


@dataclass(frozen=True)
class Size:
    tickets: int
    accounts: int
    refs: int  # message_ref rows per ticket
    # Also the mail behind each ticket: its mail-log row (inbound_mail) and
    # processed key, the acknowledgement in the outbox (sent: the outbound
    # ref is its Message-ID) and the "created" history entry.
    history: bool = False

    @property
    def orgs(self) -> int:
        return max(10, self.accounts // 20)

    @property
    def agents(self) -> int:
        return max(2, self.accounts // 500)


# -- the seed, as SQL ---------------------------------------------------------------


def seed_statements(size: Size, pg: bool) -> list[str]:
    """INSERT … SELECT statements that fill a migrated, empty store."""
    A, N, ORGS, G = size.accounts, size.tickets, size.orgs, size.agents  # noqa: N806
    if pg:
        series = "generate_series(1::bigint, {n}) AS s(i)"
        ts = "to_timestamp({e})"
        hexid = "lpad(to_hex({a}), 6, '0') || lpad(to_hex({b}), 6, '0')"
        boolean = "({x})"
        fields = "'{}'::json"
        fields_ts = """('{"moxis_domain": "moxis.kunde' || coalesce(org, 0) || '.bench.example"}')::json"""
        nl = "chr(10)"
    else:
        series = ("(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) "
                  "SELECT i FROM s)")
        # SQLAlchemy's SQLite DATETIME text, microseconds included
        ts = "(strftime('%Y-%m-%d %H:%M:%S', {e}, 'unixepoch') || '.000000')"
        hexid = "printf('%06x%06x', {a}, {b})"
        boolean = "({x})"
        fields = "'{}'"
        fields_ts = """'{"moxis_domain": "moxis.kunde' || coalesce(org, 0) || '.bench.example"}'"""
        nl = "char(10)"

    def s(n: int) -> str:
        return series.format(n=n)

    def t(e: str) -> str:
        return ts.format(e=e)

    org_ts = t(str(START))
    stmts = [
        f"INSERT INTO organization (id, name, share_by_default, created_at) "
        f"SELECT i, 'Kunde ' || i || ' GmbH', {boolean.format(x='i % 3 = 0')}, {org_ts} FROM {s(ORGS)}",
        "INSERT INTO organization_domain (domain, organization_id) "
        f"SELECT 'kunde' || id || '.{DESK_DOMAIN}', id FROM organization",
        # Accounts: the first ones agents, then 60 % members of an
        # organization (its domain), the rest at mail providers; 40 % active.
        f"""INSERT INTO account (id, email, name, state, role, organization_id, locale, password_hash,
                                 is_robot, bounced_at, created_at)
        SELECT i,
               CASE WHEN i <= {G} THEN 'agent' || i || '@desk.{DESK_DOMAIN}'
                    WHEN r < 60 THEN 'person' || i || '@kunde' || org || '.{DESK_DOMAIN}'
                    ELSE 'person' || i || '@mail' || (i % 50) || '.{DESK_DOMAIN}' END,
               'Person ' || i,
               CASE WHEN i <= {G} OR st < 40 THEN 'active' WHEN st >= 97 THEN 'disabled'
                    ELSE 'unverified' END,
               CASE WHEN i <= {G} THEN 'agent' ELSE 'customer' END,
               CASE WHEN i > {G} AND r < 60 THEN org END,
               CASE i % 3 WHEN 0 THEN 'de' WHEN 1 THEN 'en' END,
               NULL, {boolean.format(x='1 = 0')}, NULL, {t(f'{START} + i * 60')}
        FROM (SELECT i, {h(0)} % 100 AS r, 1 + {h(1)} % {ORGS} AS org, {h(2)} % 100 AS st FROM {s(A)}) a""",
        # Tickets over three years, oldest first; old ones mostly closed; a
        # fifth shared with the reporter's organization, half assigned.
        f"""INSERT INTO ticket (id, number, key, request_type, summary, description, status, priority,
                                reporter_id, organization_id, assignee_id, fields, message_id,
                                linked_key, source_mail_id, threaded_by, created_at, updated_at)
        SELECT i, i, 'SD-' || i, kind,
               'Seeded request ' || i || ': Signatur schlägt fehl',
               'Guten Tag,' || {nl} || {nl} || 'seit heute Morgen erhalten wir beim Signieren '
                 || 'die Meldung E-' || (i % 9000) || '. Betroffen sind alle Benutzer im Mandanten, '
                 || 'bitte um Rückmeldung.' || {nl} || {nl} || 'Mit freundlichen Grüßen',
               CASE WHEN i <= {N} * 0.97 THEN
                      CASE WHEN st < 85 THEN 'closed' WHEN st < 95 THEN 'resolved'
                           WHEN st < 98 THEN 'waiting_for_customer' ELSE 'waiting_for_support' END
                    ELSE CASE WHEN st < 20 THEN 'closed' WHEN st < 40 THEN 'resolved'
                           WHEN st < 65 THEN 'waiting_for_customer' ELSE 'waiting_for_support' END END,
               CASE WHEN pr < 15 THEN 'low' WHEN pr < 75 THEN 'medium' WHEN pr < 95 THEN 'high'
                    ELSE 'critical' END,
               reporter, CASE WHEN sh < 20 THEN org END,
               CASE WHEN asg < 50 THEN 1 + asg % {G} END,
               CASE WHEN kind = 'technical_support' THEN {fields_ts} ELSE {fields} END,
               '<' || {hexid.format(a=h(7), b=h(8))} || '.' || i || '@kunde' || coalesce(org, 0)
                 || '.{DESK_DOMAIN}>',
               NULL, NULL, 'new', {t(f'{START} + (i - 1) * {SPAN} / {N}')},
               {t(f'{START} + (i - 1) * {SPAN} / {N} + up')}
        FROM (SELECT i, reporter, org, st, pr, sh, asg, up,
                     CASE WHEN k < 70 THEN 'technical_support' WHEN k < 95 THEN 'other'
                          ELSE 'suggest_improvement' END AS kind
              FROM (SELECT i, {G} + 1 + {h(3)} % {A - G} AS reporter, {h(4)} % 100 AS st,
                           {h(5)} % 100 AS pr, {h(6)} % 100 AS k, {h(9)} % 100 AS sh,
                           {h(2)} % 100 AS asg, {h(1)} % 259200 AS up FROM {s(N)}) x
              LEFT JOIN (SELECT id AS aid, organization_id AS org FROM account) a ON a.aid = x.reporter) y""",
        # The Message-IDs the desk knows of each ticket: its mail's, then the
        # acknowledgement's (make_msgid's shape on the desk's domain), then a
        # reply's.
        "INSERT INTO message_ref (id, message_id, ticket_id, direction) "
        "SELECT id, message_id, id, 'inbound' FROM ticket",
    ]
    if size.refs >= 2:
        stmts.append(
            f"INSERT INTO message_ref (id, message_id, ticket_id, direction) "
            f"SELECT {N} + id, '<' || (165000000000 + CAST(id AS BIGINT) * 9461) || '.4242.' || "
            f"{h(5, 'id')} || {h(6, 'id')} || '.sd@servicedesk.xitrust.com>', id, 'outbound' FROM ticket"
        )
    if size.refs >= 3:
        stmts.append(
            f"INSERT INTO message_ref (id, message_id, ticket_id, direction) "
            f"SELECT {2 * N} + id, '<' || {hexid.format(a=h(3, 'id'), b=h(4, 'id'))} "
            f"|| '@reply.{DESK_DOMAIN}>', "
            f"id, 'inbound' FROM ticket"
        )
    if size.history:
        stmts += history_statements(size, pg, t, hexid)
    stmts.append("DELETE FROM ticket_counter")
    stmts.append(f"INSERT INTO ticket_counter (prefix, value) VALUES ('SD', {N})")
    return stmts


def history_statements(size: Size, pg: bool, t: Callable[[str], str], hexid: str) -> list[str]:
    """``--history``: what a million tickets made from mail leave beside
    them. Row i of each table belongs to ticket i."""
    N = size.tickets  # noqa: N806

    def hex64(ks: tuple[int, ...]) -> str:  # a SHA-256-like hex digest of ticket t
        parts = [hexid.format(a=h(ks[j], "t.id"), b=h(ks[j + 1], "t.id")) for j in range(0, len(ks), 2)]
        return f"substr({' || '.join(parts)}, 1, 64)"

    true, false = ("true", "false") if pg else ("1", "0")
    sent_at = t(f"{START} + (CAST(t.id AS BIGINT) - 1) * {SPAN} / {N} + 60")
    outbound_mid = f"(SELECT message_id FROM message_ref WHERE id = {N} + t.id)" if size.refs >= 2 else "NULL"
    return [
        f"""INSERT INTO inbound_mail (id, received_at, source, envelope_from, recipient, trusted, raw_sha256,
                                     raw_size, message_id, from_addr, subject, status, disposition, ticket_id,
                                     error, attempts, claimed_by, claimed_at, processed_at, raw_inline)
        SELECT t.id, t.created_at, 'smtp', a.email, 'servicedesk@xitrust.com', {false},
               {hex64((0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 2))}, 4000 + t.id % 20000, t.message_id, a.email,
               t.summary, 'done', 'created ' || t.key, t.id, NULL, 1, 'seed', t.created_at, t.created_at, NULL
        FROM ticket t JOIN account a ON a.id = t.reporter_id""",
        f"""INSERT INTO processed_key (key, inbound_mail_id)
        SELECT {hex64((9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 9, 7))}, t.id FROM ticket t""",
        f"""INSERT INTO outbound_mail (id, created_at, to_addr, template, locale, subject, message_id,
                                      ticket_id, cause_mail_id, data, automatic, status, attempts,
                                      last_error, next_attempt_at, sent_at)
        SELECT t.id, t.created_at, a.email,
               CASE WHEN a.state = 'active' THEN 'request_created' ELSE 'signup_invitation' END,
               coalesce(a.locale, 'de'), 'Ihre Anfrage ' || t.key, {outbound_mid}, t.id, t.id,
               '{{}}', {true}, 'sent', 1, NULL, NULL, {sent_at}
        FROM ticket t JOIN account a ON a.id = t.reporter_id""",
        """INSERT INTO ticket_event (id, ticket_id, at, actor_id, action, from_value, to_value, source,
                                     comment_id, inbound_mail_id)
        SELECT t.id, t.id, t.created_at, t.reporter_id, 'created', NULL, NULL, 'email', NULL, t.id
        FROM ticket t""",
    ]


SEEDED_TABLES = ("organization", "organization_domain", "account", "ticket", "message_ref",
                 "inbound_mail", "processed_key", "outbound_mail", "ticket_event")


def seed_sqlite(path: Path, size: Size) -> None:
    """Fill a migrated SQLite file: secondary indexes dropped, the rows
    inserted, the indexes rebuilt (the schema stays exactly as migrated)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-1000000")
        db.execute("PRAGMA foreign_keys=OFF")
        names = ", ".join(f"'{t}'" for t in SEEDED_TABLES)
        indexes = db.execute(
            f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
            f"AND tbl_name IN ({names})"
        ).fetchall()
        db.execute("BEGIN")
        for name, _ in indexes:
            db.execute(f'DROP INDEX "{name}"')
        for stmt in seed_statements(size, pg=False):
            db.execute(stmt)
        for _, sql in indexes:
            db.execute(sql)
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


def seed_pg(dsn: str, size: Size) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        names = list(SEEDED_TABLES)
        # Indexes that back a constraint (primary keys, UNIQUE) stay.
        indexes = conn.execute(
            """SELECT indexname, indexdef FROM pg_indexes i
               WHERE schemaname = 'public' AND tablename = ANY(%s)
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                               WHERE c.conindid = (quote_ident(i.schemaname) || '.'
                                                   || quote_ident(i.indexname))::regclass)""",
            (names,),
        ).fetchall()
        with conn.transaction():
            # No foreign-key triggers: the seed is consistent by construction.
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
            for name, _ in indexes:
                conn.execute(f'DROP INDEX "{name}"')
            for stmt in seed_statements(size, pg=True):
                conn.execute(stmt)
            for _, sql in indexes:
                conn.execute(sql)
            # The ids were given: the sequences go on after them, as the
            # desk's own inserts would have left them.
            for table in ("organization", "account", "ticket", "message_ref", "inbound_mail",
                          "outbound_mail", "ticket_event"):
                conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}")
        # As autovacuum would leave a store that grew over years.
        conn.execute("VACUUM ANALYZE")


# -- stores ---------------------------------------------------------------------------


def gateway_env(url: str, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY")}
    env.update(
        PYTHONPATH=str(ROOT),
        GATEWAY__DATABASE__URL=url,
        GATEWAY__STORAGE__BLOBS=str(workdir / "blobs"),
        GATEWAY__OUTBOUND__MAILDIR=str(workdir / "sent"),
    )
    return env


def gateway(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, check=True)


class Stores:
    """Where the two stores come from, and a fresh copy of each per run."""

    name: str

    def prepare(self) -> None:
        raise NotImplementedError

    @contextmanager
    def copy(self, seeded: bool, workdir: Path) -> Iterator[str]:
        """A fresh copy of the empty or the seeded store: its URL."""
        raise NotImplementedError
        yield ""

    def explain(self, url: str, statements: dict[str, list[Any]]) -> Iterator[tuple[str, list[str]]]:
        raise NotImplementedError


class SqliteStores(Stores):
    name = "SQLite"

    def __init__(self, size: Size, cache: Path, log: Callable[[str], None]) -> None:
        self.size = size
        self.cache = cache
        self.log = log
        self.empty = self.seeded = Path()

    def prepare(self) -> None:
        self.cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="bench-growth-") as tmp:
            fresh = Path(tmp) / "gateway.db"
            gateway(["db", "upgrade"], gateway_env(f"sqlite:///{fresh}", Path(tmp)), Path(tmp))
            db = sqlite3.connect(fresh)
            # Sorted lines: a table Alembic's batch mode rebuilt lists its
            # constraints in an order that varies from run to run.
            rows = db.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
            lines = (line.strip().rstrip(",") for (sql,) in rows for line in sql.splitlines())
            schema = "\n".join(sorted(lines))
            db.close()
            key = hashlib.sha256(f"{schema}|{self.size}|{SEED_VERSION}".encode()).hexdigest()[:12]
            self.empty = self.cache / f"empty-{key}.db"
            self.seeded = self.cache / f"seeded-{self.size.tickets}-{key}.db"
            if not self.empty.exists():
                shutil.copy(fresh, self.empty)
        if self.seeded.exists():
            self.log(f"seeded store: {self.seeded} (cached)")
            return
        partial = self.seeded.with_suffix(".partial")
        shutil.copy(self.empty, partial)
        t0 = time.perf_counter()
        seed_sqlite(partial, self.size)
        partial.rename(self.seeded)
        self.log(f"seeded {self.size} in {time.perf_counter() - t0:.1f} s "
                 f"({self.seeded.stat().st_size / 2**20:.0f} MiB)")

    @contextmanager
    def copy(self, seeded: bool, workdir: Path) -> Iterator[str]:
        target = workdir / "gateway.db"
        shutil.copy(self.seeded if seeded else self.empty, target)
        # On disk before the clock starts: a gigabyte of dirty pages written
        # back meanwhile would slow the run's own syncs.
        fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        yield f"sqlite:///{target}"

    def explain(self, url: str, statements: dict[str, list[Any]]) -> Iterator[tuple[str, list[str]]]:
        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            for text, (_, _, params, _) in statements.items():
                if text.strip().upper().split()[0] in ("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA", "SAVEPOINT",
                                                      "RELEASE"):
                    continue
                try:
                    rows = db.execute(f"EXPLAIN QUERY PLAN {text}", params or ()).fetchall()
                    yield text, [f"{'  ' * _depth(rows, r)}{r[3]}" for r in rows]
                except sqlite3.Error as exc:
                    yield text, [f"(not explained: {exc})"]
        finally:
            db.close()


def _depth(rows: list[tuple[Any, ...]], row: tuple[Any, ...]) -> int:
    parents = {r[0]: r[1] for r in rows}
    depth, parent = 0, row[1]
    while parent in parents:
        depth, parent = depth + 1, parents[parent]
    return depth


class PgStores(Stores):
    name = "PostgreSQL"

    def __init__(self, size: Size, log: Callable[[str], None]) -> None:
        sys.path.insert(0, str(ROOT / "tests"))
        from pgcluster import PgCluster  # the tests' throwaway cluster

        self.size = size
        self.log = log
        self.cluster = PgCluster()
        self.runs = 0

    def prepare(self) -> None:
        import psycopg

        self.cluster.start()
        with tempfile.TemporaryDirectory(prefix="bench-growth-") as tmp:
            url = self.cluster.create_database("growth_empty")
            gateway(["db", "upgrade"], gateway_env(url, Path(tmp)), Path(tmp))
        with psycopg.connect(self.cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            conn.execute("CREATE DATABASE growth_seeded TEMPLATE growth_empty STRATEGY FILE_COPY")
        t0 = time.perf_counter()
        seed_pg(self.cluster.dsn("growth_seeded"), self.size)
        with psycopg.connect(self.cluster.dsn("growth_empty"), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            size_row = conn.execute("SELECT pg_database_size('growth_seeded')").fetchone()
        self.log(f"seeded {self.size} in {time.perf_counter() - t0:.1f} s "
                 f"({(size_row[0] if size_row else 0) / 2**20:.0f} MiB)")

    def stop(self) -> None:
        self.cluster.stop()

    @contextmanager
    def copy(self, seeded: bool, workdir: Path) -> Iterator[str]:
        import psycopg

        self.runs += 1
        name = f"growth_run{self.runs}"
        template = "growth_seeded" if seeded else "growth_empty"
        with psycopg.connect(self.cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY")
        try:
            yield self.cluster.url(name)
        finally:
            self.cluster.drop_database(name)

    def explain(self, url: str, statements: dict[str, list[Any]]) -> Iterator[tuple[str, list[str]]]:
        import psycopg

        dsn = self.cluster.dsn(url.rsplit("/", 1)[1])
        with psycopg.connect(dsn) as conn:
            for text, (_, _, params, _) in statements.items():
                if text.strip().upper().split()[0] in ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"):
                    continue
                try:
                    rows = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {text}", params).fetchall()
                    yield text, [r[0] for r in rows]
                except psycopg.Error as exc:
                    yield text, [f"(not explained: {str(exc).splitlines()[0]})"]
                finally:
                    conn.rollback()


# -- runs -------------------------------------------------------------------------------

STEPS = ("ingest", "flush")


@dataclass
class Run:
    seconds: dict[str, float]  # wall time of each step (``ingest``, ``flush``)
    cpu: dict[str, float]  # CPU time of the gateway process and its parse workers
    outcome: dict[str, int]


def outcome(env: dict[str, str], cwd: Path) -> dict[str, int]:
    """What the run did: dispositions and the outbox, to check that both
    stores did the same work."""
    counts: dict[str, int] = {}
    recent = ["--since", "1d", "--json"]  # this run's, not the seed's (years old)
    for row in json.loads(gateway(["mail", "list", *recent], env, cwd).stdout):
        kind = row["disposition"].split()[0] if row["disposition"] else row["status"]
        counts[kind] = counts.get(kind, 0) + 1
    for row in json.loads(gateway(["outbox", "list", *recent], env, cwd).stdout):
        counts[f"outbox {row['status']}"] = counts.get(f"outbox {row['status']}", 0) + 1
    return dict(sorted(counts.items()))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(stores: Stores, seeded: bool, mbox: Path, base: Path, flush: bool,
        probes: dict[str, Path] | None = None) -> Run:
    """``gateway ingest`` of the corpus into a fresh copy of a store, then
    (``flush``) ``gateway outbox flush`` of the mail it queued. With
    ``probes``, each step runs under ``growth_probe.py`` into its file."""
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="run-", dir=base) as tmp:
        workdir = Path(tmp)
        with stores.copy(seeded, workdir) as url:
            env = gateway_env(url, workdir)
            steps = {"ingest": ["ingest", "--no-progress", str(mbox)], "flush": ["outbox", "flush"]}
            for step, argv in steps.items():
                if step == "flush" and not flush:
                    continue
                cmd = [sys.executable, "-m", "gateway", *argv]
                if probes is not None:
                    cmd = [sys.executable, str(BENCH / "growth_probe.py"), str(probes[step]), *argv]
                cpu0, start = _children_cpu(), time.perf_counter()
                done = subprocess.run(cmd, env=env, cwd=workdir, capture_output=True, text=True)
                seconds[step] = time.perf_counter() - start
                cpu[step] = _children_cpu() - cpu0
                if done.returncode != 0:
                    raise SystemExit(f"{' '.join(cmd)}: exit {done.returncode}\n{done.stderr[-3000:]}")
            result = outcome(env, workdir)
            if probes is not None and seeded:
                for probe in probes.values():
                    if not probe.exists():
                        continue
                    # Explained on the store as the run left it (PostgreSQL:
                    # before the run's database goes).
                    data = pickle.loads(probe.read_bytes())
                    data["explained"] = list(stores.explain(url, data["sql"]))
                    probe.write_bytes(pickle.dumps(data))
    return Run(seconds, cpu, result)


def spread(values: list[float], fmt: str = ".0f") -> str:
    return f"median {statistics.median(values):{fmt}}, min {min(values):{fmt}}, max {max(values):{fmt}}"


def report_profile(step: str, empty: dict[str, Any], seeded: dict[str, Any], top: int) -> None:
    print(f"\n== {step}, profiled: empty {empty['elapsed']:.2f} s, seeded {seeded['elapsed']:.2f} s "
          f"(in-process, cProfile on: slower than unprofiled)")
    total = {k: sum(v[1] for v in d["sql"].values()) for k, d in (("empty", empty), ("seeded", seeded))}
    print(f"SQL statements (cursor time): empty {total['empty']:.2f} s, seeded {total['seeded']:.2f} s")
    rows = []
    for text in set(empty["sql"]) | set(seeded["sql"]):
        e = empty["sql"].get(text, [0, 0.0])
        s = seeded["sql"].get(text, [0, 0.0])
        rows.append((s[1] - e[1], text, e, s))
    rows.sort(reverse=True)
    print(f"  {'grew ms':>8} {'empty ms':>9} {'seeded ms':>9} {'calls':>6}  statement")
    for delta, text, e, s in rows[:top]:
        short = " ".join(text.split())[:150]
        print(f"  {delta * 1e3:8.0f} {e[1] * 1e3:9.0f} {s[1] * 1e3:9.0f} {s[0]:6d}  {short}")
    funcs = []
    for name in set(empty["functions"]) | set(seeded["functions"]):
        e = empty["functions"].get(name, (0, 0.0, 0.0))
        s = seeded["functions"].get(name, (0, 0.0, 0.0))
        funcs.append((s[1] - e[1], name, e, s))
    funcs.sort(reverse=True)
    print(f"functions (own time): {'grew ms':>8} {'empty ms':>9} {'seeded ms':>9} {'calls':>7}")
    for delta, name, e, s in funcs[:top]:
        print(f"  {delta * 1e3:8.0f} {e[1] * 1e3:9.0f} {s[1] * 1e3:9.0f} {s[0]:7d}  {name}")


def report_plans(step: str, explained: list[tuple[str, list[str]]], sql: dict[str, list[Any]]) -> None:
    print(f"\n== {step}: plans on the seeded store (every statement of the run, by time):")
    for text, plan in sorted(explained, key=lambda tp: -sql[tp[0]][1]):
        count, seconds = sql[text][0], sql[text][1]
        print(f"\n-- {count} calls, {seconds * 1e3:.0f} ms: {' '.join(text.split())[:300]}")
        for line in plan:
            print(f"   {line}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickets", type=int, default=1_000_000)
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--refs", type=int, default=2, choices=(1, 2, 3), help="message_ref rows per ticket")
    ap.add_argument("--history", action="store_true",
                    help="also each ticket's mail: mail log, processed key, sent outbox row, history entry")
    ap.add_argument("--n", type=int, default=1500, help="messages ingested")
    ap.add_argument("--seed", type=int, default=1, help="of the corpus")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pg", action="store_true", help="PostgreSQL (a throwaway cluster) instead of SQLite")
    ap.add_argument("--flush", action="store_true",
                    help="also time `gateway outbox flush` of the mail the ingest queued (the sender)")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "bench-growth-cache",
                    help="where the seeded SQLite file is kept between runs")
    ap.add_argument("--profile", action="store_true", help="one more run of each, profiled")
    ap.add_argument("--explain", action="store_true", help="with --profile: the plan of every statement")
    ap.add_argument("--top", type=int, default=15)
    a = ap.parse_args()
    size = Size(a.tickets, a.accounts, a.refs, a.history)

    def log(msg: str) -> None:
        print(msg, flush=True)

    stores: Stores = PgStores(size, log) if a.pg else SqliteStores(size, a.cache, log)
    steps = STEPS if a.flush else STEPS[:1]
    with tempfile.TemporaryDirectory(prefix="bench-growth-") as tmp:
        base = Path(tmp)
        mbox = base / "corpus.mbox"
        make_corpus(a.n, a.seed, mbox=mbox)
        try:
            stores.prepare()
            runs: dict[bool, list[Run]] = {False: [], True: []}
            for i in range(a.repeat):
                order = (False, True) if i % 2 == 0 else (True, False)
                for seeded in order:
                    runs[seeded].append(run(stores, seeded, mbox, base, a.flush))
                e, s = runs[False][-1], runs[True][-1]
                log(f"round {i + 1}: " + "; ".join(
                    f"{step} empty {e.seconds[step]:.2f} s, {a.tickets:,} tickets {s.seconds[step]:.2f} s, "
                    f"ratio {s.seconds[step] / e.seconds[step]:.2f}x"
                    for step in steps))
            outcomes = {json.dumps(r.outcome) for rs in runs.values() for r in rs}
            print(f"outcome (every run): {' | '.join(sorted(outcomes))}")
            if len(outcomes) > 1:
                print("WARNING: the runs did different work")
            print(f"{stores.name}, {a.n} messages, {a.repeat} rounds, cpus {os.cpu_count()}, "
                  f"load {os.getloadavg()[0]:.2f} (other work on the machine meets both stores alike)")
            for step in steps:
                # ingest: messages a second; flush (100-odd mails sent, the
                # rest deferred by the hourly caps): its seconds
                unit = "msg/s" if step == "ingest" else "s"
                rates = {k: [a.n / r.seconds[step] if step == "ingest" else r.seconds[step] for r in rs]
                         for k, rs in runs.items()}
                pairs = list(zip(runs[False], runs[True], strict=True))
                ratios = [s.seconds[step] / e.seconds[step] for e, s in pairs]
                cpu = [s.cpu[step] / e.cpu[step] for e, s in pairs]
                what = "gateway ingest" if step == "ingest" else "gateway outbox flush (its mail)"
                print(f"  {what}:")
                fmt = ".0f" if step == "ingest" else ".2f"
                print(f"    empty store:        {spread(rates[False], fmt)} {unit}")
                print(f"    {a.tickets:>9,} tickets: {spread(rates[True], fmt)} {unit}")
                print(f"    ratio (seeded time / empty time): {spread(ratios, '.2f')}; "
                      f"CPU time ratio {spread(cpu, '.2f')}")
            if a.profile:
                probes = {seeded: {step: base / f"probe-{step}-{int(seeded)}.pickle" for step in steps}
                          for seeded in (False, True)}
                for seeded in (False, True):
                    run(stores, seeded, mbox, base, a.flush, probes[seeded])
                for step in steps:
                    empty, seeded_data = (pickle.loads(probes[k][step].read_bytes()) for k in (False, True))
                    report_profile(step, empty, seeded_data, a.top)
                    if a.explain:
                        report_plans(step, seeded_data["explained"], seeded_data["sql"])
        finally:
            if isinstance(stores, PgStores):
                stores.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
