"""The agents' side as an agent and a customer use it, in a real browser
(Debian's Chromium) against a real ``gateway serve`` (SQLite): the operator
creates an agent with ``gateway account create --role agent``; the agent
signs up from the mailed link, finds the customer's ticket in the queue,
takes it, replies with a file and adds an internal note; the customer's
page and mail show the reply and its file and never the note; the
customer's next mail reply is mailed to the agent, who now looks after it.

Screenshots: ``GATEWAY_SCREENSHOTS=/tmp/shots`` keeps them (the README's
pictures of the queue and a ticket come from this run)."""

from __future__ import annotations

import re
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from browser import Chromium
from netutil import free_port
from playwright.sync_api import Page
from test_portal_browser import field, notice, sent_to, shoot, text_of
from test_portal_http import PASSWORD, active_account

from gateway.app import App
from gateway.settings import load_settings
from tests.gatewayproc import DESK, GatewayProcess

LENA = "lena.hofer@kanzlei-hofer.at"
SAM = "sam.berger@xitrust.com"
SAM_PASSWORD = "Servicedesk-Sam-2026"
MAIL_WAIT = 60.0  # seconds: an upper bound for the outbox and the workers, not a timing assertion


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[GatewayProcess]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = GatewayProcess(tmp_path, web={"listen": f"127.0.0.1:{port}"}, desk={"portal_url": url})
    proc.portal = url  # type: ignore[attr-defined]
    proc.start()
    try:
        proc.wait_for_log(f"web listening on 127.0.0.1:{port}")
        app = App(load_settings(proc.config_path))
        try:
            active_account(app, LENA, name="Lena Hofer")
        finally:
            app.engine.dispose()
        yield proc
    finally:
        proc.kill()


def wait_for_mail(gw: GatewayProcess, address: str, match: str) -> EmailMessage:
    """The first mail to ``address`` whose subject or text contains ``match``."""
    deadline = time.monotonic() + MAIL_WAIT
    while True:
        for msg in sent_to(gw, address):
            if match in str(msg["Subject"]) or match in text_of(msg):
                return msg
        assert time.monotonic() < deadline, (
            f"no mail with {match!r} to {address}:\n"
            f"{gw.query('SELECT to_addr, template, status, last_error FROM outbound_mail')}"
        )
        time.sleep(0.2)


def send(gw: GatewayProcess, msg: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=10) as smtp:
        smtp.send_message(msg)


def mail(
    subject: str, body: str, in_reply_to: str | None = None, mid: str = "<lena-1@kanzlei-hofer.at>"
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"], msg["Message-ID"] = f"Lena Hofer <{LENA}>", DESK, subject, mid
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    msg.set_content(body)
    return msg


def sign_in(page: Page, base: str, email: str, password: str) -> None:
    page.goto(base + "/login")
    field(page, "email").fill(email)
    field(page, "password").fill(password)
    page.locator('main form button[type="submit"]').click()
    page.wait_for_url(base + "/")


def test_an_agent_takes_a_ticket_replies_with_a_file_and_hears_the_answer(
    gw: GatewayProcess, tmp_path: Path
) -> None:
    base = str(gw.portal)  # type: ignore[attr-defined]
    send(gw, mail("Freigabe hängt", "Seit dem Update hängt die Freigabe bei 80 %."))
    wait_for_mail(gw, LENA, "[SD-1]")

    # The operator creates the agent; the link arrives by mail.
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "account", "create", SAM, "--role", "agent",
         "--name", "Sam Berger"],
        env=gw.env, cwd=gw.state, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0 and "signup link" in done.stdout, done.stderr
    invitation = text_of(wait_for_mail(gw, SAM, "/signup/"))
    link = re.search(re.escape(base) + r"/signup/[A-Za-z0-9_-]+", invitation)
    assert link, invitation

    with Chromium() as chromium:
        with chromium.page(locale="de-AT") as page:
            page.goto(link.group(0))
            field(page, "name").fill("Sam Berger")
            field(page, "password").fill(SAM_PASSWORD)
            field(page, "password_confirm").fill(SAM_PASSWORD)
            page.locator('main form button[type="submit"]').click()
            page.wait_for_url(base + "/")
            page.locator('header a[href="/agent"]').click()
            page.wait_for_url(base + "/agent")
            row = page.locator("main table tbody tr", has_text="SD-1")
            assert row.count() == 1 and "Freigabe hängt" in row.inner_text()
            assert "Wartet auf Support" in page.locator("nav.tabs").inner_text()
            shoot(page, "30-agent-queue", tmp_path)

            # Take it, answer with a file, note something for colleagues.
            row.locator("a").first.click()
            page.wait_for_url(base + "/agent/tickets/SD-1")
            page.locator("#u-assignee").select_option(SAM)
            page.locator('form.update button[type="submit"]').click()
            page.wait_for_url(base + "/agent/tickets/SD-1")
            assert "Gespeichert" in notice(page)
            page.locator("#f-body").fill("Bitte installieren Sie Update 9.2.3; die Anleitung ist angehängt.")
            page.locator("form.reply #f-attachments").set_input_files(
                [{"name": "anleitung.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4 Anleitung"}])
            page.locator('form.reply button[type="submit"]').click()
            page.wait_for_url(base + "/agent/tickets/SD-1#latest")
            page.locator("#f-body").fill("Kunde hat Wartungsvertrag bis 2027.")
            page.locator('form.reply input[name="internal"]').check()
            page.locator('form.reply button[type="submit"]').click()
            page.wait_for_url(base + "/agent/tickets/SD-1#latest")
            assert "interne Notiz ist gespeichert" in notice(page)
            main = page.locator("main").inner_text()
            assert "Intern" in main and "anleitung.pdf" in main and "Sam Berger" in main
            page.locator("details.mail-info").first.click()
            shoot(page, "31-agent-ticket", tmp_path)

        # The customer: the reply and its file, never the note.
        with chromium.page(locale="de-AT") as page:
            sign_in(page, base, LENA, PASSWORD)
            page.goto(base + "/requests/SD-1")
            main = page.locator("main").inner_text()
            assert "Update 9.2.3" in main and "anleitung.pdf" in main
            assert "Wartungsvertrag" not in main

    answer = wait_for_mail(gw, LENA, "Update 9.2.3")
    assert "Wartungsvertrag" not in text_of(answer)
    files = {p.get_filename(): p.get_payload(decode=True) for p in answer.walk() if p.get_filename()}
    assert files == {"anleitung.pdf": b"%PDF-1.4 Anleitung"}

    # Her answer by mail reaches the agent who took the ticket.
    send(gw, mail("Re: " + str(answer["Subject"]), "Danke, mit 9.2.3 geht es wieder.",
                  in_reply_to=str(answer["Message-ID"]), mid="<lena-2@kanzlei-hofer.at>"))
    told = wait_for_mail(gw, SAM, "mit 9.2.3 geht es wieder")
    assert f"{base}/agent/tickets/SD-1" in text_of(told)
