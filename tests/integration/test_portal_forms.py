"""The portal's request forms and a request's conversation on the web, on
SQLite and PostgreSQL (SPEC §6): the dashboard's three categories, the three
forms with their fields, files and sharing, a form's errors next to their
fields with the values kept, an oversize upload, the category switch
without JavaScript, comments with files, sharing from the page; and both
directions with mail: the web ticket's ``request_created`` mail links to its
page, a mail reply threads into it and shows there."""

from __future__ import annotations

import email.utils
import re
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import update
from test_portal_http import (
    Site,
    csrf,
    site as site,  # noqa: F401 - the fixture, shared
    text_of,
)
from test_portal_requests import ANNA, EVE, KAI, LISA, SAM, browser, build

from gateway.store.db import connection, reading
from gateway.store.read import get_ticket, ticket_history, ticket_json
from gateway.store.repo import ORG

FORM_FIELDS = {
    "other": {"request_type", "summary", "description", "attachments", "priority", "share_with"},
    "technical_support": {"moxis_domain", "first_occurred_at", "browser", "hosting", "components"},
    "suggest_improvement": {"responsible_user"},
}
NAMES = re.compile(r'name="([a-z_]+)"')


def names_in(page: str) -> set[str]:
    """The form fields a page offers (not counting the sign-out form)."""
    form = page[page.index("data-request-form"):]
    return set(NAMES.findall(form[: form.index("</form>")]))


def file_form(client: httpx.Client, path: str, data: dict[str, Any],
              files: list[tuple[str, tuple[str, bytes, str]]] | None = None) -> httpx.Response:
    token = csrf(client.get(path))
    no_file = [("attachments", ("", b"", ""))]  # what a browser posts for an empty file input
    return client.post(path, data={"csrf_token": token, **data}, files=files or no_file)


def to(mail: Any) -> str:
    return email.utils.parseaddr(str(mail["To"]))[1]


def ticket(site: Site, key: str) -> dict[str, Any]:
    with reading(site.desk.engine) as session:
        return ticket_json(session, get_ticket(session, key))


def test_the_dashboard_leads_to_the_three_forms(site: Site) -> None:
    build(site)
    with browser(site, ANNA) as client:
        page = client.get("/").text
        assert re.search(r"<title>[^<]*</title>", page)  # a title of text only, no markup in it
        home = page[page.index("<main"):]
        for type_, label in (("other", "Sonstige Fragen"), ("technical_support", "Technischer Support"),
                             ("suggest_improvement", "Verbesserung vorschlagen")):
            assert f'href="/requests/new/{type_}"' in home and label in home
        assert "weniger dringende technische Probleme" in home and "Installation oder Konfiguration" in home
        assert "Was eine gute Anfrage enthält" in home and "Screenshots" in home
        assert 'href="/requests/SD-1"' in home and 'href="/requests/SD-2"' in home  # recent requests
        english = client.get("/?lang=en").text
        assert "Other questions" in english and "Suggest improvement" in english
        for type_ in FORM_FIELDS:
            page = client.get(f"/requests/new/{type_}")
            assert page.status_code == 200
            expected = FORM_FIELDS["other"] | FORM_FIELDS.get(type_, set()) | {"csrf_token", "switch"}
            if type_ == "other":
                expected = FORM_FIELDS["other"] | {"csrf_token", "switch"}
            # Every category's own fields are on its form (the others' are hidden and disabled).
            assert expected <= names_in(page.text), type_
        assert client.get("/requests/new/bogus").status_code == 404
    with site.client() as anonymous:
        reply = anonymous.get("/requests/new/other")
        assert reply.status_code == 303 and reply.headers["location"] == "/login?next=/requests/new/other"


def test_technical_support_with_files_is_a_ticket_like_one_by_mail(site: Site, tmp_path: Path) -> None:
    build(site)
    site.mails()
    with browser(site, ANNA) as client:
        reply = file_form(client, "/requests/new/technical_support", {
            "request_type": "technical_support", "summary": "Signieren hängt bei 80 %",
            "description": "Seit dem Update hängt das Signieren.\nBetroffen: alle Benutzer.\n\n",
            "priority": "critical", "share_with": "org", "moxis_domain": "https://bauwerk.moxis.cloud/app",
            "first_occurred_at": "2026-11-27T09:30", "browser": ["edge", "chrome"], "hosting": "cloud",
            "components": ["signing"],
        }, files=[("attachments", ("bild.png", b"\x89PNG fake", "image/png")),
                  ("attachments", ("../../etc/passwd.pdf", b"%PDF-1.4 x", "application/pdf"))])
        assert reply.status_code == 303 and reply.headers["location"] == "/requests/SD-4"
        page = client.get("/requests/SD-4").text
        assert "Ihre Anfrage ist eingegangen" in page and "Signieren hängt bei 80 %" in page
        assert "bauwerk.moxis.cloud" in page and "Chrome, Edge" in page and "MOXIS Cloud" in page
        assert "27.11.2026 09:30" in page and "Signieren" in page and "Kritisch" in page
        assert "bild.png" in page and "passwd.pdf" in page and "../" not in page
    got = ticket(site, "SD-4")
    assert got["request_type"] == "technical_support" and got["priority"] == "critical"
    assert got["organization"] == "Bauwerk AG"  # shared with the organization, as chosen
    assert got["fields"] == {
        "moxis_domain": "bauwerk.moxis.cloud", "first_occurred_at": "2026-11-27T09:30:00+01:00",
        "browser": ["chrome", "edge"], "hosting": "cloud", "components": ["signing"],
    }
    assert got["description"] == "Seit dem Update hängt das Signieren.\nBetroffen: alle Benutzer."
    assert sorted(a["filename"] for a in got["attachments"]) == ["bild.png", "passwd.pdf"]
    with reading(site.desk.engine) as session:
        history = ticket_history(session, get_ticket(session, "SD-4"))
    assert (history[0]["actor"], history[0]["action"], history[0]["source"]) == (ANNA, "created", "web")
    # The same request_created mail as for a mail, linking to the request's page.
    mails = [m for m in site.mails() if to(m) == ANNA]
    assert len(mails) == 1 and "[SD-4]" in mails[0]["Subject"]
    assert f"{site.url}/requests/SD-4" in text_of(mails[0])
    # A mail reply to it threads into it and shows on its page.
    reply_mail = tmp_path / "reply.eml"
    reply_mail.write_bytes(
        f"From: Anna <{ANNA}>\r\nTo: servicedesk@xitrust.com\r\nSubject: Re: {mails[0]['Subject']}\r\n"
        f"Message-ID: <reply-1@bauwerk-ag.de>\r\nIn-Reply-To: {mails[0]['Message-ID']}\r\n"
        "Date: Mon, 30 Nov 2026 10:00:00 +0100\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Noch ein Hinweis: es betrifft nur PDF/A.\r\n".encode()
    )
    assert site.desk.ingest([str(reply_mail)], None, progress=False) == 0
    with browser(site, LISA) as client:  # a colleague: shared with the organization
        assert "es betrifft nur PDF/A" in client.get("/requests/SD-4").text


def test_other_and_improvement_forms_and_sharing_with_a_person(site: Site) -> None:
    build(site)
    site.mails()
    with browser(site, ANNA) as client:
        first = client.get("/requests/new/suggest_improvement").text
        assert 'value="org" selected' not in first  # Bauwerk AG does not share by default
        assert f'<option value="{KAI}">' in first and EVE not in first  # colleagues only
        reply = file_form(client, "/requests/new/suggest_improvement", {
            "request_type": "suggest_improvement", "summary": "Vorlagen duplizieren",
            "description": "Eine Kopierfunktion für Vorlagen wäre hilfreich.", "priority": "low",
            "share_with": LISA, "responsible_user": KAI,
        })
        assert reply.status_code == 303
        other = file_form(client, "/requests/new/other", {
            "request_type": "other", "summary": "Rechnung", "description": "Wo finde ich die Rechnung?",
            "priority": "medium", "share_with": "",
        })
        assert other.status_code == 303 and other.headers["location"] == "/requests/SD-5"
    improvement = ticket(site, "SD-4")
    assert improvement["fields"] == {"responsible_user": KAI} and improvement["priority"] == "low"
    assert improvement["organization"] is None and improvement["participants"] == [LISA]
    assert ticket(site, "SD-5")["participants"] == [] and ticket(site, "SD-5")["organization"] is None
    shared_mails = [m for m in site.mails() if to(m) == LISA]
    assert len(shared_mails) == 1 and "SD-4" in shared_mails[0]["Subject"]
    with browser(site, LISA) as client:
        assert "Vorlagen duplizieren" in client.get("/requests/SD-4").text
        assert client.get("/requests/SD-5").status_code == 404


def test_a_form_with_errors_comes_back_with_its_values(site: Site) -> None:
    build(site)
    with browser(site, ANNA) as client:
        reply = file_form(client, "/requests/new/technical_support", {
            "request_type": "technical_support", "summary": "", "description": "Text <b>bleibt</b>",
            "priority": "urgent", "share_with": EVE, "moxis_domain": "nicht eine domain",
            "first_occurred_at": "2099-01-01T10:00", "browser": ["netscape"], "hosting": "cloud",
        }, files=[("attachments", ("bild.png", b"\x89PNG", "image/png"))])
        assert reply.status_code == 400
        page = reply.text
        for message in ("Bitte fassen Sie Ihr Anliegen", "Bitte wählen Sie einen der angebotenen Werte",
                        "Bitte wählen Sie eine Person aus Ihrer Organisation", "nur die Domain",
                        "liegt in der Zukunft", "Bitte wählen Sie die Dateien noch einmal aus"):
            assert message in page, message
        assert 'id="e-summary"' in page and 'aria-describedby="e-summary"' in page
        assert "Text &lt;b&gt;bleibt&lt;/b&gt;</textarea>" in page and 'value="nicht eine domain"' in page
        assert 'value="cloud" selected' in page
        english = file_form(client, "/requests/new/other?lang=en", {
            "request_type": "other", "summary": "x" * 201, "description": " ", "priority": "low"})
        assert "The summary is too long" in english.text and "Please describe your request" in english.text
        client.get("/?lang=de")
    with reading(site.desk.engine) as session:
        assert get_ticket(session, "SD-3").key == "SD-3"
        assert session.connection().exec_driver_sql("SELECT count(*) FROM ticket").scalar() == 3


def test_an_oversize_upload_keeps_the_other_fields(site: Site) -> None:
    build(site)
    limit = site.desk.settings.web.max_upload_size
    with browser(site, ANNA) as client:
        reply = file_form(client, "/requests/new/other", {
            "request_type": "other", "summary": "Großes Protokoll", "description": "Siehe Anhang.",
            "priority": "medium"}, files=[("attachments", ("log.txt", b"x" * (limit + 1), "text/plain"))])
        assert reply.status_code == 400
        assert "Die Dateien sind zusammen zu groß" in reply.text and 'value="Großes Protokoll"' in reply.text
        # Far beyond the limit: refused outright, with the product's page, not a 500.
        big = b"x" * (limit * 4 + 2**21)
        huge = file_form(client, "/requests/new/other", {"request_type": "other", "summary": "x"},
                         files=[("attachments", ("big.bin", big, "application/octet-stream"))])
        assert huge.status_code == 413 and "zu groß" in huge.text
    with reading(site.desk.engine) as session:
        assert session.connection().exec_driver_sql("SELECT count(*) FROM ticket").scalar() == 3


def test_the_category_switches_without_javascript(site: Site) -> None:
    build(site)
    with browser(site, ANNA) as client:
        reply = file_form(client, "/requests/new/other", {
            "request_type": "technical_support", "summary": "Fehler beim Login", "description": "Seit heute",
            "priority": "high", "switch": "1"}, files=[("attachments", ("log.txt", b"log", "text/plain"))])
        assert reply.status_code == 200 and "Das Formular wurde gewechselt" in reply.text
        # The file did not survive the switch (browsers cannot keep it): said next to its field.
        assert "Bitte wählen Sie die Dateien noch einmal aus" in reply.text
        assert 'action="/requests/new/technical_support"' in reply.text
        assert 'value="Fehler beim Login"' in reply.text and "moxis_domain" in names_in(reply.text)
    with reading(site.desk.engine) as session:
        assert session.connection().exec_driver_sql("SELECT count(*) FROM ticket").scalar() == 3


def test_comments_with_files_from_the_request_page(site: Site) -> None:
    build(site)
    site.mails()
    with browser(site, KAI) as client:  # a participant may comment
        page = client.get("/requests/SD-1")
        assert 'action="/requests/SD-1/comments"' in page.text
        reply = client.post("/requests/SD-1/comments",
                            data={"csrf_token": csrf(page), "body": "Screenshot anbei"},
                            files=[("attachments", ("screen.png", b"\x89PNG data", "image/png"))])
        assert reply.status_code == 303 and reply.headers["location"] == "/requests/SD-1#latest"
        page = client.get("/requests/SD-1")
        assert "Screenshot anbei" in page.text and "screen.png" in page.text
        empty = client.post("/requests/SD-1/comments", data={"csrf_token": csrf(page), "body": "  "},
                            files=[("attachments", ("", b"", ""))])
        assert empty.status_code == 400 and "Bitte schreiben Sie eine Antwort" in empty.text
        forged = client.post("/requests/SD-1/comments", data={"body": "ohne Token"})
        assert forged.status_code == 400
    got = ticket(site, "SD-1")
    assert got["status"] == "waiting_for_support"  # a customer's comment puts it back to support
    public = [c for c in got["comments"] if c["public"]]
    assert public[-1]["body"] == "Screenshot anbei" and public[-1]["source"] == "web"
    assert public[-1]["author"] == KAI
    assert [a["filename"] for a in public[-1]["attachments"]] == ["screen.png"]
    assert "ohne Token" not in str(got["comments"])
    # The reporter is told by mail, like after a mail comment; the author is not.
    told = {to(m) for m in site.mails()}
    assert ANNA in told and KAI not in told
    with browser(site, EVE) as client:
        page = client.get("/requests/SD-3")
        stranger = client.post("/requests/SD-1/comments", data={"csrf_token": csrf(page), "body": "x"})
        assert stranger.status_code == 404


def test_a_closed_request_takes_no_comment_from_a_customer(site: Site) -> None:
    build(site)
    site.desk.operate("SD-2", SAM, _close)
    with browser(site, ANNA) as client:
        page = client.get("/requests/SD-2")
        assert 'action="/requests/SD-2/comments"' not in page.text and "ist geschlossen" in page.text
        refused = client.post("/requests/SD-2/comments", data={"csrf_token": csrf(page), "body": "Noch was"})
        assert refused.status_code == 400 and "Bitte stellen Sie eine neue Anfrage" in refused.text
    assert all(c["body"] != "Noch was" for c in ticket(site, "SD-2")["comments"])


def _close(conn: Any, desk: Any, actor: Any, ticket_row: Any) -> Any:
    from gateway.desk import operations

    return operations.transition(conn, desk, actor, ticket_row, "closed")


def test_sharing_from_the_request_page(site: Site) -> None:
    build(site)
    site.mails()
    with browser(site, LISA) as client:
        assert client.get("/requests/SD-1").status_code == 404
    with browser(site, ANNA) as client:
        page = client.get("/requests/SD-1")
        assert "Mit Bauwerk AG teilen" in page.text and f'<option value="{LISA}">' in page.text
        token = csrf(page)
        shared = client.post("/requests/SD-1/share", data={"csrf_token": token, "share_with": LISA})
        assert shared.status_code == 303
        bad = client.post("/requests/SD-1/share", data={"csrf_token": token, "share_with": EVE})
        assert bad.status_code == 400 and "Person aus Ihrer Organisation" in bad.text
    assert [to(m) for m in site.mails()] == [LISA]  # told once, by mail
    with browser(site, LISA) as client:
        assert client.get("/requests/SD-1").status_code == 200
    with browser(site, KAI) as client:  # a participant sees the request but may not share it
        page = client.get("/requests/SD-1")
        assert "Mit einer Person teilen" not in page.text
        client.post("/requests/SD-1/share", data={"csrf_token": csrf(page), "share_with": "org"})
    with browser(site, EVE) as client:
        page = client.get("/requests/SD-3")
        stranger = client.post("/requests/SD-1/share", data={"csrf_token": csrf(page), "share_with": "org"})
        assert stranger.status_code == 404
    with browser(site, ANNA) as client:
        page = client.get("/requests/SD-1")
        token = csrf(page)
        client.post("/requests/SD-1/share", data={"csrf_token": token, "remove": LISA})
        client.post("/requests/SD-1/share", data={"csrf_token": token, "share_with": "org"})
    got = ticket(site, "SD-1")
    assert got["organization"] == "Bauwerk AG" and LISA not in got["participants"]
    with reading(site.desk.engine) as session:
        history = [(h["actor"], h["action"], h["from"], h["to"], h["source"])
                   for h in ticket_history(session, get_ticket(session, "SD-1"))]
    assert history[-3:] == [
        (ANNA, "shared", None, LISA, "web"),
        (ANNA, "unshared", LISA, None, "web"),
        (ANNA, "shared", None, "Bauwerk AG", "web"),
    ]
    with browser(site, LISA) as client:  # now as a member of the organization
        assert client.get("/requests/SD-1").status_code == 200


def test_signed_out_posts_go_to_sign_in_and_change_nothing(site: Site) -> None:
    build(site)
    with site.client() as client:
        token = csrf(client.get("/login"))
        for path, data in (("/requests/SD-1/comments", {"body": "anonym"}),
                           ("/requests/SD-1/share", {"share_with": "org"}),
                           ("/requests/new/other", {"summary": "anonym", "description": "x"})):
            reply = client.post(path, data={"csrf_token": token, **data})
            assert reply.status_code == 303 and reply.headers["location"].startswith("/login?next="), path
    got = ticket(site, "SD-1")
    assert got["organization"] is None and all(c["body"] != "anonym" for c in got["comments"])


def test_the_organizations_default_decides_the_forms_sharing(site: Site) -> None:
    build(site)
    with connection(site.desk.engine) as conn:
        conn.execute(update(ORG).values(share_by_default=True))
    with browser(site, ANNA) as client:
        page = client.get("/requests/new/other").text
        assert 'value="org" selected' in page
        assert file_form(client, "/requests/new/other", {
            "request_type": "other", "summary": "Standard", "description": "geteilt?", "priority": "medium",
            "share_with": "org"}).status_code == 303
    assert ticket(site, "SD-4")["organization"] == "Bauwerk AG"


def test_a_colleagues_status_change_is_told_as_theirs(site: Site) -> None:
    build(site)
    site.mails()
    with browser(site, ANNA) as client:
        page = client.get("/requests/SD-1")
        client.post("/requests/SD-1/status", data={"csrf_token": csrf(page), "status": "resolved"})
    kai = [m for m in site.mails() if to(m) == KAI]
    assert len(kai) == 1
    text = text_of(kai[0])
    assert "Anna hat die Anfrage SD-1" in text and "wir haben" not in text
    assert f"{site.url}/requests/SD-1" in text


def test_language_links_keep_the_page(site: Site) -> None:
    build(site)
    with browser(site, ANNA) as client:
        listed = client.get("/requests?status=all&q=Signatur").text
        assert 'href="/requests?status=all&amp;q=Signatur&amp;lang=en"' in listed
        page = client.get("/requests/SD-1")
        failed = client.post("/requests/SD-1/comments", data={"csrf_token": csrf(page), "body": ""})
        assert failed.status_code == 400
        assert 'href="/requests/SD-1?lang=en"' in failed.text  # not the POST-only address
    with site.client() as client:
        english = client.get("/signup?lang=en")
        client.post("/signup", data={"csrf_token": csrf(english), "email": "new@kunde.example"})
    mails = [m for m in site.mails() if to(m) == "new@kunde.example"]
    assert len(mails) == 1 and "Please confirm" in str(mails[0]["Subject"])
