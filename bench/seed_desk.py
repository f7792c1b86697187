"""A desk with history, fast: organizations, accounts, tickets with their
participants, comments, attachments and Message-IDs, bulk-inserted with
SQLAlchemy Core into the real tables (``gateway.store.models``) of a
database that ``gateway db upgrade`` has created. For the portal bench
(``bench_web.py``); 100,000 tickets and 5,000 accounts take seconds.

What it makes (seeded, so the same every run):

* organizations (one per ~20 accounts) with a mail domain each, a third of
  them sharing new requests by default; ~60 % of the accounts are members,
  the others write from personal addresses;
* accounts: ~40 % active (all with the one argon2 hash of ``PASSWORD``,
  made once with the gateway's hasher), the rest unverified or disabled,
  and a few agents; the first ``customers`` accounts are the measured
  customers: active, each in a large organization of its own;
* tickets over three years, newest last; reporters follow a long tail
  (a few accounts report hundreds, most a handful), each measured customer
  reports ``own_share`` of all tickets; ~20 % are shared with the
  reporter's organization, ~10 % have participants; older tickets are
  mostly resolved or closed; keys ``<prefix>-1`` … ``<prefix>-N`` and the
  ticket counter at N, so that the desk's next ticket is N + 1;
* comments (public answers by agents, replies by reporters, internal
  notes), attachment rows (on requests and on comments; their bytes are
  not stored: the bench does not download them) and one ``message_ref``
  per ticket, as mail-made tickets have.

    python bench/seed_desk.py sqlite:///tmp/x/gateway.db [--tickets 100000] [--accounts 5000]
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import itertools
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Table, delete, insert

PASSWORD = "bench-portal-password"  # noqa: S105 - the measured customers' password
DOMAIN = "bench.example"
CHUNK = 10_000

WORDS = (
    "Signatur", "Zertifikat", "Anmeldung", "Vorlage", "Workflow", "Export", "Lizenz", "Drucker",
    "Freigabe", "Benutzer", "Passwort", "Update", "Zeitstempel", "Siegel", "Schnittstelle",
    "Postfach", "Mandant", "Archiv", "Rechnung", "Vertrag", "Dokument", "Upload", "Timeout",
    "Fehlermeldung", "Berechtigung", "Webhook", "Kalender", "Vertretung", "Stapelsignatur", "PDF",
)
PHRASES = (
    "schlägt fehl", "funktioniert nicht mehr", "sehr langsam", "Frage zu", "geht nicht",
    "nach dem Update", "wird nicht angezeigt", "bitte prüfen", "Fehler beim Speichern",
    "seit heute", "Zugriff verweigert", "kommt nicht an",
)
BODIES = (
    "Guten Tag,\n\nseit heute Morgen erhalten wir beim Signieren die Meldung E-4012. "
    "Betroffen sind alle Benutzer im Mandanten.\n\nMit freundlichen Grüßen",
    "Hallo Support,\n\nder Export bricht nach ein paar Minuten ab. Anbei ein Screenshot.\n\nDanke!",
    "Dear support team,\n\nsince the last update our users cannot sign in with their certificates. "
    "Could you please have a look?\n\nBest regards",
    "Sehr geehrte Damen und Herren,\n\nbitte um Rückruf wegen der Lizenzverlängerung für 2027.",
)
ANSWERS = (
    "Vielen Dank für Ihre Nachricht. Bitte installieren Sie Update 9.2.3 und versuchen Sie es erneut.",
    "Wir haben das Problem nachgestellt und arbeiten an einer Lösung. Wir melden uns.",
    "Können Sie uns bitte die genaue Uhrzeit und den betroffenen Benutzer nennen?",
    "Thank you, the certificate chain was incomplete; we have fixed it on our side.",
)
REPLIES = (
    "Danke, jetzt funktioniert es wieder.",
    "Leider besteht das Problem weiterhin, siehe Anhang.",
    "Der Fehler trat um 09:30 bei Benutzer m.huber auf.",
    "Thanks, that solved it.",
)
NOTES = ("INTERN: Lizenz läuft Ende des Monats ab.", "INTERN: an Entwicklung eskaliert (DEV-2231).")
FILES = (
    ("screenshot.png", "image/png"), ("fehler.txt", "text/plain"), ("protokoll.pdf", "application/pdf"),
    ("export.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
)


@dataclass
class Customer:
    """One measured customer: how to sign in and what to look at."""

    email: str
    account_id: int
    organization_id: int
    own: int = 0  # tickets they reported
    visible: int = 0  # own, participating and shared with their organization
    keys: list[str] = field(default_factory=list)  # a sample of keys they may see


@dataclass
class Seeded:
    customers: list[Customer]
    counts: dict[str, int]
    seconds: float
    words: Sequence[str] = WORDS
    agents: list[str] = field(default_factory=list)  # the agents' addresses (same password)


def _tables() -> dict[str, Table]:
    from gateway.store import models

    return {
        name: model.__table__  # type: ignore[union-attr]
        for name, model in (
            ("organization", models.Organization), ("organization_domain", models.OrganizationDomain),
            ("account", models.Account), ("ticket", models.Ticket),
            ("ticket_participant", models.TicketParticipant), ("ticket_counter", models.TicketCounter),
            ("comment", models.Comment), ("attachment", models.Attachment),
            ("message_ref", models.MessageRef),
        )
    }


def _chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(rows), CHUNK):
        yield rows[i:i + CHUNK]


def password_hash() -> str:
    """The gateway's own hasher (argon2id, its parameters), once."""
    from gateway.signup import _HASHER

    return _HASHER.hash(PASSWORD)


def seed(
    conn: Connection,
    *,
    tickets: int = 100_000,
    accounts: int = 5_000,
    customers: int = 16,
    prefix: str = "SD",
    own_share: float = 0.0025,
    seed: int = 14,
) -> Seeded:
    """Fill an empty, migrated database (the caller commits). Ids are given
    explicitly, so ``Customer`` needs no read-back."""
    t0 = time.perf_counter()
    rng = random.Random(seed)
    tbl = _tables()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start = now - dt.timedelta(days=3 * 365)
    hashed = password_hash()

    # -- organizations ------------------------------------------------------
    n_orgs = max(2 * customers, accounts // 20)
    orgs = [
        {"id": i + 1, "name": f"Kunde {i + 1:04d} GmbH", "share_by_default": i % 3 == 0, "created_at": start}
        for i in range(n_orgs)
    ]
    domains = [{"domain": f"kunde{o['id']}.{DOMAIN}", "organization_id": o["id"]} for o in orgs]

    # -- accounts -------------------------------------------------------------
    # The measured customers first (each in an organization of its own, the
    # large ones), then agents, then everyone else; organization sizes have
    # a long tail too.
    n_agents = max(2, accounts // 500)
    org_weights = [1.0 / (1 + i) ** 0.3 for i in range(n_orgs)]
    # The measured customers' organizations: ~20 % of all members.
    big = sum(org_weights[customers:]) * 0.25 / customers
    org_weights[:customers] = [big] * customers
    acc_rows: list[dict[str, Any]] = []
    org_of: list[int | None] = []
    for i in range(accounts):
        aid = i + 1
        role, state, org_id = "customer", "unverified", None
        if i < customers:
            org_id, state = i + 1, "active"
            email = f"kunde{i + 1:02d}@kunde{org_id}.{DOMAIN}"
        elif i < customers + n_agents:
            role, state = "agent", "active"
            email = f"agent{i}@desk.{DOMAIN}"
        else:
            if rng.random() < 0.6:
                org_id = rng.choices(range(1, n_orgs + 1), weights=org_weights)[0]
                email = f"person{aid}@kunde{org_id}.{DOMAIN}"
            else:
                email = f"person{aid}@mail{aid % 50}.{DOMAIN}"
            r = rng.random()
            state = "active" if r < 0.4 else "disabled" if r > 0.97 else "unverified"
        acc_rows.append({
            "id": aid, "email": email, "name": f"Person {aid}", "state": state, "role": role,
            "organization_id": org_id, "locale": rng.choice(("de", "en", None)),
            "password_hash": hashed if state == "active" else None, "is_robot": False,
            "bounced_at": None, "created_at": start + dt.timedelta(minutes=aid),
        })
        org_of.append(org_id)
    agent_ids = list(range(customers + 1, customers + n_agents + 1))
    members: dict[int, list[int]] = {}
    for aid, org_id in enumerate(org_of, start=1):
        if org_id is not None and acc_rows[aid - 1]["role"] == "customer":
            members.setdefault(org_id, []).append(aid)

    # -- tickets ------------------------------------------------------------
    # Reporters: the measured customers ``own_share`` each; the others on a
    # long tail (weight 1/rank^0.6 over a shuffled order).
    others = [a["id"] for a in acc_rows[customers + n_agents:]]
    rng.shuffle(others)
    cum = list(itertools.accumulate(1.0 / (r + 1) ** 0.6 for r in range(len(others))))
    p_customers = own_share * customers
    span = (now - start).total_seconds()
    ticket_rows: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    refs: list[dict[str, Any]] = []
    for n in range(1, tickets + 1):
        r = rng.random()
        if r < p_customers:
            reporter = int(r / own_share) + 1
        else:
            reporter = others[min(len(others) - 1, bisect.bisect(cum, rng.random() * cum[-1]))]
        org_id = org_of[reporter - 1]
        shared = org_id is not None and rng.random() < (0.6 if (org_id - 1) % 3 == 0 else 0.2)
        created = start + dt.timedelta(seconds=span * (n - 1 + rng.random()) / tickets)
        age_days = (now - created).days
        if age_days > 30:
            status = rng.choices(("closed", "resolved", "waiting_for_customer", "waiting_for_support"),
                                 (85, 10, 3, 2))[0]
        else:
            status = rng.choices(("closed", "resolved", "waiting_for_customer", "waiting_for_support"),
                                 (20, 20, 25, 35))[0]
        updated = min(now, created + dt.timedelta(hours=rng.expovariate(1 / 72)))
        kind = rng.choices(("technical_support", "other", "suggest_improvement"), (70, 25, 5))[0]
        fields: dict[str, Any] = {}
        if kind == "technical_support":
            fields = {"moxis_domain": f"moxis.kunde{org_id or 0}.{DOMAIN}",
                      "browser": rng.sample(("firefox", "chrome", "edge", "safari"), rng.randint(1, 2)),
                      "hosting": rng.choice(("cloud", "on_premises", "private_cloud"))}
        mid = f"<bench-{n}@kunde{org_id or 0}.{DOMAIN}>"
        ticket_rows.append({
            "id": n, "number": n, "key": f"{prefix}-{n}", "request_type": kind,
            "summary": f"{rng.choice(WORDS)} {rng.choice(PHRASES)} ({rng.choice(WORDS)})",
            "description": rng.choice(BODIES), "status": status,
            "priority": rng.choices(("low", "medium", "high", "critical"), (15, 60, 20, 5))[0],
            "reporter_id": reporter, "organization_id": org_id if shared else None, "fields": fields,
            "message_id": mid, "linked_key": None, "source_mail_id": None,
            "threaded_by": "new", "created_at": created, "updated_at": updated,
            # Half the tickets are someone's: the agents' queue filters by it.
            "assignee_id": rng.choice(agent_ids) if rng.random() < 0.5 else None,
        })
        refs.append({"id": n, "message_id": mid, "ticket_id": n, "direction": "inbound"})
        if rng.random() < 0.1:  # a colleague or two on copy
            pool = members.get(org_id, []) if org_id is not None else []
            pool = pool if len(pool) > 1 else others
            for who in {rng.choice(pool) for _ in range(rng.randint(1, 2))} - {reporter}:
                parts.append({"ticket_id": n, "account_id": who})
    # Each measured customer is also on copy of a few requests not theirs.
    for c in range(1, customers + 1):
        for n in rng.sample(range(1, tickets + 1), min(tickets, 20)):
            if ticket_rows[n - 1]["reporter_id"] != c:
                parts.append({"ticket_id": n, "account_id": c})
    parts = list({(p["ticket_id"], p["account_id"]): p for p in parts}.values())

    # -- comments and attachments -------------------------------------------
    comment_rows: list[dict[str, Any]] = []
    att_rows: list[dict[str, Any]] = []
    cid = aid = 0
    for t in ticket_rows:
        n_comments = min(8, int(rng.expovariate(1 / 1.5)))
        when = t["created_at"]
        step = (t["updated_at"] - t["created_at"]) / (n_comments + 1)
        for k in range(n_comments):
            when = when + step
            internal = rng.random() < 0.1
            by_agent = internal or k % 2 == 0
            cid += 1
            comment_rows.append({
                "id": cid, "ticket_id": t["id"],
                "author_id": rng.choice(agent_ids) if by_agent else t["reporter_id"],
                "body": rng.choice(NOTES if internal else ANSWERS if by_agent else REPLIES),
                "public": not internal, "source": "web" if by_agent else "email", "message_id": None,
                "inbound_mail_id": None, "threaded_by": None, "created_at": when,
            })
            if rng.random() < 0.08:
                aid += 1
                name, ctype = rng.choice(FILES)
                att_rows.append(_attachment(rng, aid, t["id"], cid, name, ctype, when))
        if rng.random() < 0.1:
            aid += 1
            name, ctype = rng.choice(FILES)
            att_rows.append(_attachment(rng, aid, t["id"], None, name, ctype, t["created_at"]))

    # -- insert -------------------------------------------------------------
    for name, rows in (
        ("organization", orgs), ("organization_domain", domains), ("account", acc_rows),
        ("ticket", ticket_rows), ("ticket_participant", parts), ("comment", comment_rows),
        ("attachment", att_rows), ("message_ref", refs),
    ):
        for chunk in _chunks(rows):
            conn.execute(insert(tbl[name]), chunk)
    conn.execute(delete(tbl["ticket_counter"]))
    conn.execute(insert(tbl["ticket_counter"]), {"prefix": prefix, "value": tickets})

    # -- what the measured customers see ---------------------------------------
    on_copy: dict[int, set[int]] = {}
    for p in parts:
        on_copy.setdefault(p["account_id"], set()).add(p["ticket_id"])
    found: list[Customer] = []
    for c in range(1, customers + 1):
        cust = Customer(acc_rows[c - 1]["email"], c, c)
        seen = [t for t in ticket_rows
                if t["reporter_id"] == c or t["organization_id"] == c or t["id"] in on_copy.get(c, ())]
        cust.own = sum(1 for t in seen if t["reporter_id"] == c)
        cust.visible = len(seen)
        cust.keys = [t["key"] for t in rng.sample(seen, min(50, len(seen)))]
        found.append(cust)
    counts = {
        "organizations": len(orgs), "accounts": len(acc_rows), "tickets": len(ticket_rows),
        "shared": sum(1 for t in ticket_rows if t["organization_id"] is not None),
        "participants": len(parts), "comments": len(comment_rows), "attachments": len(att_rows),
    }
    agents = [acc_rows[aid - 1]["email"] for aid in agent_ids]
    return Seeded(found, counts, time.perf_counter() - t0, agents=agents)


def _attachment(rng: random.Random, aid: int, ticket_id: int, comment_id: int | None,
                name: str, ctype: str, when: dt.datetime) -> dict[str, Any]:
    return {
        "id": aid, "ticket_id": ticket_id, "comment_id": comment_id, "filename": name,
        "content_type": ctype, "size": rng.randint(2_000, 2_000_000),
        "sha256": f"{rng.getrandbits(256):064x}", "content_id": None, "inline": False, "created_at": when,
    }


def seed_database(url: str, **kwargs: Any) -> Seeded:
    """``seed`` in one transaction on the gateway's own engine (WAL,
    foreign keys on: every row is checked as the desk would)."""
    from gateway.store.db import make_engine

    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            return seed(conn, **kwargs)
    finally:
        engine.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url", help="a database `gateway db upgrade` has migrated")
    ap.add_argument("--tickets", type=int, default=100_000)
    ap.add_argument("--accounts", type=int, default=5_000)
    ap.add_argument("--customers", type=int, default=16)
    args = ap.parse_args()
    done = seed_database(args.url, tickets=args.tickets, accounts=args.accounts, customers=args.customers)
    print(f"seeded in {done.seconds:.1f} s: {done.counts}")
    for c in done.customers:
        print(f"  {c.email}: {c.own} own, {c.visible} visible")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
