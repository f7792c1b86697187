"""The customer's requests on the web, on SQLite and PostgreSQL: who sees
what (reporter, participant, organization member with and without sharing,
agent, stranger, signed out: anything not theirs is 404, tickets and files
alike), the list's filters, search and paging, the public conversation only,
mail text shown as text, downloads as attachments, and resolving/reopening
through the desk's operations."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import update
from test_portal_http import (
    PASSWORD,
    Site,
    active_account,
    csrf,
    sign_in,
    site as site,  # noqa: F401, PLC0414 - the fixture, shared
)

from gateway import admin
from gateway.desk import operations
from gateway.desk.operations import Actor, Desk, NewComment, NewTicket
from gateway.domain import ParsedAttachment, Priority, RequestType
from gateway.store import repo
from gateway.store.db import connection, reading, transaction
from gateway.store.read import get_ticket, ticket_history
from gateway.store.repo import ACCOUNT

ANNA, KAI, LISA, EVE, SAM = (
    "anna@bauwerk-ag.de", "kai@bauwerk-ag.de", "lisa@bauwerk-ag.de", "eve@evil.example", "sam@xitrust.com"
)


def build(site: Site) -> dict[str, int]:
    """Bauwerk AG with Anna (reporter), Kai (participant), Lisa (member);
    Eve a stranger; Sam an agent. SD-1 by Anna shared with Kai, with a
    public answer and an internal note, each with a file; SD-2 by Anna
    shared with the organization; SD-3 by Eve."""
    app = site.desk
    for email in (ANNA, KAI, LISA, EVE, SAM):
        active_account(app, email, name=email.split("@")[0].title())
    with transaction(app.engine) as s:
        admin.create_org(s, "Bauwerk AG", ["bauwerk-ag.de"])
        for email in (ANNA, KAI, LISA):
            admin.add_member(s, "Bauwerk AG", email)
    with connection(app.engine) as conn:
        conn.execute(update(ACCOUNT).where(ACCOUNT.c.email == SAM).values(role="agent"))
    desk = Desk(app.settings, app.blobs)
    files: dict[str, int] = {}
    with connection(app.engine) as conn:
        anna, kai, sam, eve = (repo.account_by_email(conn, e) for e in (ANNA, KAI, SAM, EVE))
        assert anna and kai and sam and eve
        as_anna = Actor.of(anna, "web")
        one = operations.create_ticket(conn, desk, as_anna, NewTicket(
            request_type=RequestType.technical_support, summary="Signatur schlägt fehl",
            description="Fehler E-4012 <script>alert(1)</script>", priority=Priority.high,
            fields={"moxis_domain": "moxis.bauwerk-ag.de", "browser": ["firefox", "edge"]},
            attachments=[ParsedAttachment("fehler.txt", "text/plain", b"E-4012 at 09:30")],
            share_with_org=False, share_with=[kai],
        )).ticket
        ticket = repo.ticket_by_id(conn, one.id)
        assert ticket is not None
        operations.add_comment(conn, desk, Actor.of(sam, "web"), ticket, NewComment(
            body="Bitte Update 9.2.3 installieren.",
            attachments=[ParsedAttachment("anleitung.html", "text/html", b"<script>alert('x')</script>")]))
        ticket = repo.ticket_by_id(conn, one.id)
        assert ticket is not None
        operations.add_comment(conn, desk, Actor.of(sam, "web"), ticket, NewComment(
            body="INTERN: Lizenz abgelaufen", internal=True,
            attachments=[ParsedAttachment("lizenz.txt", "text/plain", b"secret licence data")]))
        operations.create_ticket(conn, desk, as_anna, NewTicket(
            request_type=RequestType.other, summary="Frage zu Vorlagen", description="Wie geht das?",
            share_with_org=True))
        operations.create_ticket(conn, desk, Actor.of(eve, "web"), NewTicket(
            request_type=RequestType.other, summary="Eves Anfrage", description="geheim"))
        for row in conn.exec_driver_sql("SELECT id, filename FROM attachment"):
            files[row[1]] = row[0]
    return files


@contextlib.contextmanager
def browser(site: Site, email: str | None) -> Iterator[httpx.Client]:
    with site.client() as client:
        if email is not None:
            assert sign_in(client, email, PASSWORD).status_code == 303
        yield client


@pytest.mark.parametrize("who,sees", [
    (ANNA, {"SD-1", "SD-2"}),
    (KAI, {"SD-1", "SD-2"}),  # participant of SD-1, member of the organization SD-2 is shared with
    (LISA, {"SD-2"}),  # a member, but SD-1 is not shared with the organization
    (SAM, {"SD-1", "SD-2", "SD-3"}),
    (EVE, {"SD-3"}),
])
def test_who_sees_which_request_and_file(site: Site, who: str, sees: set[str]) -> None:
    files = build(site)
    with browser(site, who) as client:
        listed = client.get("/requests?status=all").text
        for key in ("SD-1", "SD-2", "SD-3"):
            page = client.get(f"/requests/{key}")
            assert (page.status_code == 200) == (key in sees), (who, key, page.status_code)
            if key not in sees:
                assert page.status_code == 404 and "Seite nicht gefunden" in page.text
            # The list is the customer's own view: an agent's queue is /agent (a later page).
            assert (f'href="/requests/{key}"' in listed) == (key in sees and who != SAM), (who, key)
        for name in ("fehler.txt", "anleitung.html"):
            got = client.get(f"/attachments/{files[name]}")
            assert got.status_code == (200 if "SD-1" in sees else 404), (who, name)
        # An internal note's file: never on the customer side, not even for an agent here.
        assert client.get(f"/attachments/{files['lizenz.txt']}").status_code == 404


def test_signed_out_is_sent_to_sign_in(site: Site) -> None:
    files = build(site)
    with site.client() as client:
        for path in ("/requests", "/requests/SD-1", f"/attachments/{files['fehler.txt']}"):
            reply = client.get(path)
            assert reply.status_code == 303 and reply.headers["location"] == f"/login?next={path}"


def test_the_request_page_shows_the_public_conversation_as_text(site: Site) -> None:
    files = build(site)
    with browser(site, ANNA) as client:
        page = client.get("/requests/SD-1").text
        assert "Signatur schlägt fehl" in page and "Technischer Support" in page and "Hoch" in page
        assert "moxis.bauwerk-ag.de" in page and "Firefox, Edge" in page and "MOXIS-Domain" in page
        assert "Bitte Update 9.2.3 installieren." in page and "Support" in page
        assert "INTERN" not in page and "lizenz.txt" not in page  # the internal note stays inside
        assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "Kai" in page  # shared with
        # A file downloads as a file, never rendered: HTML goes as octet-stream.
        got = client.get(f"/attachments/{files['anleitung.html']}")
        assert got.headers["content-disposition"].startswith('attachment; filename="anleitung.html"')
        assert got.headers["x-content-type-options"] == "nosniff"
        assert got.headers["content-type"] == "application/octet-stream"
        assert got.content == b"<script>alert('x')</script>"
        txt = client.get(f"/attachments/{files['fehler.txt']}")
        assert txt.headers["content-type"].startswith("text/plain") and txt.content == b"E-4012 at 09:30"
        assert client.get("/attachments/999999").status_code == 404
        assert client.get("/attachments/abc").status_code == 404
        assert client.get("/requests/SD-999").status_code == 404


def test_list_filters_search_and_paging(site: Site) -> None:
    build(site)
    with browser(site, KAI) as client:
        assert "SD-1" in client.get("/requests").text  # open, all I may see
        mine = client.get("/requests?scope=mine").text
        assert "SD-1" not in mine and "SD-2" not in mine and "Keine Anfragen gefunden" in mine
        org = client.get("/requests?scope=org").text
        assert 'href="/requests/SD-2"' in org and 'href="/requests/SD-1"' not in org
        found = client.get("/requests", params={"q": "signatur"}).text
        assert 'href="/requests/SD-1"' in found and 'href="/requests/SD-2"' not in found
        by_key = client.get("/requests", params={"q": "sd-2"}).text
        assert 'href="/requests/SD-2"' in by_key and 'href="/requests/SD-1"' not in by_key
        assert "Keine Anfragen" in client.get("/requests?status=closed").text
        assert client.get("/requests?status=bogus&scope=bogus&page=-3").status_code == 200
    # Paging: 30 requests, 25 a page, newest first.
    desk = Desk(site.desk.settings, site.desk.blobs)
    with connection(site.desk.engine) as conn:
        anna = repo.account_by_email(conn, ANNA)
        assert anna is not None
        for i in range(30):
            operations.create_ticket(conn, desk, Actor.of(anna, "web"), NewTicket(
                request_type=RequestType.other, summary=f"Serie {i}", description="x", share_with_org=False))
    with browser(site, ANNA) as client:
        first = client.get("/requests").text
        assert "Seite 1 von 2" in first and "Serie 29" in first and "Serie 0<" not in first
        second = client.get("/requests?page=2").text
        assert "Serie 0" in second and "Serie 29" not in second


def test_resolve_and_reopen_go_through_the_desk(site: Site) -> None:
    build(site)
    with browser(site, ANNA) as client:
        page = client.get("/requests/SD-1")
        assert "Als gelöst markieren" in page.text
        done = client.post("/requests/SD-1/status", data={"csrf_token": csrf(page), "status": "resolved"})
        assert done.status_code == 303
        page = client.get("/requests/SD-1")
        assert "als gelöst markiert" in page.text and "Wieder öffnen" in page.text
        client.post("/requests/SD-1/status", data={"csrf_token": csrf(page), "status": "waiting_for_support"})
        # Nothing else a customer may set, and nothing without the form's token.
        client.post("/requests/SD-1/status", data={"csrf_token": csrf(page), "status": "closed"})
        client.post("/requests/SD-1/status", data={"status": "resolved"})
    with browser(site, LISA) as client:  # may not see SD-1: 404, nothing changes
        assert client.post("/requests/SD-1/status", data={"status": "resolved"}).status_code == 404
    with reading(site.desk.engine) as session:
        ticket = get_ticket(session, "SD-1")
        history = [(h["actor"], h["action"], h["from"], h["to"], h["source"])
                   for h in ticket_history(session, ticket)]
    assert ticket.status == "waiting_for_support"
    assert history[-2:] == [
        (ANNA, "status", "waiting_for_customer", "resolved", "web"),
        (ANNA, "status", "resolved", "waiting_for_support", "web"),
    ]
