"""The portal's account pages over HTTP (SPEC §6), on SQLite and
PostgreSQL: the application served by uvicorn on a real socket, a real
HTTP client with its cookie jar, the desk's mails read from the Maildir the
outbox writes to. Signup from the invitation link, sign-in and sign-out,
password reset, profile; the same answers whether or not an account exists,
rate limits, CSRF, sessions in the database, error pages, languages."""

from __future__ import annotations

import datetime as dt
import email.utils
import mailbox
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from netutil import free_port
from sqlalchemy import select, update

from gateway.app import App
from gateway.signup import hash_password
from gateway.store import repo, web
from gateway.store.db import connection
from gateway.store.models import RateLimit, WebSession
from gateway.store.repo import ACCOUNT
from gateway.web.app import make_app

RULES = Path(__file__).parent.parent / "fixtures" / "rules"
ANNA = "anna.mueller@bauwerk-ag.de"
PASSWORD = "korrekt Pferd Batterie"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SESSIONS = WebSession.__table__  # type: ignore[attr-defined]
LIMITS = RateLimit.__table__  # type: ignore[attr-defined]


@dataclass
class Site:
    url: str
    desk: App
    sent: Path

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=10, **kwargs)

    def mails(self) -> list[mailbox.MaildirMessage]:
        self.desk.flush_outbox()
        box = mailbox.Maildir(str(self.sent), create=True)
        found = sorted(box.iteritems(), key=lambda kv: kv[1].get_date())
        for key, _ in found:
            box.remove(key)
        return [m for _, m in found]


@pytest.fixture
def site(app: App, tmp_path: Path) -> Iterator[Site]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    s = app.settings
    settings = s.model_copy(update={
        # The agents' team mailbox hears of customers' new tickets and replies.
        "desk": s.desk.model_copy(update={"portal_url": url, "agent_notify": ("team@xitrust.com",)}),
        "storage": s.storage.model_copy(update={"state_dir": str(tmp_path / "state")}),
        "security": s.security.model_copy(update={
            "max_login_attempts_per_hour": 4, "max_client_requests_per_hour": 12,
        }),
        "web": s.web.model_copy(update={"max_upload_size": 200_000}),  # oversize uploads in tests
    })
    desk = App(settings)
    desk.__dict__["engine"] = app.engine  # one engine (and database) for the desk and the portal
    server = uvicorn.Server(uvicorn.Config(
        make_app(settings, app.engine), host="127.0.0.1", port=port, log_config=None, lifespan="off",
    ))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the portal did not start"
        time.sleep(0.02)
    try:
        yield Site(url, desk, Path(settings.outbound.maildir))
    finally:
        server.should_exit = True
        thread.join(10)


def csrf(page: httpx.Response) -> str:
    m = CSRF.search(page.text)
    assert m, page.text[:500]
    return m.group(1)


def post(client: httpx.Client, path: str, data: dict[str, str]) -> httpx.Response:
    """GET the form (for its CSRF token and cookie), then POST it."""
    token = csrf(client.get(path))
    return client.post(path, data={"csrf_token": token, **data})


def text_of(mail: mailbox.MaildirMessage) -> str:
    """The mail's text/plain body (inside multipart/alternative, and that
    inside multipart/mixed when files are attached)."""
    part = next(p for p in mail.walk() if p.get_content_type() == "text/plain" and not p.get_filename())
    return str(part.get_payload(decode=True).decode())


def link(mail: mailbox.MaildirMessage, path: str) -> str:
    text = text_of(mail)
    m = re.search(rf"https?://[^/\s]+({re.escape(path)}/[A-Za-z0-9_-]+)", text)
    assert m, text
    return m.group(1)


def active_account(app: App, email: str, name: str = "Anna Müller", locale: str = "de") -> int:
    with connection(app.engine) as conn:
        account = repo.account_by_email(conn, email)
        if account is None:
            account = repo.insert_account(conn, email, name, "customer", None, locale)
        conn.execute(update(ACCOUNT).where(ACCOUNT.c.id == account.id).values(
            state="active", name=name, password_hash=hash_password(PASSWORD), locale=locale))
        return account.id


def session_cookie(response: httpx.Response) -> str | None:
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        if name == "gw_session":
            return rest.split(";")[0]
    return None


def sign_in(client: httpx.Client, email: str = ANNA, password: str = PASSWORD) -> httpx.Response:
    return post(client, "/login", {"email": email, "password": password, "next": "/"})


def session_rows(app: App) -> list[tuple[str, int]]:
    with connection(app.engine) as conn:
        return [tuple(r) for r in conn.execute(select(SESSIONS.c.id_sha256, SESSIONS.c.account_id))]


# -- signup ---------------------------------------------------------------------


def test_the_invitation_link_leads_to_an_account_and_its_request(site: Site) -> None:
    assert site.desk.ingest([str(RULES / "new-request-de.eml")], None, progress=False) == 0
    # The team mailbox (desk.agent_notify) hears of the new ticket too.
    [invitation] = [m for m in site.mails() if "team@xitrust.com" not in str(m["To"])]
    path = link(invitation, "/signup")
    with site.client() as browser:
        form = browser.get(path)
        assert form.status_code == 200 and ANNA in form.text
        assert 'name="name"' in form.text and 'name="password_confirm"' in form.text
        # Errors next to their field, the name kept, in German (the default).
        bad = browser.post(path, data={"csrf_token": csrf(form), "name": "Anna Müller",
                                       "password": PASSWORD, "password_confirm": PASSWORD + "x"})
        assert bad.status_code == 400
        assert 'id="e-password_confirm"' in bad.text and "stimmen nicht überein" in bad.text
        assert 'value="Anna Müller"' in bad.text and PASSWORD not in bad.text
        done = browser.post(path, data={"csrf_token": csrf(bad), "name": "Anna Müller",
                                        "password": PASSWORD, "password_confirm": PASSWORD})
        assert (done.status_code, done.headers["location"]) == (303, "/")
        cookie = [c for c in done.headers.get_list("set-cookie") if c.startswith("gw_session=")][0]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
        raw = cookie.split(";")[0].split("=", 1)[1]
        assert all(raw not in row[0] for row in session_rows(site.desk))  # only its hash is stored
        home = browser.get("/")
        assert "Guten Tag, Anna Müller" in home.text and "SD-1" in home.text
        assert "Ihre Registrierung ist abgeschlossen" in home.text  # the notice after signup
        # Sign out: the session ends on the server too.
        out = browser.post("/logout", data={"csrf_token": csrf(home)})
        assert (out.status_code, out.headers["location"]) == (303, "/")
        assert session_rows(site.desk) == []
        assert "Registrieren" in browser.get("/").text
    # The link was used: a page that offers a new one.
    with site.client() as other:
        again = other.get(path)
        assert again.status_code == 410 and "nicht mehr gültig" in again.text
        assert 'action="/signup"' in again.text


def test_signup_answers_the_same_whatever_the_address(site: Site) -> None:
    active_account(site.desk, "known@bauwerk-ag.de")
    with connection(site.desk.engine) as conn:
        repo.insert_account(conn, "unverified@bauwerk-ag.de", "", "customer", None, "de")
    pages = {}
    for address in ("new@bauwerk-ag.de", "unverified@bauwerk-ag.de", "known@bauwerk-ag.de"):
        with site.client() as browser:
            page = post(browser, "/signup", {"email": address})
            assert page.status_code == 200
            pages[address] = page.text.replace(address, "ADDRESS")
            pages[address] = CSRF.sub("", pages[address])
    assert len(set(pages.values())) == 1, "the page tells which addresses have accounts"
    sent = {email.utils.parseaddr(str(m["To"]))[1]: (str(m["Subject"]), m) for m in site.mails()}
    assert set(sent) == {"new@bauwerk-ag.de", "unverified@bauwerk-ag.de", "known@bauwerk-ag.de"}
    assert "Registrierung" in sent["new@bauwerk-ag.de"][0]
    assert "/signup/" in link(sent["unverified@bauwerk-ag.de"][1], "/signup")
    # An existing account is pointed to sign-in and reset, with no link that signs anyone in.
    text = text_of(sent["known@bauwerk-ag.de"][1])
    assert "/login" in text and "/password-reset" in text and "/signup/" not in text


def test_bad_input_gets_its_answer_next_to_the_field(site: Site) -> None:
    with site.client() as browser:
        page = post(browser, "/signup", {"email": "not an address"})
        assert page.status_code == 400 and 'id="e-email"' in page.text
        assert 'value="not an address"' in page.text
        english = browser.get("/signup?lang=en")
        page = browser.post("/signup", data={"csrf_token": csrf(english), "email": "x@"})
        assert "Please enter a valid e-mail address" in page.text
    # An oversized body is refused with a page, before it is read (the
    # client announces 30 MB and sends none of it).
    host, port = site.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /signup HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 30000000\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413") and b"<html" in reply


# -- sign-in, rate limits, CSRF ---------------------------------------------------------


def test_sign_in_tells_nothing_and_is_rate_limited(site: Site) -> None:
    active_account(site.desk, ANNA)
    with site.client() as browser:
        wrong = sign_in(browser, ANNA, "falsches Passwort!")
        unknown = sign_in(browser, "nobody@bauwerk-ag.de", PASSWORD)
        assert wrong.status_code == unknown.status_code == 400
        assert "E-Mail-Adresse oder Passwort sind nicht richtig" in wrong.text
        assert wrong.text.replace(ANNA, "X") == unknown.text.replace("nobody@bauwerk-ag.de", "X").replace(
            csrf(unknown), csrf(wrong))
    with site.client() as browser:
        assert sign_in(browser).status_code == 303  # the third attempt for this address
    with site.client() as browser:
        assert sign_in(browser, ANNA, "noch ein falsches").status_code == 400
        assert sign_in(browser, ANNA, "und noch eins!").status_code == 400
        limited = sign_in(browser)  # the fifth for this address: over 4 an hour, even the right password
        assert limited.status_code == 429 and "Zu viele Versuche" in limited.text
    # Per client too: another address from the same client, until the client's 12.
    with site.client() as browser:
        codes = [sign_in(browser, f"user{i}@example.org", "x" * 12).status_code for i in range(8)]
        assert codes[:5] == [400] * 5 and codes[-1] == 429  # the client's 13th request


def test_forms_without_this_browsers_csrf_token_are_refused(site: Site) -> None:
    active_account(site.desk, ANNA)
    with site.client() as attacker:
        foreign = csrf(attacker.get("/login"))
    with site.client() as browser:
        browser.get("/login")
        for token in ("", foreign, "forged.token"):
            page = browser.post("/login", data={"csrf_token": token, "email": ANNA, "password": PASSWORD})
            assert page.status_code == 400 and "Das Formular ist abgelaufen" in page.text
        assert "gw_session" not in browser.cookies
        assert sign_in(browser).status_code == 303
        # Signed in, the session's token is the one; the anonymous one no longer works.
        home = browser.get("/")
        assert browser.post("/logout", data={"csrf_token": foreign}).headers["location"] == "/"
        assert "Guten Tag" in browser.get("/").text  # still signed in
        assert csrf(home) != foreign


def test_next_goes_only_to_a_local_path(site: Site) -> None:
    active_account(site.desk, ANNA)
    cases = [("/profile", "/profile"), ("//evil.example/x", "/"), ("https://evil.example", "/"),
             ("/\\evil.example", "/")]
    for target, expected in cases:
        with site.client() as browser:
            page = browser.get("/login", params={"next": target})
            reply = browser.post("/login", data={"csrf_token": csrf(page), "email": ANNA,
                                                 "password": PASSWORD, "next": target})
            assert reply.headers["location"] == expected, target


def test_a_new_session_id_at_every_sign_in(site: Site) -> None:
    active_account(site.desk, ANNA)
    with site.client() as browser:
        token = csrf(browser.get("/login"))
        login = {"csrf_token": token, "email": ANNA, "password": PASSWORD}
        browser.cookies.set("gw_session", "planted-by-an-attacker", domain="127.0.0.1", path="/")
        first = session_cookie(browser.post("/login", data=login))
        assert first and first != "planted-by-an-attacker"
        browser.cookies.set("gw_session", "planted-by-an-attacker", domain="127.0.0.1", path="/")
        again = session_cookie(browser.post("/login", data=login))
        assert again not in (None, "planted-by-an-attacker", first)
        assert len(session_rows(site.desk)) == 2  # two sign-ins: two sessions, neither with the planted id


# -- password reset and profile ------------------------------------------------------


def test_password_reset_by_mail(site: Site) -> None:
    active_account(site.desk, ANNA)
    with site.client() as elsewhere:
        assert sign_in(elsewhere).status_code == 303
    with site.client() as browser:
        unknown = post(browser, "/password-reset", {"email": "nobody@bauwerk-ag.de"})
        known = post(browser, "/password-reset", {"email": ANNA})
        assert unknown.status_code == known.status_code == 200
        assert CSRF.sub("", unknown.text).replace("nobody@bauwerk-ag.de", "X") == CSRF.sub(
            "", known.text).replace(ANNA, "X")
        [mail] = site.mails()  # nothing for the unknown address
        assert email.utils.parseaddr(str(mail["To"]))[1] == ANNA
        path = link(mail, "/password-reset")
        form = browser.get(path)
        assert form.status_code == 200 and 'name="password_confirm"' in form.text
        short = browser.post(path, data={"csrf_token": csrf(form), "password": "kurz",
                                         "password_confirm": "kurz"})
        assert short.status_code == 400 and "mindestens 10 Zeichen" in short.text
        new = "ein ganz neues Passwort"
        done = browser.post(path, data={"csrf_token": csrf(short), "password": new, "password_confirm": new})
        assert (done.status_code, done.headers["location"]) == (303, "/login")
        assert "neues Passwort ist gespeichert" in browser.get("/login").text
        assert session_rows(site.desk) == []  # whoever knew the old password is signed out
        assert browser.get(path).status_code == 410  # used
        assert sign_in(browser, ANNA, PASSWORD).status_code == 400
        assert sign_in(browser, ANNA, new).status_code == 303


def test_profile_sets_name_language_and_password(site: Site) -> None:
    active_account(site.desk, ANNA)
    assert site.client().get("/profile").headers["location"] == "/login?next=/profile"
    other = site.client()
    sign_in(other)
    with site.client() as browser:
        sign_in(browser)
        page = post(browser, "/profile", {"name": "Anna M.", "language": "en"})
        assert (page.status_code, page.headers["location"]) == (303, "/profile")
        profile = browser.get("/profile")
        assert "Your details are saved" in profile.text and 'value="Anna M."' in profile.text
        with connection(site.desk.engine) as conn:
            account = repo.account_by_email(conn, ANNA)
            assert account is not None and (account.name, account.locale) == ("Anna M.", "en")
        wrong = browser.post("/profile/password", data={
            "csrf_token": csrf(profile), "current_password": "nicht das", "password": "x" * 12,
            "password_confirm": "x" * 12})
        assert wrong.status_code == 400 and "current password is not right" in wrong.text
        changed = browser.post("/profile/password", data={
            "csrf_token": csrf(wrong), "current_password": PASSWORD, "password": "y" * 12,
            "password_confirm": "y" * 12})
        assert changed.status_code == 303
        assert "Your password is changed" in browser.get("/profile").text  # this browser stays in
        assert len(session_rows(site.desk)) == 1
    assert "Anna M." not in other.get("/").text and "/login" in other.get("/").text  # the other one is out
    other.close()


# -- the frame: errors, headers, languages ------------------------------------------------


def test_pages_of_its_own_for_errors_and_the_headers_every_page_has(site: Site) -> None:
    with site.client() as browser:
        missing = browser.get("/nothing/here")
        assert missing.status_code == 404 and "Seite nicht gefunden" in missing.text
        assert "Traceback" not in missing.text
        assert browser.get("/logout").status_code == 404  # only POST
        page = browser.get("/")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["cache-control"] == "no-store"
        assert browser.get("/static/portal.css").status_code == 200
        assert "--brand: #004b87" in browser.get("/static/theme.css").text


def test_the_language_from_the_query_the_cookie_or_the_browser(site: Site) -> None:
    with site.client() as browser:
        assert 'lang="de"' in browser.get("/").text  # desk.default_locale
        assert 'lang="en"' in browser.get("/", headers={"accept-language": "en-GB,en;q=0.9,de;q=0.5"}).text
        assert "Sign in" in browser.get("/login?lang=en").text
        assert 'lang="en"' in browser.get("/", headers={"accept-language": "de"}).text  # the cookie wins
        assert 'lang="de"' in browser.get("/?lang=de").text


def test_expired_sessions_and_past_counters_are_forgotten(site: Site) -> None:
    active_account(site.desk, ANNA)
    with site.client() as browser:
        sign_in(browser)
        post(browser, "/password-reset", {"email": "x@example.org"})
        assert "Guten Tag" in browser.get("/").text
        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        with connection(site.desk.engine) as conn:
            conn.execute(update(SESSIONS).values(expires_at=long_ago))
            conn.execute(update(LIMITS).values(window_start=long_ago))
        assert "Guten Tag" not in browser.get("/").text  # expired: signed out at once
        with connection(site.desk.engine) as conn:
            assert web.delete_expired_sessions(conn) == 1
            assert web.delete_stale_limits(conn, dt.timedelta(hours=1)) >= 2  # login, client, reset keys
            assert web.delete_expired_sessions(conn) == 0
