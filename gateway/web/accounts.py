"""The account pages (SPEC §6): signup (``/signup`` and the link from the
mail, ``/signup/{token}``), sign-in and sign-out, password reset and the
profile. Routes and field names are the spec's contract.

Rules every page here keeps: the same page and the same wording whether or
not an address has an account; rate limits per address and per client
(``security.max_login_attempts_per_hour``, ``max_client_requests_per_hour``);
a form with errors comes back with its values (never the passwords) and
each error next to its field."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import signup
from gateway.domain import normalize_address
from gateway.store import web as store
from gateway.store.db import connection
from gateway.web.portal import Portal, View, local_path

RESET = "password_reset"


def _password_errors(password: str, confirm: str, field: str = "password") -> dict[str, str]:
    if len(password) < signup.MIN_PASSWORD:
        return {field: "error.password_short"}
    if len(password) > signup.MAX_PASSWORD:
        return {field: "error.password_long"}
    if password != confirm:
        return {"password_confirm": "error.password_mismatch"}
    return {}


def routes(portal: Portal) -> list[Route]:
    settings = portal.settings
    per_address = settings.security.max_login_attempts_per_hour
    per_client = settings.security.max_client_requests_per_hour

    def limits(view: View, kind: str, address: str) -> tuple[tuple[str, int], ...]:
        return ((f"{kind}:{address}", per_address), (f"client:{view.client}", per_client))

    # -- signup ----------------------------------------------------------
    async def signup_page(request: Request) -> Response:
        view = await portal.view(request)
        if view.user is not None and request.method == "GET":
            return portal.redirect(view, "/")
        if request.method == "GET":
            return portal.page(view, "signup.html.j2")
        form = await portal.form(view)
        if form is None:
            return portal.page(view, "signup.html.j2", 400, error="error.csrf")
        address = normalize_address(str(form.get("email", "")))[:320]
        if not signup.is_email(address):
            return portal.page(view, "signup.html.j2", 400, errors={"email": "error.email"},
                               values={"email": str(form.get("email", ""))[:320]})
        if not await run_in_threadpool(portal.allowed, view, *limits(view, "signup", address)):
            # Over a limit: the same page (a per-address limit must not tell
            # anything either), but nothing is sent.
            return portal.page(view, "sent.html.j2", 429, kind="signup", email=address,
                               hours=settings.security.signup_token_hours, error="error.rate")
        await run_in_threadpool(signup.request_signup, portal.engine, settings, address, view.locale)
        return portal.page(view, "sent.html.j2", kind="signup", email=address,
                           hours=settings.security.signup_token_hours)

    async def signup_confirm(request: Request) -> Response:
        view = await portal.view(request)
        token = request.path_params["token"]
        purpose = signup.PURPOSE_SIGNUP
        account_id = await run_in_threadpool(signup.token_account, portal.engine, token, purpose)
        if account_id is None and view.user is not None:
            return portal.redirect(view, "/")  # signed in: the link has done its job
        if account_id is None:
            return portal.page(view, "link_invalid.html.j2", 410, action="/signup")
        email = await run_in_threadpool(_email_of, portal, account_id)
        if request.method == "GET":
            return portal.page(view, "signup_confirm.html.j2", email=email, token=token)
        form = await portal.form(view)
        if form is None:
            return portal.page(view, "signup_confirm.html.j2", 400, email=email, token=token,
                               error="error.csrf")
        name = signup.clean_name(str(form.get("name", "")))
        password = str(form.get("password", ""))
        errors = {} if name else {"name": "error.name"}
        errors.update(_password_errors(password, str(form.get("password_confirm", ""))))
        if errors:
            return portal.page(view, "signup_confirm.html.j2", 400, email=email, token=token, errors=errors,
                               values={"name": str(form.get("name", ""))[:200]}, error="error.form")
        try:
            await run_in_threadpool(signup.confirm_signup, portal.engine, token, name, password)
        except signup.SignupError:
            return portal.page(view, "link_invalid.html.j2", 410, action="/signup")
        await run_in_threadpool(portal.sign_in, view, account_id)
        return portal.redirect(view, "/", flash="welcome")

    # -- sign-in, sign-out ----------------------------------------------
    async def login(request: Request) -> Response:
        view = await portal.view(request)
        target = local_path(request.query_params.get("next"))
        if request.method == "GET":
            if view.user is not None:
                return portal.redirect(view, target)
            return portal.page(view, "login.html.j2", next=target)
        form = await portal.form(view)
        target = local_path(str(form.get("next", "")) if form is not None else None)
        if form is None:
            return portal.page(view, "login.html.j2", 400, next=target, error="error.csrf")
        address = normalize_address(str(form.get("email", "")))[:320]
        values = {"email": str(form.get("email", ""))[:320]}
        if not await run_in_threadpool(portal.allowed, view, *limits(view, "login", address)):
            return portal.page(view, "login.html.j2", 429, next=target, values=values, error="error.rate")
        account = await run_in_threadpool(
            signup.authenticate, portal.engine, address, str(form.get("password", ""))
        )
        if account is None:
            return portal.page(view, "login.html.j2", 400, next=target, values=values, error="error.login")
        await run_in_threadpool(portal.sign_in, view, account.id)
        return portal.redirect(view, target)

    async def logout(request: Request) -> Response:
        view = await portal.view(request)
        form = await portal.form(view)
        if form is not None:
            await run_in_threadpool(portal.sign_out, view)
            return portal.redirect(view, "/", flash="logged_out")
        return portal.redirect(view, "/")

    # -- password reset ------------------------------------------------------
    async def reset_request(request: Request) -> Response:
        view = await portal.view(request)
        if request.method == "GET":
            return portal.page(view, "reset.html.j2")
        form = await portal.form(view)
        if form is None:
            return portal.page(view, "reset.html.j2", 400, error="error.csrf")
        address = normalize_address(str(form.get("email", "")))[:320]
        if not signup.is_email(address):
            return portal.page(view, "reset.html.j2", 400, errors={"email": "error.email"},
                               values={"email": str(form.get("email", ""))[:320]})
        if not await run_in_threadpool(portal.allowed, view, *limits(view, "reset", address)):
            return portal.page(view, "sent.html.j2", 429, kind="reset", email=address, error="error.rate")
        await run_in_threadpool(signup.request_password_reset, portal.engine, settings, address)
        return portal.page(view, "sent.html.j2", kind="reset", email=address)

    async def reset_confirm(request: Request) -> Response:
        view = await portal.view(request)
        token = request.path_params["token"]
        account_id = await run_in_threadpool(signup.token_account, portal.engine, token, RESET)
        if account_id is None:
            return portal.page(view, "link_invalid.html.j2", 410, action="/password-reset")
        if request.method == "GET":
            return portal.page(view, "reset_confirm.html.j2", token=token)
        form = await portal.form(view)
        if form is None:
            return portal.page(view, "reset_confirm.html.j2", 400, token=token, error="error.csrf")
        password = str(form.get("password", ""))
        errors = _password_errors(password, str(form.get("password_confirm", "")))
        if errors:
            return portal.page(view, "reset_confirm.html.j2", 400, token=token, errors=errors,
                               error="error.form")
        try:
            await run_in_threadpool(signup.reset_password, portal.engine, token, password)
        except signup.SignupError:
            return portal.page(view, "link_invalid.html.j2", 410, action="/password-reset")
        view.clear.append("gw_session")  # every session of the account has ended
        return portal.redirect(view, "/login", flash="reset_done")

    # -- profile -----------------------------------------------------------
    async def profile(request: Request) -> Response:
        view = await portal.view(request)
        if view.user is None:
            return portal.redirect(view, "/login?next=/profile")
        account = view.user.account
        current = {"name": account.name, "language": account.locale or view.locale}
        if request.method == "GET":
            return portal.page(view, "profile.html.j2", values=current)
        form = await portal.form(view)
        if form is None:
            return portal.page(view, "profile.html.j2", 400, values=current, error="error.csrf")
        name = signup.clean_name(str(form.get("name", "")))
        language = str(form.get("language", ""))
        if not name or language not in ("de", "en"):
            errors = {"name": "error.name"} if not name else {}
            kept = {"name": str(form.get("name", ""))[:200], "language": current["language"]}
            return portal.page(view, "profile.html.j2", 400, errors=errors, error="error.form", values=kept)
        await run_in_threadpool(_update, portal, account.id, {"name": name, "locale": language})
        view.cookies.append(("gw_lang", language, 365 * 24 * 3600))
        return portal.redirect(view, "/profile", flash="profile.saved")

    async def profile_password(request: Request) -> Response:
        view = await portal.view(request)
        if view.user is None:
            return portal.redirect(view, "/login?next=/profile")
        account = view.user.account
        values = {"name": account.name, "language": account.locale or view.locale}
        form = await portal.form(view)
        if form is None:
            return portal.page(view, "profile.html.j2", 400, values=values, error="error.csrf")
        current = str(form.get("current_password", ""))
        password = str(form.get("password", ""))
        errors = _password_errors(password, str(form.get("password_confirm", "")))
        if not errors:
            ok = await run_in_threadpool(signup.authenticate, portal.engine, account.email, current)
            if ok is None:
                errors = {"current_password": "error.password_current"}
        if errors:
            return portal.page(view, "profile.html.j2", 400, values=values, errors=errors, error="error.form")
        password_hash = await run_in_threadpool(signup.hash_password, password)
        await run_in_threadpool(_change_password, portal, account.id, password_hash)
        await run_in_threadpool(portal.sign_in, view, account.id)  # this browser stays signed in
        return portal.redirect(view, "/profile", flash="profile.password_saved")

    return [
        Route("/signup", signup_page, methods=["GET", "POST"]),
        Route("/signup/{token}", signup_confirm, methods=["GET", "POST"]),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/password-reset", reset_request, methods=["GET", "POST"]),
        Route("/password-reset/{token}", reset_confirm, methods=["GET", "POST"]),
        Route("/profile", profile, methods=["GET", "POST"]),
        Route("/profile/password", profile_password, methods=["POST"]),
    ]


def _email_of(portal: Portal, account_id: int) -> str:
    from gateway.store import repo

    with connection(portal.engine) as conn:
        account = repo.account_by_id(conn, account_id)
        return account.email if account else ""


def _update(portal: Portal, account_id: int, values: dict[str, object]) -> None:
    with connection(portal.engine) as conn:
        store.update_profile(conn, account_id, **values)


def _change_password(portal: Portal, account_id: int, password_hash: str) -> None:
    """The new password, and every session of the account ends (the caller
    signs this browser in again)."""
    with connection(portal.engine) as conn:
        store.update_profile(conn, account_id, password_hash=password_hash)
        store.end_account_sessions(conn, account_id)
