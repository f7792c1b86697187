"""The portal's frame: the Starlette application, what every request gets
before its page (the signed-in account, the language, the CSRF token: a
``View``), rendering pages in the user's language, cookies, rate limits and
the product's own error pages (never a traceback).

Pages are server-rendered jinja2 (``templates/web``, autoescaped), usable
without JavaScript. Database work runs in Starlette's thread pool: the
store is synchronous SQLAlchemy, like the rest of the gateway."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import zoneinfo
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import Message, Receive

from gateway.desk.operations import Actor, Desk, Done
from gateway.domain import ERASED_NAME
from gateway.outbound.templates import template_dir
from gateway.settings import FieldOption, Settings
from gateway.store import repo, web as store
from gateway.store.blobs import make_blob_store
from gateway.store.db import connection, read_connection
from gateway.store.repo import AccountRow
from gateway.store.web import SignedIn
from gateway.web.i18n import LOCALES, TEXTS, from_accept_language, translate
from gateway.web.security import Csrf, client_address, forwarded_https, secret_key

log = logging.getLogger("gateway.web")

SESSION_COOKIE = "gw_session"
LANG_COOKIE = "gw_lang"
FLASH_COOKIE = "gw_flash"
HOUR = dt.timedelta(hours=1)
MIB = 1024 * 1024

Handler = Callable[[Request], Awaitable[Response]]
Page = Callable[[Request, "View", AccountRow], Awaitable[Response]]


@dataclass
class View:
    """What one request's page needs: who (``user``), in which language,
    the CSRF token its forms carry, and the cookies to set on the way out."""

    request: Request
    locale: str
    user: SignedIn | None
    csrf_token: str
    client: str
    flash: str | None = None
    cookies: list[tuple[str, str, int | None]] = field(default_factory=list)  # name, value, max-age
    clear: list[str] = field(default_factory=list)

    def t(self, key: str, **values: object) -> str:
        return translate(self.locale, key, **values)


@jinja2.pass_context
def _erased_in_the_page_language(ctx: jinja2.runtime.Context, value: object) -> object:
    """An erased account's name (stored as ``domain.ERASED_NAME``, in
    English) is shown in the page's language wherever a name is printed."""
    if value == ERASED_NAME:
        return translate(ctx.get("locale", "en"), "person.erased")
    return value


class Portal:
    """The application's state: settings, the engine, templates, CSRF."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        # Shared through the database: a form from one instance posts to another.
        self.csrf = Csrf(secret_key(settings, engine))
        self.secure_cookies = settings.desk.portal_url.startswith("https://")
        # The desk's operations, as the mail pipeline and the CLI call them.
        self.desk = Desk(settings, make_blob_store(settings.storage.blobs))
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(template_dir("web"))),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            finalize=_erased_in_the_page_language,
        )
        zone = zoneinfo.ZoneInfo(settings.desk.timezone)
        self.env.filters["day"] = lambda iso, locale: local_day(iso, locale, zone)
        # Sizes in the page's language (293,0 KB in German): the locale comes from the context.
        self.env.filters["filesize"] = jinja2.pass_context(
            lambda ctx, size: filesize(size, ctx.get("locale", "en")))
        self.env.filters["known"] = lambda key, locale: key in TEXTS.get(locale, {})
        configured = {o.value: o for name in ("browser", "hosting", "components")
                      for o in getattr(settings.fields, name)}
        self.env.filters["option"] = lambda value, locale: option_label(configured, value, locale)
        self.env.filters["moment"] = lambda iso, locale: local_moment(iso, locale, zone)

    # -- per request -----------------------------------------------------
    async def view(self, request: Request) -> View:
        raw = request.cookies.get(SESSION_COOKIE)
        user = await run_in_threadpool(self._signed_in, raw) if raw else None
        asked = request.query_params.get("lang")
        cookies: list[tuple[str, str, int | None]] = []
        if asked in LOCALES:
            locale = asked
            cookies.append((LANG_COOKIE, asked, 365 * 24 * 3600))
        else:
            locale = (
                _known(request.cookies.get(LANG_COOKIE))
                or _known(user.account.locale if user else None)
                or from_accept_language(request.headers.get("accept-language"))
                or self.settings.desk.default_locale
            )
        if user is not None:
            token = user.csrf_token
        else:
            token = request.cookies.get(Csrf.COOKIE, "")
            if not self.csrf.anonymous_valid(token):
                token = self.csrf.new_anonymous()
                cookies.append((Csrf.COOKIE, token, None))
        flash = request.cookies.get(FLASH_COOKIE)
        view = View(
            request=request,
            locale=locale,
            user=user,
            csrf_token=token,
            client=client_address(request, self.settings.web.trusted_proxies),
            flash=flash if flash and flash.replace(".", "").replace("_", "").isalnum() else None,
            cookies=cookies,
        )
        if flash:
            view.clear.append(FLASH_COOKIE)
        return view

    def _signed_in(self, raw: str) -> SignedIn | None:
        if len(raw) > 100:
            return None
        # A read: every page asks, and on SQLite a write transaction here
        # would queue each page behind the listener's commits (and them
        # behind it) for a lookup that writes nothing.
        with read_connection(self.engine) as conn:
            return store.signed_in(conn, raw)

    async def form(self, view: View) -> FormData | None:
        """The posted form, or None when its CSRF token is not this
        browser's. Oversized bodies are refused before they are read."""
        # Files over web.max_upload_size get a message next to their field
        # (uploads.py), which needs the other fields: a form with files is
        # read up to a ceiling above it, and only beyond that refused
        # outright. A form without files is small.
        multipart = view.request.headers.get("content-type", "").startswith("multipart/form-data")
        ceiling = self.settings.web.max_upload_size * 4 + MIB if multipart else MIB
        length = view.request.headers.get("content-length", "")
        if length.isdigit() and int(length) > ceiling:
            raise HTTPException(413)
        capped = Request(view.request.scope, _capped(view.request.receive, ceiling))
        form = await capped.form(max_files=20, max_fields=200)
        if not Csrf.same(str(form.get("csrf_token", "")), view.csrf_token):
            return None
        return form

    def allowed(self, view: View, *keys: tuple[str, int]) -> bool:
        """Count this request against each (key, hourly limit); False when
        one is over its limit. Keys are per address (``login:<email>``) and
        per client (``client:<ip>``)."""
        with connection(self.engine) as conn:
            counts = [store.hit(conn, key, HOUR) for key, _ in keys]
        return all(count <= limit for count, (_, limit) in zip(counts, keys, strict=True))

    def operate(self, account_id: int, ticket_id: int, op: Callable[..., Done], *args: Any) -> Done:
        """The desk operation ``op(conn, desk, actor, ticket, *args)`` by the
        account on the ticket, both as they are now, source ``web``, in one
        transaction (call it in the thread pool)."""
        with connection(self.engine) as conn:
            me = repo.account_by_id(conn, account_id)
            current = repo.ticket_by_id(conn, ticket_id)
            assert me is not None and current is not None
            return op(conn, self.desk, Actor.of(me, "web"), current, *args)

    # -- responses -------------------------------------------------------
    def page(self, view: View, template: str, status: int = 200, **context: Any) -> Response:
        values = {
            "t": view.t,
            "locale": view.locale,
            "user": view.user.account if view.user else None,
            "csrf_token": view.csrf_token,
            "desk_name": self.settings.desk.name,
            "desk_address": self.settings.desk.addresses[0],
            "path": view.request.url.path,
            "lang_base": lang_base(view.request),
            "flash": view.t(view.flash) if view.flash else None,
            "errors": {},
            "values": {},
            "error": None,
            **context,
        }
        html = self.env.get_template(template).render(values)
        return self.finish(view, HTMLResponse(html, status_code=status))

    def redirect(self, view: View, to: str, flash: str | None = None) -> Response:
        response = RedirectResponse(to, status_code=303)
        if flash:
            view.cookies.append((FLASH_COOKIE, flash, 60))
            if FLASH_COOKIE in view.clear:
                view.clear.remove(FLASH_COOKIE)
        return self.finish(view, response)

    def finish(self, view: View, response: Response) -> Response:
        secure = self.secure_cookies or forwarded_https(view.request, self.settings.web.trusted_proxies)
        for name, value, max_age in view.cookies:
            response.set_cookie(
                name, value, max_age=max_age, httponly=True, samesite="lax", secure=secure, path="/"
            )
        for name in view.clear:
            response.delete_cookie(name, path="/", httponly=True, samesite="lax", secure=secure)
        return response

    # -- sessions --------------------------------------------------------
    def sign_in(self, view: View, account_id: int) -> None:
        """A new session (a new id at every sign-in: an id planted before it
        is worth nothing) in the database and its cookie."""
        raw = secrets.token_urlsafe(32)
        hours = self.settings.web.session_hours
        with connection(self.engine) as conn:
            old = view.request.cookies.get(SESSION_COOKIE)
            if old and len(old) <= 100:
                store.end_session(conn, old)
            store.create_session(conn, raw, account_id, secrets.token_urlsafe(32), hours)
        view.cookies.append((SESSION_COOKIE, raw, hours * 3600))

    def sign_out(self, view: View) -> None:
        raw = view.request.cookies.get(SESSION_COOKIE)
        if raw and len(raw) <= 100:
            with connection(self.engine) as conn:
                store.end_session(conn, raw)
        view.clear.append(SESSION_COOKIE)

    # -- errors ----------------------------------------------------------
    async def not_found(self, request: Request, exc: Exception) -> Response:
        view = await self.view(request)
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        if status == 413:
            return self.page(view, "error.html.j2", 413, title=view.t("error.too_large"), text="")
        title, text = view.t("page.404.title"), view.t("page.404.text")
        return self.page(view, "error.html.j2", 404, title=title, text=text)

    async def server_error(self, request: Request, exc: Exception) -> Response:
        log.exception("portal: %s %s failed", request.method, request.url.path, exc_info=exc)
        locale = _known(request.cookies.get(LANG_COOKIE)) or self.settings.desk.default_locale
        html = self.env.get_template("error.html.j2").render(
            t=lambda key, **v: translate(locale, key, **v), locale=locale, user=None, csrf_token="",
            desk_name=self.settings.desk.name, desk_address=self.settings.desk.addresses[0], path="",
            lang_base="/?",
            flash=None, errors={}, values={}, error=None,
            title=translate(locale, "page.500.title"), text=translate(locale, "page.500.text"),
        )
        return HTMLResponse(html, status_code=500)

    def theme(self, request: Request) -> Response:
        """The desk's colour as a stylesheet (no inline styles under the CSP)."""
        css = f":root {{ --brand: {self.settings.web.color}; }}\n"
        return Response(css, media_type="text/css", headers={"cache-control": "max-age=300"})


def _capped(receive: Receive, ceiling: int) -> Receive:
    """``receive`` that refuses (413) a body growing past ``ceiling`` bytes,
    whatever its Content-Length said (or when it said nothing: chunked)."""
    seen = 0

    async def inner() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > ceiling:
                raise HTTPException(413)
        return message

    return inner


def signed_in(portal: Portal) -> Callable[[Page], Handler]:
    """A page for signed-in accounts only: anyone else goes to the sign-in
    form, and comes back here after it."""

    def wrap(page: Page) -> Handler:
        async def handler(request: Request) -> Response:
            view = await portal.view(request)
            if view.user is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return portal.redirect(view, f"/login?next={quote(target, safe='/')}")
            return await page(request, view, view.user.account)

        return handler

    return wrap


def filesize(size: int, locale: str = "en") -> str:
    """15 B, 293.0 KB (en) or 293,0 KB (de)."""
    if size < 1024:
        return f"{size} B"
    number, unit = (size / 1024, "KB") if size < 1024 * 1024 else (size / 1024 / 1024, "MB")
    text = f"{number:.1f}"
    return f"{text.replace('.', ',') if locale == 'de' else text} {unit}"


def local_day(iso: str | None, locale: str, zone: dt.tzinfo) -> str:
    """A stored UTC time as the day in the desk's time zone: 30.11.2026
    (de), 30 Nov 2026 (en). Written by hand: locale modules are process-wide
    and not all installed."""
    if not iso:
        return ""
    when = dt.datetime.fromisoformat(iso).astimezone(zone)
    if locale == "de":
        return when.strftime("%d.%m.%Y")
    return f"{when.day} {_MONTHS[when.month - 1]} {when.year}"


def local_moment(iso: str | None, locale: str, zone: dt.tzinfo) -> str:
    """A date and time in the desk's time zone (30.11.2026 14:05), or the
    text as it is when it is not one (a field read from mail)."""
    try:
        when = dt.datetime.fromisoformat(iso or "")
    except ValueError:
        return iso or ""
    if when.tzinfo is not None:
        when = when.astimezone(zone)
    return f"{local_day(when.isoformat(), locale, zone)} {when:%H:%M}"


def option_label(configured: dict[str, FieldOption], value: str, locale: str) -> str:
    """A field option's label as configured under [fields] (or built in),
    else the value as stored (from mail: as the customer wrote it)."""
    option = configured.get(value)
    label = (option.de if locale == "de" else option.en) if option else ""
    return label or value


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _known(locale: str | None) -> str | None:
    return locale if locale in LOCALES else None


# Routes that only take a POST: a page rendered from one (a form with
# errors) switches language on the page the form belongs to.
_POST_ONLY = frozenset({"comments", "share", "status", "reply", "update"})


def lang_base(request: Request) -> str:
    """The current page's address, ready for ``lang=…``: its other query
    parameters kept (a filtered list stays filtered); after a POST, the page
    that showed the form."""
    path = request.url.path
    query = ""
    if request.method == "GET":
        query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "lang"])
    else:
        head, _, last = path.rpartition("/")
        if last in _POST_ONLY:
            path = head or "/"
    return f"{path}?{query}&" if query else f"{path}?"


def local_path(target: str | None) -> str:
    """``next`` only to a path of this site: ``/requests``, never
    ``//evil.example`` or ``https://…`` (an open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(c) < 32 for c in target):
        return "/"
    return target
