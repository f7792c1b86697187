"""The agents' workspace over HTTP (SPEC §6), on SQLite and PostgreSQL: only
agents get in (customers, strangers: the 404 page; signed out: sign-in);
the queue's filters, sorting, paging and counts; a ticket with its internal
notes and the mail behind each entry; replies and notes with files;
status, priority, type, assignee and fields saved as desk operations with
their history; two agents saving the same ticket (the second is refused,
"changed meanwhile"); participants; a request filed for a customer; and the
CLI's ``account create --role agent``, ``account disable`` and ``ticket
assign``."""

from __future__ import annotations

import email.header
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from test_portal_http import (
    Site,
    csrf,
    site as site,  # noqa: F401 - the fixture, shared
    text_of,
)
from test_portal_requests import ANNA, EVE, KAI, LISA, SAM, browser, build

from gateway import staff
from gateway.desk import operations
from gateway.desk.operations import Actor, Desk, NewTicket
from gateway.domain import Priority, RequestType
from gateway.store import repo
from gateway.store.db import connection, reading
from gateway.store.read import get_ticket, ticket_history, ticket_json, ticket_list
from gateway.store.repo import ACCOUNT

TOM = "tom@xitrust.com"  # a second agent


def ticket(site: Site, key: str) -> dict[str, Any]:
    with reading(site.desk.engine) as session:
        return ticket_json(session, get_ticket(session, key))


def history(site: Site, key: str) -> list[tuple[Any, ...]]:
    with reading(site.desk.engine) as session:
        return [(h["actor"], h["action"], h["from"], h["to"], h["source"])
                for h in ticket_history(session, get_ticket(session, key))]


def with_tom(site: Site) -> None:
    from test_portal_http import active_account

    active_account(site.desk, TOM, name="Tom")
    with connection(site.desk.engine) as conn:
        conn.execute(update(ACCOUNT).where(ACCOUNT.c.email == TOM).values(role="agent"))


def update_form(page: httpx.Response) -> dict[str, str]:
    """The update form's current values, as a browser would post them."""
    html = page.text[page.text.index('action="/agent/tickets/'):]
    html = html[html.index("/update"):]
    html = html[: html.index("</form>")]
    values = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html))
    for name in ("status", "priority", "request_type", "assignee"):
        select = html[html.index(f'name="{name}"'):]
        select = select[: select.index("</select>")]
        chosen = re.search(r'<option value="([^"]*)" selected', select)
        values[name] = chosen.group(1) if chosen else ""
    return values


def test_only_agents_get_in(site: Site) -> None:
    build(site)
    for who in (ANNA, EVE):
        with browser(site, who) as client:
            for path in ("/agent", "/agent/tickets/SD-1", "/agent/new"):
                assert client.get(path).status_code == 404, (who, path)
            page = client.get("/requests")
            post = client.post("/agent/tickets/SD-1/reply", data={"csrf_token": csrf(page), "body": "x"})
            assert post.status_code == 404
            assert "Warteschlange" not in page.text  # no queue in a customer's menu
    with site.client() as anonymous:
        reply = anonymous.get("/agent")
        assert reply.status_code == 303 and reply.headers["location"] == "/login?next=/agent"
    assert all(c["body"] != "x" for c in ticket(site, "SD-1")["comments"])
    with browser(site, SAM) as client:
        assert client.get("/agent").status_code == 200
        assert 'href="/agent"' in client.get("/").text


def test_the_queue_filters_sorts_counts_and_pages(site: Site) -> None:
    build(site)
    with_tom(site)
    desk = Desk(site.desk.settings, site.desk.blobs)
    with connection(site.desk.engine) as conn:
        anna, sam = repo.account_by_email(conn, ANNA), repo.account_by_email(conn, SAM)
        assert anna and sam
        for i in range(60):
            operations.create_ticket(conn, desk, Actor.of(anna, "web"), NewTicket(
                request_type=RequestType.other, summary=f"Serie {i}", description="x",
                priority=Priority.blocker if i == 7 else Priority.low, share_with_org=False))
        sd1 = repo.ticket_by_key(conn, "SD-1")
        assert sd1 is not None
        operations.assign(conn, desk, Actor.of(sam, "web"), sd1, SAM)
    with browser(site, SAM) as client:
        first = client.get("/agent").text
        # SD-1 waits for the customer (Sam answered it): after the 62 waiting for support.
        assert "Seite 1 von 2" in first and "SD-1<" not in first
        assert re.search(r"Wartet auf Support <span class=\"count\">62</span>", first)
        assert re.search(r"Wartet auf Sie <span class=\"count\">1</span>", first)
        assert 'href="/agent/tickets/SD-1"' in client.get("/agent?page=2").text
        mine = client.get("/agent?assignee=me").text
        assert 'href="/agent/tickets/SD-1"' in mine and "Serie" not in mine
        nobody = client.get("/agent?assignee=none&q=serie").text
        assert "Serie 59" in nobody and 'href="/agent/tickets/SD-1"' not in nobody
        top = client.get("/agent?sort=priority").text
        assert top.index("Serie 7<") < top.index("Serie 59<")
        assert "SD-2" in client.get("/agent?organization=Bauwerk+AG").text
        assert "Serie" not in client.get("/agent?organization=Bauwerk+AG").text
        techs = client.get("/agent?request_type=technical_support&status=all").text
        assert 'href="/agent/tickets/SD-1"' in techs and "Serie" not in techs
        by_reporter = client.get("/agent", params={"q": "eve@evil"}).text
        assert 'href="/agent/tickets/SD-3"' in by_reporter and "Serie" not in by_reporter
        assert client.get("/agent?status=bogus&sort=bogus&priority=x&page=-1").status_code == 200


def test_the_ticket_page_shows_everything_and_the_raw_mail(site: Site, tmp_path: Path) -> None:
    build(site)
    mail = tmp_path / "reply.eml"
    mail.write_bytes(
        f"From: Anna <{ANNA}>\r\nTo: servicedesk@xitrust.com\r\nSubject: Re: [SD-1] Signatur\r\n"
        "Message-ID: <a-1@bauwerk-ag.de>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0100\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nDanke, <b>probiere ich</b>.\r\n".encode()
    )
    assert site.desk.ingest([str(mail)], None, progress=False) == 0
    with browser(site, SAM) as client:
        page = client.get("/agent/tickets/SD-1").text
        assert "INTERN: Lizenz abgelaufen" in page and "lizenz.txt" in page and "Intern" in page
        assert "Danke, &lt;b&gt;probiere ich&lt;/b&gt;." in page and "subject SD-1" in page
        assert "&lt;a-1@bauwerk-ag.de&gt;" in page  # the mail behind the comment
        raw_link = re.search(r'href="(/agent/mails/\d+/raw\?ticket=SD-1)"', page)
        assert raw_link
        raw = client.get(raw_link.group(1).replace("&amp;", "&"))
        assert raw.status_code == 200 and b"Message-ID: <a-1@bauwerk-ag.de>" in raw.content
        assert raw.headers["content-type"].startswith("text/plain")
        assert raw.headers["x-content-type-options"] == "nosniff"
        # Not a mail of that ticket: nothing.
        other = raw_link.group(1).replace("ticket=SD-1", "ticket=SD-2")
        assert client.get(other).status_code == 404
        assert "created" in page or "angelegt" in page  # the history
        assert client.get("/agent/tickets/SD-999").status_code == 404


def test_reply_and_internal_note_with_files(site: Site) -> None:
    build(site)
    site.mails()
    with browser(site, SAM) as client:
        page = client.get("/agent/tickets/SD-2")
        pdf = ("anleitung.pdf", b"%PDF-1.4 Anleitung", "application/pdf")
        done = client.post("/agent/tickets/SD-2/reply",
                           data={"csrf_token": csrf(page), "body": "Hier die Anleitung."},
                           files=[("attachments", pdf)])
        assert done.status_code == 303 and done.headers["location"] == "/agent/tickets/SD-2#latest"
        client.post("/agent/tickets/SD-2/reply", data={"csrf_token": csrf(page), "body": "Kunde ist VIP",
                                                        "internal": "1"},
                    files=[("attachments", ("notiz.txt", b"intern", "text/plain"))])
        empty = client.post("/agent/tickets/SD-2/reply", data={"csrf_token": csrf(page), "body": " "})
        assert empty.status_code == 400
    got = ticket(site, "SD-2")
    public, internal = got["comments"][-2], got["comments"][-1]
    assert (public["body"], public["public"], public["source"]) == ("Hier die Anleitung.", True, "web")
    assert [a["filename"] for a in public["attachments"]] == ["anleitung.pdf"]
    assert (internal["body"], internal["public"]) == ("Kunde ist VIP", False)
    assert got["status"] == "waiting_for_customer"
    with browser(site, ANNA) as client:
        page = client.get("/requests/SD-2").text
        assert "Hier die Anleitung." in page and "anleitung.pdf" in page
        assert "Kunde ist VIP" not in page and "notiz.txt" not in page
    told = [m for m in site.mails() if ANNA in str(m["To"])]
    assert len(told) == 1 and "Hier die Anleitung." in text_of(told[0])
    assert all("Kunde ist VIP" not in text_of(m) for m in told)
    # The reply's file goes out with it; the note's never.
    files = {part.get_filename(): part.get_payload(decode=True) for part in told[0].walk()
             if part.get_filename()}
    assert files == {"anleitung.pdf": b"%PDF-1.4 Anleitung"}


def test_files_beyond_the_mail_limit_go_as_links(site: Site) -> None:
    from gateway.app import App

    build(site)
    site.mails()
    with browser(site, SAM) as client:
        page = client.get("/agent/tickets/SD-2")
        client.post("/agent/tickets/SD-2/reply", data={"csrf_token": csrf(page), "body": "Zwei Dateien."},
                    files=[("attachments", ("klein.txt", b"x" * 50, "text/plain")),
                           ("attachments", ("gross.pdf", b"%PDF" + b"y" * 500, "application/pdf"))])
    s = site.desk.settings
    limited = s.outbound.model_copy(update={"max_attachments_size": 100})
    small = App(s.model_copy(update={"outbound": limited}))
    small.__dict__["engine"] = site.desk.engine
    small.flush_outbox()
    told = [m for m in site.mails() if ANNA in str(m["To"])]
    assert len(told) == 1
    names = [part.get_filename() for part in told[0].walk() if part.get_filename()]
    assert names == ["klein.txt"]
    link = re.search(rf"gross\.pdf: ({re.escape(site.url)}/attachments/\d+)", text_of(told[0]))
    assert link, text_of(told[0])
    with browser(site, ANNA) as client:
        got = client.get(link.group(1).removeprefix(site.url))
        assert got.status_code == 200 and got.content.startswith(b"%PDF")
    with browser(site, EVE) as client:
        assert client.get(link.group(1).removeprefix(site.url)).status_code == 404


def test_update_saves_each_change_with_its_history(site: Site) -> None:
    build(site)
    with_tom(site)
    with browser(site, SAM) as client:
        page = client.get("/agent/tickets/SD-1")
        form = update_form(page)
        assert form["status"] == "waiting_for_customer" and form["assignee"] == ""
        form.update({"csrf_token": csrf(page), "status": "resolved", "priority": "critical",
                     "assignee": TOM, "moxis_domain": "neu.moxis.cloud", "browser": ["chrome"],
                     "hosting": "on_premises", "first_occurred_at": "2026-11-20T08:00"})
        saved = client.post("/agent/tickets/SD-1/update", data=form)
        assert saved.status_code == 303, saved.text[:2000]
        bad = update_form(client.get("/agent/tickets/SD-1"))
        bad.update({"csrf_token": csrf(page), "assignee": ANNA})  # a customer cannot be the assignee
        refused = client.post("/agent/tickets/SD-1/update", data=bad)
        assert refused.status_code == 400 and "Bitte wählen Sie einen Agenten" in refused.text
    got = ticket(site, "SD-1")
    assert (got["status"], got["priority"]) == ("resolved", "critical")
    assert got["fields"] == {
        "moxis_domain": "neu.moxis.cloud", "browser": ["chrome"], "hosting": "on_premises",
        "first_occurred_at": "2026-11-20T08:00:00+01:00",
    }
    with reading(site.desk.engine) as session:
        assert [t["key"] for t in ticket_list(session, assignee=TOM)] == ["SD-1"]
    steps = history(site, "SD-1")[-4:]
    assert [s[1] for s in steps] == ["priority", "assignee", "fields", "status"]
    assert (SAM, "assignee", None, TOM, "web") in steps
    assert (SAM, "status", "waiting_for_customer", "resolved", "web") in steps


def test_two_agents_saving_the_same_ticket(site: Site) -> None:
    build(site)
    with_tom(site)
    with browser(site, SAM) as sam, browser(site, TOM) as tom:
        sam_page, tom_page = sam.get("/agent/tickets/SD-2"), tom.get("/agent/tickets/SD-2")
        sam_form, tom_form = update_form(sam_page), update_form(tom_page)
        sam_form.update({"csrf_token": csrf(sam_page), "priority": "high"})
        assert sam.post("/agent/tickets/SD-2/update", data=sam_form).status_code == 303
        tom_form.update({"csrf_token": csrf(tom_page), "priority": "low", "status": "closed"})
        second = tom.post("/agent/tickets/SD-2/update", data=tom_form)
        assert second.status_code == 409
        assert "inzwischen geändert" in second.text and SAM in second.text
        # What Tom chose is still in his form, to save again after a look.
        assert '<option value="low" selected' in second.text
    got = ticket(site, "SD-2")
    assert (got["priority"], got["status"]) == ("high", "waiting_for_support")


def test_participants_and_a_request_for_a_customer(site: Site) -> None:
    build(site)
    site.mails()
    with browser(site, SAM) as client:
        page = client.get("/agent/tickets/SD-3")
        token = csrf(page)
        shared = client.post("/agent/tickets/SD-3/share", data={"csrf_token": token, "share_with": LISA})
        assert shared.status_code == 303
        nobody = client.post("/agent/tickets/SD-3/share",
                             data={"csrf_token": token, "share_with": "x@nowhere.example"})
        assert nobody.status_code == 400 and "kein Konto" in nobody.text
        client.post("/agent/tickets/SD-1/share", data={"csrf_token": token, "remove": KAI})
        new = client.get("/agent/new")
        created = client.post("/agent/new", data={
            "csrf_token": csrf(new), "reporter": "neu@kunde.example", "request_type": "technical_support",
            "summary": "Anruf: Login geht nicht", "description": "Telefonisch gemeldet.", "priority": "high"})
        assert created.status_code == 303 and created.headers["location"] == "/agent/tickets/SD-4"
    assert LISA in ticket(site, "SD-3")["participants"] and KAI not in ticket(site, "SD-1")["participants"]
    filed = ticket(site, "SD-4")
    assert filed["reporter"] == "neu@kunde.example" and filed["request_type"] == "technical_support"
    assert history(site, "SD-4")[0] == (SAM, "created", None, None, "web")
    # A stranger's address gets the invitation, not the text (as by mail).
    first = [m for m in site.mails() if "neu@kunde.example" in str(m["To"])]
    assert len(first) == 1 and "Telefonisch gemeldet" not in text_of(first[0])
    # Nor an agent's reply or its files (the Ticket-Trick rule): only that there is one.
    with browser(site, SAM) as client:
        page = client.get("/agent/tickets/SD-4")
        client.post("/agent/tickets/SD-4/reply", data={"csrf_token": csrf(page), "body": "Passwort: geheim"},
                    files=[("attachments", ("zugang.txt", b"secret", "text/plain"))])
    told = [m for m in site.mails() if "neu@kunde.example" in str(m["To"])]
    assert len(told) == 1 and "geheim" not in text_of(told[0]) and "/attachments/" not in text_of(told[0])
    assert not [p for p in told[0].walk() if p.get_filename()]


def test_cli_agents_assignment_and_disabling(site: Site) -> None:
    build(site)
    settings, engine = site.desk.settings, site.desk.engine
    created = staff.create_account(engine, settings, "nina@xitrust.com", role="agent", name="Nina")
    assert "signup link" in created
    with pytest.raises(staff.StaffError, match="--promote"):
        staff.create_account(engine, settings, ANNA, role="agent")
    assert "now an agent" in staff.create_account(engine, settings, KAI, role="agent", promote=True)
    with connection(engine) as conn:
        nina, kai = repo.account_by_email(conn, "nina@xitrust.com"), repo.account_by_email(conn, KAI)
        assert nina and nina.role == "agent" and nina.state == "unverified" and nina.name == "Nina"
        assert kai and kai.role == "agent"
    mails = [m for m in site.mails() if "nina@xitrust.com" in str(m["To"])]
    assert len(mails) == 1 and "/signup/" in text_of(mails[0])
    site.desk.operate("SD-2", SAM, operations.assign, KAI)
    with pytest.raises(operations.Invalid, match="not an agent"):
        site.desk.operate("SD-2", SAM, operations.assign, LISA)
    assert ticket(site, "SD-2")["assignee"] == KAI
    assert "disabled" in staff.disable_account(engine, ANNA)
    with site.client() as client:
        from test_portal_http import sign_in

        assert sign_in(client, ANNA).status_code != 303  # no sign-in any more


def test_agents_hear_of_customers_tickets_and_replies(site: Site) -> None:
    build(site)
    with_tom(site)
    site.mails()
    with browser(site, ANNA) as client:
        form = client.get("/requests/new/other")
        client.post("/requests/new/other", data={
            "csrf_token": csrf(form), "request_type": "other", "summary": "Lizenz verlängern",
            "description": "Unsere Lizenz läuft am 31.12. ab.", "priority": "medium"},
            files=[("attachments", ("", b"", ""))])
    team = [m for m in site.mails() if "team@xitrust.com" in str(m["To"])]
    subject = str(email.header.make_header(email.header.decode_header(str(team[0]["Subject"]))))
    assert len(team) == 1 and subject == "[SD-4] Neue Anfrage: Lizenz verlängern"
    text = text_of(team[0])
    assert "Unsere Lizenz läuft am 31.12. ab." in text and f"{site.url}/agent/tickets/SD-4" in text
    site.desk.operate("SD-4", SAM, operations.assign, TOM)
    with browser(site, ANNA) as client:
        page = client.get("/requests/SD-4")
        client.post("/requests/SD-4/comments", data={"csrf_token": csrf(page), "body": "Und 5 Plätze mehr."},
                    files=[("attachments", ("", b"", ""))])
    told = {str(m["To"]): m for m in site.mails()}
    to_tom = [m for to, m in told.items() if TOM in to]
    assert len(to_tom) == 1 and "Und 5 Plätze mehr." in text_of(to_tom[0])
    assert not any("team@xitrust.com" in to for to in told)  # assigned: the assignee, not the team
    # An agent's own reply tells no agent.
    with browser(site, TOM) as client:
        page = client.get("/agent/tickets/SD-4")
        client.post("/agent/tickets/SD-4/reply", data={"csrf_token": csrf(page), "body": "Erledigt."},
                    files=[("attachments", ("", b"", ""))])
    assert [str(m["To"]) for m in site.mails() if "xitrust.com" in str(m["To"])] == []
