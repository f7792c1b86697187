"""The portal as a customer uses it, in a real browser (Debian's Chromium,
``tests/browser.py``) against a real ``gateway serve`` (SMTP listener,
outbox sender and the portal's processes; SQLite): a stranger writes to the
desk, follows the signup link from the invitation mail, signs out and in,
resets her password from the mail, switches her language to English, and
finds the used signup link no longer valid.

Every page is saved as a screenshot (desktop; the home and the signup forms
also on a phone): ``GATEWAY_SCREENSHOTS=/tmp/portal-shots`` keeps them.
Assertions are about what the customer sees: the URL, the page's text, which
field an error sits next to."""

from __future__ import annotations

import email.policy
import json
import re
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from browser import Chromium, screenshot
from netutil import free_port
from playwright.sync_api import Locator, Page

from gateway.web.i18n import TEXTS
from tests.gatewayproc import DESK, GatewayProcess

LENA = "lena.hofer@kanzlei-hofer.at"
NAME = "Lena Hofer"
SUBJECT = "Signatur-Workflow bleibt bei Freigabe hängen"
FIRST_PASSWORD = "Kanzlei-Hofer-2026!"
NEW_PASSWORD = "Linz Donau Brücke 7"
MAIL_WAIT = 60.0  # seconds: an upper bound for the outbox, not a timing assertion

# Words a page may never show: a template placeholder or a raw translation key.
PLACEHOLDER = re.compile(r"\{\s*\w+\s*\}")
KEYS = sorted(k for k in TEXTS["de"] if "." in k or "_" in k)


# -- the daemon and its mail -------------------------------------------------------


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[GatewayProcess]:
    """``gateway serve`` with the portal on a port of its own."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = GatewayProcess(
        tmp_path,
        web={"listen": f"127.0.0.1:{port}"},
        desk={"portal_url": url},
    )
    proc.portal = url  # type: ignore[attr-defined]
    proc.start()
    try:
        proc.wait_for_log(f"web listening on 127.0.0.1:{port}")
        yield proc
    finally:
        proc.kill()


def portal(gw: GatewayProcess) -> str:
    return str(gw.portal)  # type: ignore[attr-defined]


def customer_mail() -> bytes:
    return (
        f"From: {NAME} <{LENA}>\r\nTo: {DESK}\r\nSubject: {SUBJECT}\r\n"
        "Message-ID: <portal-1@kanzlei-hofer.at>\r\nDate: Mon, 30 Nov 2026 08:15:00 +0100\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\nGuten Morgen,\r\n\r\nseit gestern bleibt jeder Akt bei der Freigabe stehen.\r\n\r\n"
        "Mit freundlichen Grüßen\r\nLena Hofer\r\n"
    ).encode()


def sent_to(gw: GatewayProcess, address: str) -> list[EmailMessage]:
    """The mails the outbox has written to the Maildir for ``address``."""
    box = gw.state / "sent"
    if not (box / "new").is_dir():
        return []
    found = []
    for path in sorted((box / "new").iterdir()):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        if address in str(msg.get("To", "")).lower():
            found.append(msg)
    return found


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None, f"no text part in {msg['Subject']!r}"
    return str(part.get_content())  # type: ignore[attr-defined]


def wait_for_link(gw: GatewayProcess, path: str, seen: set[str]) -> str:
    """The first ``{portal_url}{path}<token>`` link in a mail to Lena that
    was not in ``seen`` (the mails read before), once the outbox sent it."""
    link = re.compile(re.escape(portal(gw) + path) + r"[A-Za-z0-9_-]+")
    deadline = time.monotonic() + MAIL_WAIT
    while True:
        for msg in sent_to(gw, LENA):
            text = text_of(msg)
            found = set(link.findall(text))
            if found and text not in seen:
                seen.add(text)
                assert len(found) == 1, f"more than one link in the mail: {found}"
                return found.pop()
        assert time.monotonic() < deadline, (
            f"no mail with a {path} link to {LENA} within {MAIL_WAIT} s:\n"
            f"{gw.query('SELECT template, status, last_error FROM outbound_mail')}\n{gw.log_text()}"
        )
        time.sleep(0.2)


def account_json(gw: GatewayProcess, address: str) -> dict[str, object]:
    """``gateway account show ADDRESS --json`` with the daemon's config."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "account", "show", address, "--json"],
        env=gw.env, cwd=gw.state, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert isinstance(shown, dict)
    return shown


# -- what a page shows -----------------------------------------------------------


def shoot(page: Page, name: str, tmp_path: Path) -> None:
    """A screenshot of the page, after checking it shows no template
    placeholder and no raw translation key (both are visible bugs)."""
    text = page.locator("body").inner_text()
    assert not PLACEHOLDER.search(text), f"{name}: a placeholder on the page:\n{text}"
    raw = [k for k in KEYS if re.search(rf"(?<![\w.@-]){re.escape(k)}(?![\w.@-])", text)]
    assert not raw, f"{name}: untranslated keys {raw} on the page:\n{text}"
    screenshot(page, name, tmp_path)


def form(page: Page) -> Locator:
    """The page's own form (not the sign-out form in the header)."""
    return page.locator("main form")


def field(page: Page, name: str) -> Locator:
    return form(page).locator(f'[name="{name}"]')


def submit(page: Page) -> None:
    form(page).locator('button[type="submit"]').click()
    page.wait_for_load_state()


def error_next_to(page: Page, name: str) -> str:
    """The error message shown with field ``name``: the element the input
    points at (aria-describedby), visible, right below the input."""
    box = field(page, name)
    assert box.get_attribute("aria-invalid") == "true", f"{name} is not marked invalid"
    described = box.get_attribute("aria-describedby")
    assert described, f"{name} has no description"
    message = page.locator(f"#{described}")
    assert message.is_visible()
    top, below = box.bounding_box(), message.bounding_box()
    assert top is not None and below is not None
    assert top["y"] + top["height"] <= below["y"] <= top["y"] + top["height"] + 40, (top, below)
    assert abs(top["x"] - below["x"]) < 20, (top, below)
    return message.inner_text()


def alert(page: Page) -> str:
    return page.locator("main [role=alert]").inner_text()


def notice(page: Page) -> str:
    return page.locator("main [role=status]").inner_text()


def sign_out(page: Page, base: str) -> None:
    page.locator('header form[action="/logout"] button').click()
    page.wait_for_url(base + "/")


def sign_in(page: Page, base: str, password: str) -> None:
    page.goto(base + "/login")
    field(page, "email").fill(LENA)
    field(page, "password").fill(password)
    submit(page)


def assert_signed_in_home(page: Page, base: str) -> None:
    assert page.url == base + "/"
    assert NAME in page.locator("h1").inner_text()
    row = page.locator("main table tr", has_text="SD-1")
    assert row.count() == 1, page.locator("main").inner_text()
    assert SUBJECT in row.inner_text()
    assert page.locator('header form[action="/logout"] button').is_visible()


def assert_signed_out_home(page: Page, base: str) -> None:
    assert page.url == base + "/"
    assert page.locator('header a[href="/login"]').is_visible()
    assert page.locator('header form[action="/logout"]').count() == 0
    assert NAME not in page.locator("body").inner_text()


# -- the flow ----------------------------------------------------------------------


def test_customer_signs_up_from_mail_signs_in_resets_password_and_sets_language(
    gw: GatewayProcess, tmp_path: Path
) -> None:
    base = portal(gw)
    read: set[str] = set()

    # 1. A stranger writes to the desk; the outbox sends her the invitation.
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=10) as smtp:
        smtp.sendmail(LENA, [DESK], customer_mail())
    signup_link = wait_for_link(gw, "/signup/", read)

    # An Austrian customer: her browser asks for German.
    with Chromium() as chromium:
        with chromium.phone_page(locale="de-AT") as phone:
            phone.goto(base + "/")
            assert_signed_out_home(phone, base)
            shoot(phone, "phone-01-home-signed-out", tmp_path)
            phone.goto(base + "/signup")
            shoot(phone, "phone-02-signup-request", tmp_path)
            phone.goto(signup_link)
            assert field(phone, "name").is_visible()
            shoot(phone, "phone-03-signup-form", tmp_path)

        with chromium.page(locale="de-AT") as page:
            # 2. The link from the mail: the signup form.
            response = page.goto(signup_link)
            assert response is not None and response.status == 200
            assert page.locator("html").get_attribute("lang") == "de"
            assert LENA in page.locator("main").inner_text()
            for name in ("name", "password", "password_confirm"):
                assert field(page, name).is_visible(), name
            shoot(page, "01-signup-form", tmp_path)

            field(page, "name").fill(NAME)
            field(page, "password").fill(FIRST_PASSWORD)
            field(page, "password_confirm").fill(FIRST_PASSWORD + "x")
            submit(page)
            assert page.url == signup_link
            assert "stimmen nicht überein" in error_next_to(page, "password_confirm")
            assert field(page, "name").input_value() == NAME
            shoot(page, "02-signup-form-mismatch", tmp_path)

            field(page, "password").fill(FIRST_PASSWORD)
            field(page, "password_confirm").fill(FIRST_PASSWORD)
            submit(page)
            page.wait_for_url(base + "/")
            assert_signed_in_home(page, base)
            assert "Registrierung ist abgeschlossen" in notice(page)
            shoot(page, "03-home-signed-in", tmp_path)
            with chromium.phone_page(locale="de-AT") as phone:
                phone.context.add_cookies(page.context.cookies())  # type: ignore[arg-type]
                phone.goto(base + "/")
                assert_signed_in_home(phone, base)
                shoot(phone, "phone-04-home-signed-in", tmp_path)

            # 3. Sign out with the button in the header.
            sign_out(page, base)
            assert_signed_out_home(page, base)
            assert "abgemeldet" in notice(page)
            shoot(page, "04-home-signed-out", tmp_path)

            # 4. A wrong password, then an unknown address: the same words.
            sign_in(page, base, "falsches Passwort 123")
            assert page.url == base + "/login"
            wrong_password = alert(page)
            assert "nicht richtig" in wrong_password
            assert field(page, "email").input_value() == LENA
            assert field(page, "password").input_value() == ""
            shoot(page, "05-login-wrong-password", tmp_path)
            page.goto(base + "/login")
            field(page, "email").fill("niemand@kanzlei-hofer.at")
            field(page, "password").fill("falsches Passwort 123")
            submit(page)
            assert alert(page) == wrong_password

            sign_in(page, base, FIRST_PASSWORD)
            page.wait_for_url(base + "/")
            assert_signed_in_home(page, base)

            # 5. Forgot the password: the mail, the link, a new password.
            sign_out(page, base)
            page.goto(base + "/password-reset")
            shoot(page, "06-reset-request", tmp_path)
            field(page, "email").fill(LENA)
            submit(page)
            assert page.url == base + "/password-reset"
            assert "Postfach" in page.locator("h1").inner_text()
            assert LENA in page.locator("main").inner_text()
            shoot(page, "07-reset-check-inbox", tmp_path)

            reset_link = wait_for_link(gw, "/password-reset/", read)
            response = page.goto(reset_link)
            assert response is not None and response.status == 200
            shoot(page, "08-reset-form", tmp_path)
            field(page, "password").fill(NEW_PASSWORD)
            field(page, "password_confirm").fill(NEW_PASSWORD)
            submit(page)
            page.wait_for_url(base + "/login")
            assert "neues Passwort ist gespeichert" in notice(page)
            shoot(page, "09-login-after-reset", tmp_path)

            sign_in(page, base, FIRST_PASSWORD)
            assert page.url == base + "/login"
            assert alert(page) == wrong_password
            sign_in(page, base, NEW_PASSWORD)
            page.wait_for_url(base + "/")
            assert_signed_in_home(page, base)

            # 6. The profile: English, for the pages and her mails.
            page.goto(base + "/profile")
            assert page.locator("h1").inner_text() == "Ihr Profil"
            assert field(page, "name").input_value() == NAME
            shoot(page, "10-profile-de", tmp_path)
            profile_form = page.locator('main form[action="/profile"]')
            profile_form.locator('[name="language"]').select_option("en")
            profile_form.locator('button[type="submit"]').click()
            page.wait_for_url(base + "/profile")
            assert page.locator("html").get_attribute("lang") == "en"
            assert page.locator("h1").inner_text() == "Your profile"
            assert "Your details are saved." in notice(page)
            assert page.locator("header nav").get_by_text("Sign out").is_visible()
            shoot(page, "11-profile-en", tmp_path)
            assert account_json(gw, LENA)["locale"] == "en"

            # 7. The used signup link, signed in: it has done its job, back home.
            page.goto(signup_link)
            page.wait_for_url(f"{base}/")
            shoot(page, "12-signup-link-used-signed-in", tmp_path)

        # The same mail opened later on another computer, signed out: the
        # same page (in German there), and the way to sign in.
        with chromium.page(locale="de-AT") as other:
            response = other.goto(signup_link)
            assert response is not None and response.status == 410
            assert other.locator("h1").inner_text() == "Dieser Link ist nicht mehr gültig"
            assert other.locator('main form[action="/signup"] [name="email"]').is_visible()
            assert other.locator('main a[href="/login"]').is_visible()
            shoot(other, "13-signup-link-used-signed-out", tmp_path)
