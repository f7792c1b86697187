"""The portal after ``gateway account erase`` (#16), on SQLite and
PostgreSQL: the pages of a ticket the erased customer was on show "deleted
user" (in the page's language) and "[erased]" to the colleague and the agent, nothing of hers, and
do not fail on the erased account; she can no longer sign in."""

from __future__ import annotations

from sqlalchemy import select
from test_portal_http import (
    PASSWORD,
    Site,
    sign_in,
    site as site,  # noqa: F401, PLC0414 - the fixture, shared
)
from test_portal_requests import ANNA, KAI, SAM, browser, build

from gateway import privacy
from gateway.store.repo import MAIL, TICKET
from gateway.store.spool import SpoolItem


def from_mail(site: Site) -> tuple[int, str]:
    """The id of her mail and the key of the ticket it made."""
    with site.desk.engine.connect() as conn:
        found = conn.execute(select(MAIL.c.id, TICKET.c.key).join(TICKET, TICKET.c.id == MAIL.c.ticket_id)
                             .where(MAIL.c.message_id == "<per-mail@bauwerk-ag.de>")).one()
        return int(found[0]), str(found[1])


def test_the_pages_show_deleted_user(site: Site) -> None:
    files = build(site)  # SD-1 and SD-2 by Anna, SD-1 shared with Kai, answered by Sam
    by_mail = (f"From: Anna <{ANNA}>\r\nTo: servicedesk@xitrust.com\r\nSubject: Per Mail\r\n"
               "Message-ID: <per-mail@bauwerk-ag.de>\r\n\r\nDer Drucker.\r\n").encode()
    site.desk.spool.put_many([SpoolItem(raw=by_mail, source="smtp")])
    assert site.desk.runner().drain()["done"] == 1
    mail_id, key = from_mail(site)
    report = privacy.erase_account(site.desk.engine, site.desk.blobs, ANNA, confirmed=True)
    assert report.erased
    with browser(site, KAI) as client:
        page = client.get("/requests/SD-1")
        assert page.status_code == 200, page.text
        # Her name is "deleted user", in the page's language.
        assert "gelöschte Person" in page.text and "deleted user" not in page.text
        assert "[erased]" in page.text and ANNA not in page.text
        assert "Bitte Update 9.2.3 installieren." in page.text  # the desk's answer stays
        assert client.get(f"/attachments/{files['fehler.txt']}").status_code == 404  # her file is gone
        assert client.get(f"/attachments/{files['anleitung.html']}").status_code == 200
        listed = client.get("/requests?status=all")
        assert listed.status_code == 200 and 'href="/requests/SD-1"' in listed.text
    with browser(site, SAM) as client:
        for path in ("/agent/tickets/SD-1", "/agent/tickets/SD-2", "/agent?status=all", "/agent?q=deleted"):
            page = client.get(path)
            assert page.status_code == 200, (path, page.text)
            assert ANNA not in page.text, path
        ticket = client.get("/agent/tickets/SD-1").text
        assert "gelöschte Person" in ticket and report.placeholder in ticket
        # The history says what happened, in the agent's language.
        assert "Daten einer gelöschten Person entfernt" in ticket
        # Her mail's bytes went with her: the mail's facts say so, and so does its link.
        facts = client.get(f"/agent/tickets/{key}").text
        assert "Original-Nachricht wurde mit den persönlichen Daten ihres Absenders gelöscht." in facts
        assert "/raw?" not in facts
        raw = client.get(f"/agent/mails/{mail_id}/raw?ticket={key}")
        assert raw.status_code == 410 and "persönlichen Daten" in raw.text and "Drucker" not in raw.text
    with site.client() as client:
        assert sign_in(client, ANNA, PASSWORD).status_code != 303
        assert sign_in(client, report.placeholder, PASSWORD).status_code != 303
