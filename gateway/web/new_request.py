"""The three request forms of the XiTrust guide (SPEC §6
``/requests/new/{type}``): Sonstige Fragen, Technischer Support and
Verbesserung vorschlagen. A request filed here is made by the same desk
operation as one sent by mail (``operations.create_ticket``, source
``web``): same key sequence, same ``request_created`` mail, same sharing
rules.

The category drop-down switches the form: with JavaScript at once
(``static/portal.js``), without it by posting, which brings back the other
category's form with everything typed kept. A form with errors comes back
with its values (files excepted) and each message next to its field."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.desk import operations
from gateway.desk.operations import Actor, NewTicket
from gateway.domain import ParsedAttachment, Priority, Refused, RequestType, normalize_address
from gateway.settings import Settings
from gateway.store import portal_read, repo
from gateway.store.db import connection, reading
from gateway.store.repo import AccountRow
from gateway.web.portal import Portal, View, signed_in
from gateway.web.uploads import read_uploads

TYPES = tuple(t.value for t in RequestType)
PRIORITIES = tuple(p.value for p in Priority)
LIST_FIELDS = ("browser", "components")
MAX_SUMMARY = 200
MAX_DESCRIPTION = 50_000
# A host name with an optional port: what "MOXIS domain" means.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?"
_DOMAIN = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*(?::\d{{1,5}})?$")


@dataclass
class Context:
    """What a form needs besides what was typed: the account's organization
    and the people in it."""

    org: dict[str, Any] | None
    colleagues: list[dict[str, Any]]

    def colleague(self, address: str) -> bool:
        return any(p["email"] == address for p in self.colleagues)


@dataclass
class Draft:
    """A checked form: the ticket to make, or the errors to show."""

    values: dict[str, Any]
    errors: dict[str, str] = field(default_factory=dict)
    request_type: str = "other"
    fields: dict[str, Any] = field(default_factory=dict)
    share_with: str = ""
    files: list[ParsedAttachment] = field(default_factory=list)


def _text(form: FormData, name: str, limit: int) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


def check(form: FormData, settings: Settings, account: AccountRow, ctx: Context, now: dt.datetime) -> Draft:
    """Read and check the posted form (all but its files)."""
    request_type = _text(form, "request_type", 40)
    values: dict[str, Any] = {
        "request_type": request_type,
        "summary": _text(form, "summary", MAX_SUMMARY * 2).strip(),
        "description": _text(form, "description", MAX_DESCRIPTION * 2).replace("\r\n", "\n").rstrip(),
        "priority": _text(form, "priority", 20),
        "share_with": _text(form, "share_with", 320).strip(),
        "moxis_domain": _text(form, "moxis_domain", 300).strip(),
        "first_occurred_at": _text(form, "first_occurred_at", 40).strip(),
        "hosting": _text(form, "hosting", 50),
        "responsible_user": _text(form, "responsible_user", 320).strip(),
        "browser": [v for v in form.getlist("browser") if isinstance(v, str)][:20],
        "components": [v for v in form.getlist("components") if isinstance(v, str)][:20],
    }
    draft = Draft(values=values, request_type=request_type if request_type in TYPES else "other")
    errors = draft.errors
    if request_type not in TYPES:
        errors["request_type"] = "error.choice"
    if not values["summary"]:
        errors["summary"] = "error.summary"
    elif len(values["summary"]) > MAX_SUMMARY:
        errors["summary"] = "error.summary_long"
    if not values["description"].strip():
        errors["description"] = "error.description"
    elif len(values["description"]) > MAX_DESCRIPTION:
        errors["description"] = "error.description_long"
    if values["priority"] not in PRIORITIES:
        errors["priority"] = "error.choice"
    share = values["share_with"]
    if share == "org":
        if ctx.org is None:
            errors["share_with"] = "error.choice"
    elif share:
        share = normalize_address(share)
        if not ctx.colleague(share):
            errors["share_with"] = "error.colleague"
    draft.share_with = share
    if draft.request_type == "technical_support":
        technical_fields(draft, settings, now)
    elif draft.request_type == "suggest_improvement":
        responsible = normalize_address(values["responsible_user"] or account.email)
        if responsible != account.email and not ctx.colleague(responsible):
            errors["responsible_user"] = "error.colleague"
        draft.fields["responsible_user"] = responsible
    return draft


def technical_fields(draft: Draft, settings: Settings, now: dt.datetime) -> None:
    """The technical-support fields of ``draft.values`` checked into
    ``draft.fields`` (or ``draft.errors``); the agents' page uses it too."""
    values, errors, fields = draft.values, draft.errors, draft.fields
    domain = values["moxis_domain"].lower()
    domain = re.sub(r"^https?://", "", domain).split("/")[0]
    if domain:
        if _DOMAIN.match(domain):
            fields["moxis_domain"] = domain
        else:
            errors["moxis_domain"] = "error.domain"
    elif values["moxis_domain"]:  # "https://" and nothing after it
        errors["moxis_domain"] = "error.domain"
    when = values["first_occurred_at"]
    if when:
        try:
            local = dt.datetime.fromisoformat(when)
        except ValueError:
            errors["first_occurred_at"] = "error.datetime"
        else:
            zone = zoneinfo.ZoneInfo(settings.desk.timezone)
            moment = local.replace(tzinfo=zone) if local.tzinfo is None else local
            if moment > now + dt.timedelta(hours=1):
                errors["first_occurred_at"] = "error.future"
            elif moment.year < 2000:
                errors["first_occurred_at"] = "error.too_early"
            else:
                fields["first_occurred_at"] = moment.replace(second=0, microsecond=0).isoformat()
    for name in LIST_FIELDS:
        allowed = [o.value for o in getattr(settings.fields, name)]
        chosen = values[name]
        if any(v not in allowed for v in chosen):
            errors[name] = "error.choice"
        elif chosen:
            fields[name] = [v for v in allowed if v in chosen]  # the configured order, once each
    hosting = values["hosting"]
    if hosting:
        if hosting in [o.value for o in settings.fields.hosting]:
            fields["hosting"] = hosting
        else:
            errors["hosting"] = "error.choice"


def routes(portal: Portal) -> list[Route]:
    settings = portal.settings

    def context(account: AccountRow) -> Context:
        with reading(portal.engine) as session:
            org = portal_read.organization(session, account.organization_id)
            people = portal_read.colleagues(session, account.organization_id, account.id) if org else []
            return Context(org=org, colleagues=people)

    def show(view: View, account: AccountRow, ctx: Context, request_type: str, values: dict[str, Any],
             status: int = 200, errors: dict[str, str] | None = None, notice: str | None = None) -> Response:
        view_option = portal.env.filters["option"]
        choices = {
            name: [(o.value, view_option(o.value, view.locale)) for o in getattr(settings.fields, name)]
            for name in ("browser", "hosting", "components")
        }
        return portal.page(
            view, "request_new.html.j2", status, request_type=request_type, types=TYPES,
            priorities=PRIORITIES, choices=choices, org=ctx.org, colleagues=ctx.colleagues,
            values=values, errors=errors or {}, notice=notice, me=account.email,
            upload_limit=settings.web.max_upload_size, timezone=settings.desk.timezone,
            error="error.form" if errors and not notice else None,
        )

    @signed_in(portal)
    async def new_request(request: Request, view: View, account: AccountRow) -> Response:
        request_type = request.path_params["type"]
        if request_type not in TYPES:
            return await portal.not_found(request, Exception())
        ctx = await run_in_threadpool(context, account)
        if request.method == "GET":
            defaults = {
                "request_type": request_type, "priority": Priority.medium.value,
                "share_with": "org" if ctx.org and ctx.org["share_by_default"] else "",
                "responsible_user": account.email, "browser": [], "components": [],
            }
            return show(view, account, ctx, request_type, defaults)
        form = await portal.form(view)
        if form is None:
            return show(view, account, ctx, request_type, {"request_type": request_type}, 400,
                        errors={"csrf_token": "error.csrf"})
        draft = check(form, settings, account, ctx, dt.datetime.now(dt.UTC))
        posted_type = draft.values["request_type"]
        uploads = await read_uploads(form, "attachments", settings.web.max_upload_size)
        if posted_type in TYPES and (posted_type != request_type or form.get("switch")):
            # The category was changed without JavaScript: the other form,
            # with what was typed; nothing is filed yet. Browsers cannot
            # keep chosen files across pages: say so next to the field.
            errors = {"attachments": "error.files_again"} if uploads.files or uploads.error else None
            return show(view, account, ctx, draft.request_type, draft.values, notice="form.switched",
                        errors=errors, status=200)
        if uploads.error:
            draft.errors["attachments"] = uploads.error
        elif uploads.files and draft.errors:
            draft.errors["attachments"] = "error.files_again"  # browsers cannot keep chosen files
        if draft.errors:
            return show(view, account, ctx, request_type, draft.values, 400, errors=draft.errors)
        draft.files = uploads.files

        def create() -> str | None:
            with connection(portal.engine) as conn:
                me = repo.account_by_id(conn, account.id)
                assert me is not None
                person = repo.account_by_email(conn, draft.share_with) if "@" in draft.share_with else None
                if "@" in draft.share_with and person is None:
                    return None
                done = operations.create_ticket(conn, portal.desk, Actor.of(me, "web"), NewTicket(
                    request_type=RequestType(draft.request_type),
                    summary=draft.values["summary"],
                    description=draft.values["description"],
                    priority=Priority(draft.values["priority"]),
                    fields=draft.fields,
                    attachments=draft.files,
                    share_with_org=draft.share_with == "org",
                    share_with=[person] if person is not None else [],
                ))
                return done.ticket.key

        try:
            key = await run_in_threadpool(create)
        except Refused:
            key = None
        if key is None:
            draft.errors["share_with"] = "error.colleague"
            return show(view, account, ctx, request_type, draft.values, 400, errors=draft.errors)
        return portal.redirect(view, f"/requests/{key}", flash="request.filed")

    return [Route("/requests/new/{type}", new_request, methods=["GET", "POST"])]
