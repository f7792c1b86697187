"""The portal's requests as customers use them, in a real browser (Debian's
Chromium) against a real ``gateway serve`` (SMTP listener, workers, outbox,
the portal's processes; SQLite): Lena of Kanzlei Hofer files one request of
each of the guide's three categories with a file (one a pasted
screenshot), finds them in "Anfragen", answers the desk's mail and sees her
reply on the page; her colleague Max sees what is shared with him and
nothing else; a stranger gets the 404 page for the request and its file;
markup from a mail never runs.

Every page is saved as a screenshot (``GATEWAY_SCREENSHOTS=/tmp/shots``
keeps them; the README's pictures in ``docs/`` come from this run)."""

from __future__ import annotations

import base64
import re
import smtplib
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from browser import Chromium
from netutil import free_port
from playwright.sync_api import Page
from test_portal_browser import error_next_to, field, notice, sent_to, shoot, text_of
from test_portal_http import PASSWORD, active_account

from gateway import admin
from gateway.app import App
from gateway.settings import load_settings
from gateway.store.db import transaction
from tests.gatewayproc import DESK, GatewayProcess

LENA, MAX, EVE = "lena.hofer@kanzlei-hofer.at", "max.gruber@kanzlei-hofer.at", "eve@evil.example"
MAIL_WAIT = 60.0  # seconds: an upper bound for the outbox and the workers, not a timing assertion
# A 1x1 PNG, as a screenshot pasted from the clipboard.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
HOSTILE = '<script>window.__pwned = 1</script><img src="x" onerror="window.__pwned = 1">'


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[GatewayProcess]:
    """``gateway serve`` with the portal; Kanzlei Hofer with Lena and Max,
    and Eve, all with accounts."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = GatewayProcess(tmp_path, web={"listen": f"127.0.0.1:{port}"}, desk={"portal_url": url})
    proc.portal = url  # type: ignore[attr-defined]
    proc.start()
    try:
        proc.wait_for_log(f"web listening on 127.0.0.1:{port}")
        app = App(load_settings(proc.config_path))
        try:
            for email, name in ((LENA, "Lena Hofer"), (MAX, "Max Gruber"), (EVE, "Eve")):
                active_account(app, email, name=name)
            with transaction(app.engine) as session:
                admin.create_org(session, "Kanzlei Hofer", ["kanzlei-hofer.at"])
                for email in (LENA, MAX):
                    admin.add_member(session, "Kanzlei Hofer", email)
        finally:
            app.engine.dispose()
        yield proc
    finally:
        proc.kill()


def sign_in(page: Page, base: str, email: str) -> None:
    page.goto(base + "/login")
    field(page, "email").fill(email)
    field(page, "password").fill(PASSWORD)
    page.locator('main form button[type="submit"]').click()
    page.wait_for_url(base + "/")


def send(page: Page) -> None:
    page.locator('main form[data-request-form] button[type="submit"]:not([name])').click()
    page.wait_for_load_state()


def paste_screenshot(page: Page) -> None:
    """What Ctrl+V with an image on the clipboard does: a paste event whose
    clipboardData carries the file."""
    page.locator("#f-description").evaluate(
        """(el, b64) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const data = new DataTransfer();
            data.items.add(new File([bytes], "image.png", {type: "image/png"}));
            const init = {clipboardData: data, bubbles: true, cancelable: true};
            el.dispatchEvent(new ClipboardEvent("paste", init));
        }""",
        base64.b64encode(PIXEL).decode(),
    )


def wait_for_mail(gw: GatewayProcess, address: str, subject_part: str) -> EmailMessage:
    deadline = time.monotonic() + MAIL_WAIT
    while True:
        for msg in sent_to(gw, address):
            if subject_part in str(msg["Subject"]):
                return msg
        assert time.monotonic() < deadline, (
            f"no mail {subject_part!r} to {address}:\n"
            f"{gw.query('SELECT template, status, last_error FROM outbound_mail')}"
        )
        time.sleep(0.2)


def test_three_forms_anfragen_mail_replies_colleague_and_stranger(gw: GatewayProcess, tmp_path: Path) -> None:
    base = str(gw.portal)  # type: ignore[attr-defined]
    with Chromium() as chromium:
        with chromium.page(locale="de-AT") as page:
            sign_in(page, base, LENA)
            # The dashboard: the guide's three categories, each leading to its form.
            cards = page.locator("main a.category")
            assert cards.count() == 3, page.content()
            assert "Technischer Support" in cards.nth(1).inner_text()
            assert "Installation oder Konfiguration" in cards.nth(1).inner_text()
            shoot(page, "20-dashboard", tmp_path)

            # 1. Sonstige Fragen: sent empty first, the error sits next to its field.
            cards.nth(0).click()
            page.wait_for_url(base + "/requests/new/other")
            shoot(page, "21-form-other", tmp_path)
            field(page, "description").fill("Wie exportiere ich das Signaturprotokoll?")
            send(page)
            assert "Bitte fassen Sie Ihr Anliegen" in error_next_to(page, "summary")
            assert field(page, "description").input_value() == "Wie exportiere ich das Signaturprotokoll?"
            shoot(page, "22-form-other-error", tmp_path)
            # The category drop-down switches the form at once (script), and back.
            tech = page.locator('fieldset[data-for="technical_support"]')
            assert not tech.is_visible()
            field(page, "request_type").select_option("technical_support")
            assert tech.is_visible() and page.url.endswith("/requests/new/technical_support")
            field(page, "request_type").select_option("other")
            assert not tech.is_visible()
            field(page, "summary").fill("Signaturprotokoll exportieren")
            page.locator("#f-attachments").set_input_files(
                [{"name": "protokoll.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4 Protokoll"}])
            assert "protokoll.pdf" in page.locator("[data-picked]").inner_text()
            send(page)
            page.wait_for_url(base + "/requests/SD-1")
            assert "Ihre Anfrage ist eingegangen" in notice(page)
            assert "protokoll.pdf" in page.locator("main").inner_text()

            # 2. Technischer Support, shared with the organization, a pasted screenshot.
            page.goto(base + "/")
            cards.nth(1).click()
            page.wait_for_url(base + "/requests/new/technical_support")
            field(page, "summary").fill("Freigabe bleibt bei 80 % stehen")
            description = f"Seit dem Update 9.2 hängt jede Freigabe.\n\nFehlertext: {HOSTILE}"
            field(page, "description").fill(description)
            paste_screenshot(page)
            assert re.search(r"screenshot-\d{8}-\d{6}\.png", page.locator("[data-picked]").inner_text())
            field(page, "moxis_domain").fill("kanzlei-hofer.moxis.cloud")
            field(page, "first_occurred_at").fill("2026-11-27T09:30")
            page.locator('input[name="browser"][value="edge"]').check()
            field(page, "hosting").select_option("cloud")
            page.locator('input[name="components"][value="workflow"]').check()
            field(page, "priority").select_option("high")
            field(page, "share_with").select_option("org")
            shoot(page, "23-form-technical-support", tmp_path)
            send(page)
            page.wait_for_url(base + "/requests/SD-2")
            main = page.locator("main").inner_text()
            assert "kanzlei-hofer.moxis.cloud" in main and "27.11.2026 09:30" in main and "Workflow" in main
            assert "Organisation Kanzlei Hofer" in main and re.search(r"screenshot-\d{8}-\d{6}\.png", main)
            assert HOSTILE in main  # shown as text
            assert page.evaluate("window.__pwned") is None

            # 3. Verbesserung vorschlagen: Max is responsible and it is shared with him.
            page.goto(base + "/requests/new/suggest_improvement")
            field(page, "summary").fill("Vorlagen kopieren können")
            field(page, "description").fill("Eine Kopierfunktion für Workflow-Vorlagen spart uns viel Zeit.")
            field(page, "responsible_user").select_option(MAX)
            field(page, "share_with").select_option(MAX)
            page.locator("#f-attachments").set_input_files(
                [{"name": "skizze.png", "mimeType": "image/png", "buffer": PIXEL}])
            shoot(page, "24-form-suggest-improvement", tmp_path)
            send(page)
            page.wait_for_url(base + "/requests/SD-3")

            # Anfragen: all three, newest first.
            page.goto(base + "/requests")
            rows = page.locator("main table tbody tr")
            assert rows.count() == 3 and "SD-3" in rows.nth(0).inner_text()
            shoot(page, "25-anfragen", tmp_path)

            # 4. The desk's mail for SD-2 links to its page; a mail reply shows up there.
            created = wait_for_mail(gw, LENA, "[SD-2]")
            assert f"{base}/requests/SD-2" in text_of(created)
            reply = EmailMessage()
            reply["From"], reply["To"] = f"Lena Hofer <{LENA}>", DESK
            reply["Subject"] = "Re: " + str(created["Subject"])
            reply["Message-ID"] = "<reply-sd2@kanzlei-hofer.at>"
            reply["In-Reply-To"] = str(created["Message-ID"])
            reply.set_content(f"Nachtrag: betrifft nur PDF/A-Dokumente. {HOSTILE}\n")
            with smtplib.SMTP("127.0.0.1", gw.port, timeout=10) as smtp:
                smtp.send_message(reply)
            deadline = time.monotonic() + MAIL_WAIT
            while "Nachtrag: betrifft nur PDF/A" not in page.locator("main").inner_text():
                assert time.monotonic() < deadline, gw.log_text()
                time.sleep(0.3)
                page.goto(base + "/requests/SD-2")
            assert page.evaluate("window.__pwned") is None
            # A comment from the page, with a file.
            field(page, "body").fill("Screenshot vom Fehler anbei.")
            page.locator('form[data-comment-form] #f-attachments').set_input_files(
                [{"name": "fehler.png", "mimeType": "image/png", "buffer": PIXEL}])
            page.locator('form[data-comment-form] button[type="submit"]').click()
            page.wait_for_url(base + "/requests/SD-2#latest")
            assert "Ihre Antwort ist gespeichert" in notice(page)
            shoot(page, "26-request-page", tmp_path)
            protokoll = page.locator("main a", has_text="fehler.png").get_attribute("href")
            page.goto(base + "/")
            assert page.locator("main table tbody tr").count() == 3  # her recent requests
            shoot(page, "28-dashboard-with-requests", tmp_path)
            assert protokoll and protokoll.startswith("/attachments/")

            with chromium.phone_page(locale="de-AT") as phone:
                phone.context.add_cookies(page.context.cookies())  # type: ignore[arg-type]
                phone.goto(base + "/")
                shoot(phone, "phone-20-dashboard", tmp_path)
                phone.goto(base + "/requests/new/technical_support")
                shoot(phone, "phone-21-form", tmp_path)
                phone.goto(base + "/requests/SD-2")
                shoot(phone, "phone-22-request", tmp_path)

        # 5. Max, a colleague: the shared requests, not Lena's own one.
        with chromium.page(locale="de-AT") as page:
            sign_in(page, base, MAX)
            listed = page.locator("main").inner_text()
            assert "Freigabe bleibt bei 80 %" in listed and "Vorlagen kopieren können" in listed
            assert "Signaturprotokoll exportieren" not in listed
            page.goto(base + "/requests/SD-3")
            assert "Vorlagen kopieren können" in page.locator("h1").inner_text()
            response = page.goto(base + "/requests/SD-1")
            assert response is not None and response.status == 404

        # 6. A stranger: the product's 404 for the request and its file.
        with chromium.page(locale="de-AT") as page:
            sign_in(page, base, EVE)
            for path in ("/requests/SD-2", protokoll):
                response = page.goto(base + path)
                assert response is not None and response.status == 404, path
                assert "Freigabe" not in page.locator("body").inner_text()
            shoot(page, "27-stranger-404", tmp_path)
