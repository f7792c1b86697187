"""The agents' workspace (SPEC §6): the queue (``/agent``), a ticket with
everything (``/agent/tickets/{KEY}``), replies and internal notes with files
(``…/reply``), changes to status, priority, request type, assignee and
fields (``…/update``), participants (``…/share``), the raw mail behind an
entry (``/agent/mails/{id}/raw``), and a request filed for a customer
(``/agent/new``).

Same login as the portal; only accounts with role ``agent`` get here,
anyone else sees the 404 page. Every change is a desk operation with source
``web``, as by mail or at the command line. Two agents saving the same
ticket: the form carries the ticket's version (its ``updated_at``), and a
save against an older one is refused with "changed meanwhile" and what
changed, never applied over the other's."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.desk import operations
from gateway.desk.operations import Actor, NewComment, NewTicket
from gateway.domain import Priority, Refused, RequestType, TicketStatus, normalize_address
from gateway.pipeline.identify import create_account
from gateway.signup import is_email
from gateway.store import agent_read, numbering, repo
from gateway.store.agent_read import QueueFilter
from gateway.store.db import connection, read_connection, reading
from gateway.store.repo import ERASED_RAW, AccountRow, TicketRow
from gateway.web.new_request import MAX_DESCRIPTION, MAX_SUMMARY, Draft, technical_fields
from gateway.web.portal import Handler, Page, Portal, View, signed_in
from gateway.web.uploads import read_reply, read_uploads

PAGE_SIZE = 50
STATUSES = tuple(s.value for s in TicketStatus)
PRIORITIES = tuple(p.value for p in Priority)
TYPES = tuple(t.value for t in RequestType)
FIELD_NAMES = ("moxis_domain", "first_occurred_at", "browser", "hosting", "components", "responsible_user")


class Conflict(Exception):
    """The ticket changed since the agent's form was loaded."""


def routes(portal: Portal) -> list[Route]:
    settings = portal.settings
    desk = portal.desk

    def agents_only(page: Page) -> Handler:
        async def inner(request: Request, view: View, account: AccountRow) -> Response:
            if account.role != "agent" or account.state != "active":
                return await portal.not_found(request, Exception())
            return await page(request, view, account)

        return signed_in(portal)(inner)

    def find(key: str) -> TicketRow | None:
        with read_connection(portal.engine) as conn:
            ticket = repo.ticket_by_key(conn, key.strip().upper()[:30])
            return None if ticket is None or numbering.is_placeholder_key(ticket.key) else ticket

    def choices(view: View) -> dict[str, list[tuple[str, str]]]:
        label = portal.env.filters["option"]
        return {
            name: [(o.value, label(o.value, view.locale)) for o in getattr(settings.fields, name)]
            for name in ("browser", "hosting", "components")
        }

    # -- the queue ---------------------------------------------------------
    @agents_only
    async def queue(request: Request, view: View, account: AccountRow) -> Response:
        params = request.query_params
        status = params.get("status") or "open"
        f = QueueFilter(
            status=status if status in (*STATUSES, "open", "all") else "open",
            priority=_pick(params.get("priority"), PRIORITIES),
            request_type=_pick(params.get("request_type"), TYPES),
            organization=(params.get("organization") or "")[:200],
            assignee=normalize_address((params.get("assignee") or "")[:320])
            if (params.get("assignee") or "") not in ("me", "none") else params["assignee"],
            q=(params.get("q") or "")[:200],
            sort=_pick(params.get("sort"), agent_read.SORTS) or "updated",
        )
        page = int(params["page"]) if (params.get("page") or "").isdigit() else 1
        page = max(1, min(page, 10_000))

        def load() -> tuple[list[dict[str, Any]], int, dict[str, int], list[dict[str, Any]]]:
            with reading(portal.engine) as session:
                rows, total, counts = agent_read.queue(
                    session, f, account.id, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
                return rows, total, counts, agent_read.agents(session)

        rows, total, counts, agents = await run_in_threadpool(load)
        pages = max(1, -(-total // PAGE_SIZE))
        return portal.page(
            view, "agent_queue.html.j2", tickets=rows, total=total, counts=counts, page=page, pages=pages,
            f=f, agents=agents, statuses=STATUSES, priorities=PRIORITIES, types=TYPES,
            sorts=agent_read.SORTS, me=account.email,
        )

    # -- one ticket --------------------------------------------------------
    async def show(
        view: View, ticket: TicketRow, status: int = 200, errors: dict[str, str] | None = None,
        values: dict[str, Any] | None = None, changed: list[dict[str, Any]] | None = None,
    ) -> Response:
        def load() -> tuple[dict[str, Any], list[dict[str, Any]]]:
            with reading(portal.engine) as session:
                return agent_read.agent_ticket(session, ticket.id), agent_read.agents(session)

        data, agents = await run_in_threadpool(load)
        form = values if values is not None else _form_values(data)
        return portal.page(
            view, "agent_ticket.html.j2", status, ticket=data, agents=agents, form=form,
            statuses=STATUSES, priorities=PRIORITIES, types=TYPES, choices=choices(view),
            errors=errors or {}, values=values or {}, changed=changed,
            upload_limit=settings.web.max_upload_size, timezone=settings.desk.timezone,
            error=("agent.changed_meanwhile" if changed is not None else "error.form") if errors else None,
        )

    @agents_only
    async def ticket_page(request: Request, view: View, account: AccountRow) -> Response:
        ticket = await run_in_threadpool(find, request.path_params["key"])
        if ticket is None:
            return await portal.not_found(request, Exception())
        return await show(view, ticket)

    @agents_only
    async def reply(request: Request, view: View, account: AccountRow) -> Response:
        ticket = await run_in_threadpool(find, request.path_params["key"])
        if ticket is None:
            return await portal.not_found(request, Exception())
        form = await portal.form(view)
        if form is None:
            return await show(view, ticket, 400, errors={"body": "error.csrf"})
        internal = form.get("internal") in ("1", "on", "true")
        reply = await read_reply(form, settings.web.max_upload_size, MAX_DESCRIPTION)
        if reply.errors:
            return await show(view, ticket, 400, errors=reply.errors,
                              values={"body": reply.body, "internal": internal})
        new = NewComment(body=reply.body, internal=internal, attachments=reply.files)
        await run_in_threadpool(portal.operate, account.id, ticket.id, operations.add_comment, new)
        flash = "agent.noted" if internal else "agent.replied"
        return portal.redirect(view, f"/agent/tickets/{ticket.key}#latest", flash=flash)

    @agents_only
    async def update(request: Request, view: View, account: AccountRow) -> Response:
        ticket = await run_in_threadpool(find, request.path_params["key"])
        if ticket is None:
            return await portal.not_found(request, Exception())
        form = await portal.form(view)
        if form is None:
            return await show(view, ticket, 400, errors={"status": "error.csrf"})
        values, errors, fields = _read_update(form, settings, dt.datetime.now(dt.UTC))
        if errors:
            return await show(view, ticket, 400, errors=errors, values=values)

        def save() -> list[dict[str, Any]] | None:
            """None when saved; the changes since the form's version when
            someone else saved first."""
            with connection(portal.engine) as conn:
                if agent_read.ticket_version(conn, ticket.id) != values["version"]:
                    raise Conflict
                me = repo.account_by_id(conn, account.id)
                current = repo.ticket_by_id(conn, ticket.id)
                assert me is not None and current is not None
                actor = Actor.of(me, "web")
                operations.set_priority(conn, desk, actor, current, values["priority"])
                operations.set_request_type(conn, desk, actor, current, values["request_type"])
                operations.assign(conn, desk, actor, current, values["assignee"] or None)
                if fields is not None:
                    operations.set_fields(conn, desk, actor, current, fields)
                operations.transition(conn, desk, actor, current, values["status"])
            return None

        def meanwhile() -> list[dict[str, Any]]:
            with reading(portal.engine) as session:
                return agent_read.changes_since(session, ticket.id, values["version"])

        try:
            await run_in_threadpool(save)
        except Conflict:
            changed = await run_in_threadpool(meanwhile)
            return await show(view, ticket, 409, errors={"version": "agent.changed_meanwhile"},
                              values=values, changed=changed)
        except Refused:
            # An assignee who is not an agent (or no longer one): the only
            # refusal left after the form's checks. Nothing was saved.
            return await show(view, ticket, 400, errors={"assignee": "agent.not_an_agent"}, values=values)
        return portal.redirect(view, f"/agent/tickets/{ticket.key}", flash="agent.saved")

    @agents_only
    async def share(request: Request, view: View, account: AccountRow) -> Response:
        ticket = await run_in_threadpool(find, request.path_params["key"])
        if ticket is None:
            return await portal.not_found(request, Exception())
        form = await portal.form(view)
        target = f"/agent/tickets/{ticket.key}"
        if form is None:
            return portal.redirect(view, target)
        add = str(form.get("share_with") or "").strip()[:320]
        remove = str(form.get("remove") or "").strip()[:320]
        try:
            if remove:
                who = remove if remove == operations.SHARE_ORG else normalize_address(remove)
                await run_in_threadpool(portal.operate, account.id, ticket.id, operations.unshare, who)
            elif add:
                who = add if add == operations.SHARE_ORG else normalize_address(add)
                await run_in_threadpool(portal.operate, account.id, ticket.id, operations.share, who)
        except Refused:
            return await show(view, ticket, 400, errors={"share_with": "agent.no_account"},
                              values={**_form_values_of(form), "share_with": add})
        return portal.redirect(view, target, flash="agent.saved")

    @agents_only
    async def raw_mail(request: Request, view: View, account: AccountRow) -> Response:
        raw_id = request.path_params["id"]
        ticket = await run_in_threadpool(find, request.query_params.get("ticket", ""))
        if not raw_id.isdigit() or len(raw_id) > 12 or ticket is None:
            return await portal.not_found(request, Exception())

        def load() -> bytes | str | None:
            """The mail's bytes; or, where they are gone, the sentence that
            says why; None: no such mail on this ticket."""
            with reading(portal.engine) as session:
                mail = agent_read.mail_of_ticket(session, int(raw_id), ticket.id)
                if mail is None:
                    return None
                if mail.raw_removed_at is not None:
                    return view.t("agent.raw_removed", date=f"{mail.raw_removed_at:%Y-%m-%d}")
                if mail.raw_inline is not None:
                    return bytes(mail.raw_inline)
                if mail.raw_sha256 == ERASED_RAW:
                    return view.t("agent.raw_erased")
                try:
                    return desk.blobs.get(session.connection(), mail.raw_sha256)
                except KeyError:
                    return None

        data = await run_in_threadpool(load)
        if data is None:
            return await portal.not_found(request, Exception())
        if isinstance(data, str):
            # Retention ([retention] raw_mail_days) or an erasure removed it:
            # say so, the link was not wrong.
            gone = Response(data + "\n", status_code=410, media_type="text/plain; charset=utf-8",
                            headers={"cache-control": "private, no-store"})
            return portal.finish(view, gone)
        # Shown as text, never rendered: a mail is a stranger's bytes.
        headers = {
            "content-disposition": f'inline; filename="mail-{raw_id}.eml"',
            "x-content-type-options": "nosniff",
            "cache-control": "private, no-store",
        }
        return portal.finish(view, Response(data, media_type="text/plain; charset=utf-8", headers=headers))

    # -- a request for a customer -------------------------------------------
    @agents_only
    async def new_for_customer(request: Request, view: View, account: AccountRow) -> Response:
        if request.method == "GET":
            return portal.page(view, "agent_new.html.j2", types=TYPES, priorities=PRIORITIES,
                               values={"priority": "medium", "request_type": "other"},
                               upload_limit=settings.web.max_upload_size)
        form = await portal.form(view)
        if form is None:
            return portal.page(view, "agent_new.html.j2", 400, types=TYPES, priorities=PRIORITIES,
                               values={}, errors={"reporter": "error.csrf"},
                               upload_limit=settings.web.max_upload_size)
        values = {name: str(form.get(name) or "").strip() for name in
                  ("reporter", "request_type", "summary", "description", "priority")}
        values["reporter"] = normalize_address(values["reporter"][:320])
        errors: dict[str, str] = {}
        if not is_email(values["reporter"]):
            errors["reporter"] = "error.email"
        if values["request_type"] not in TYPES:
            errors["request_type"] = "error.choice"
        if not values["summary"]:
            errors["summary"] = "error.summary"
        elif len(values["summary"]) > MAX_SUMMARY:
            errors["summary"] = "error.summary_long"
        if not values["description"]:
            errors["description"] = "error.description"
        if values["priority"] not in PRIORITIES:
            errors["priority"] = "error.choice"
        uploads = await read_uploads(form, "attachments", settings.web.max_upload_size)
        if uploads.error:
            errors["attachments"] = uploads.error
        if errors:
            return portal.page(view, "agent_new.html.j2", 400, types=TYPES, priorities=PRIORITIES,
                               values=values, errors=errors, error="error.form",
                               upload_limit=settings.web.max_upload_size)

        def create() -> str:
            with connection(portal.engine) as conn:
                me = repo.account_by_id(conn, account.id)
                assert me is not None
                # Someone the desk does not know yet gets an account, as by
                # mail: unverified, and the invitation instead of the text.
                reporter = repo.account_by_email(conn, values["reporter"]) or create_account(
                    conn, values["reporter"], "", settings.desk.default_locale, settings)
                done = operations.create_ticket(conn, desk, Actor.of(me, "web"), NewTicket(
                    request_type=RequestType(values["request_type"]), summary=values["summary"],
                    description=values["description"][:MAX_DESCRIPTION],
                    priority=Priority(values["priority"]), attachments=uploads.files, reporter=reporter,
                ))
                return done.ticket.key

        key = await run_in_threadpool(create)
        return portal.redirect(view, f"/agent/tickets/{key}", flash="agent.created")

    return [
        Route("/agent", queue),
        Route("/agent/new", new_for_customer, methods=["GET", "POST"]),
        Route("/agent/tickets/{key}", ticket_page),
        Route("/agent/tickets/{key}/reply", reply, methods=["POST"]),
        Route("/agent/tickets/{key}/update", update, methods=["POST"]),
        Route("/agent/tickets/{key}/share", share, methods=["POST"]),
        Route("/agent/mails/{id}/raw", raw_mail),
    ]


def _pick(value: str | None, allowed: tuple[str, ...]) -> str:
    return value if value in allowed else ""


def _form_values(ticket: dict[str, Any]) -> dict[str, Any]:
    """The update form's values from the ticket as it is."""
    fields = ticket["fields"]
    when = fields.get("first_occurred_at") or ""
    return {
        "version": ticket["version"], "status": ticket["status"], "priority": ticket["priority"],
        "request_type": ticket["request_type"], "assignee": ticket["assignee"] or "",
        "moxis_domain": fields.get("moxis_domain", ""), "first_occurred_at": _local_input(when),
        "browser": _as_list(fields.get("browser")), "hosting": fields.get("hosting", ""),
        "components": _as_list(fields.get("components")),
        "responsible_user": fields.get("responsible_user", ""),
    }


def _form_values_of(form: FormData) -> dict[str, Any]:
    return {name: str(form.get(name) or "") for name in ("version", "status", "priority", "request_type",
                                                            "assignee")}


def _as_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [value] if isinstance(value, str) and value else []


def _local_input(iso_value: str) -> str:
    """A stored ISO time as a datetime-local input's value (its own offset's
    wall clock; the form reads it back in the desk's time zone)."""
    try:
        return dt.datetime.fromisoformat(iso_value).strftime("%Y-%m-%dT%H:%M")
    except ValueError:
        return ""


def _read_update(
    form: FormData, settings: Any, now: dt.datetime
) -> tuple[dict[str, Any], dict[str, str], dict[str, Any] | None]:
    """The update form: its values, errors, and the fields to set (None:
    the form showed no fields)."""
    values: dict[str, Any] = {
        name: str(form.get(name) or "").strip()[:320]
        for name in ("version", "status", "priority", "request_type", "assignee", "moxis_domain",
                     "first_occurred_at", "hosting", "responsible_user")
    }
    values["browser"] = [str(v) for v in form.getlist("browser")][:20]
    values["components"] = [str(v) for v in form.getlist("components")][:20]
    values["assignee"] = normalize_address(values["assignee"]) if values["assignee"] else ""
    errors: dict[str, str] = {}
    for name, allowed in (("status", STATUSES), ("priority", PRIORITIES), ("request_type", TYPES)):
        if values[name] not in allowed:
            errors[name] = "error.choice"
    if not values["version"]:
        errors["version"] = "agent.changed_meanwhile"
    shown = set(str(form.get("fields_shown") or "").split(","))
    if not shown & set(FIELD_NAMES):
        return values, errors, None
    draft = Draft(values=values)
    technical_fields(draft, settings, now)
    errors.update(draft.errors)
    fields: dict[str, Any] = {name: None for name in FIELD_NAMES if name in shown}
    fields.update({k: v for k, v in draft.fields.items() if k in shown})
    if "responsible_user" in shown and values["responsible_user"]:
        responsible = normalize_address(values["responsible_user"])
        if is_email(responsible):
            fields["responsible_user"] = responsible
        else:
            errors["responsible_user"] = "error.email"
    return values, errors, fields
