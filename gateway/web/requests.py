"""The customer's requests on the web (SPEC §6 "Anfragen"): ``/requests``
(open, closed or all; mine, my organization's or all; a key or words;
newest first, paged), ``/requests/{KEY}`` (the request, its fields and its
public conversation; mark it resolved or reopen it) and
``/attachments/{id}``.

A viewer sees a ticket when the mail rule lets them post on it (reporter,
participant, member of the organization it is shared with, agent); anything
else is 404, never 403, for tickets and files alike. Changes go through the
desk's operations, as by mail."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.desk import access
from gateway.store import numbering, portal_read, repo
from gateway.store.db import read_connection, reading
from gateway.store.repo import AccountRow, TicketRow
from gateway.web.portal import Portal, View, signed_in

PAGE_SIZE = 25
STATUSES = ("open", "closed", "all")
SCOPES = ("mine", "org", "all")


def visible(portal: Portal, account: AccountRow, key: str) -> TicketRow | None:
    with read_connection(portal.engine) as conn:
        ticket = repo.ticket_by_key(conn, key.strip().upper()[:30])
        if ticket is None or numbering.is_placeholder_key(ticket.key):
            return None
        as_agent = account.role == "agent"
        return ticket if access.may_access(conn, account, ticket, as_agent=as_agent) else None


async def show_request(
    portal: Portal,
    view: View,
    account: AccountRow,
    ticket: TicketRow,
    status: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
) -> Response:
    """The request page (also with a rejected comment or share form: its
    message next to the field, what was typed kept)."""

    def load() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        with reading(portal.engine) as session:
            data = portal_read.request_page(session, ticket.id)
            people: list[dict[str, Any]] = []
            if ticket.reporter_id == account.id or account.role == "agent":
                reporter_org = data["reporter_organization_id"]
                people = portal_read.colleagues(session, reporter_org, ticket.reporter_id)
            return data, people

    data, colleagues = await run_in_threadpool(load)
    shown = {p["email"] for p in data["participants"]}
    return portal.page(
        view, "request.html.j2", status, ticket=data,
        can_resolve=data["status"] not in ("resolved", "closed"),
        can_reopen=data["status"] == "resolved",
        can_comment=data["status"] != "closed" or account.role == "agent",
        can_share=ticket.reporter_id == account.id or account.role == "agent",
        share_choices=[p for p in colleagues if p["email"] not in shown],
        upload_limit=portal.settings.web.max_upload_size,
        errors=errors or {}, values=values or {}, error="error.form" if errors else None,
    )


def routes(portal: Portal) -> list[Route]:
    desk = portal.desk
    blobs = desk.blobs

    @signed_in(portal)
    async def listing(request: Request, view: View, account: AccountRow) -> Response:
        params = request.query_params
        status = params.get("status") or ""
        status = status if status in STATUSES else "open"
        scope = params.get("scope") or ""
        scope = scope if scope in SCOPES else "all"
        q = (params.get("q") or "")[:200]
        page = int(params["page"]) if (params.get("page") or "").isdigit() else 1
        page = max(1, min(page, 10_000))

        def load() -> tuple[list[dict[str, Any]], int]:
            with reading(portal.engine) as session:
                return portal_read.customer_requests(
                    session, account.id, account.organization_id, status=status, scope=scope, q=q,
                    limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE,
                )

        rows, total = await run_in_threadpool(load)
        pages = max(1, -(-total // PAGE_SIZE))
        return portal.page(view, "requests.html.j2", tickets=rows, total=total, page=page, pages=pages,
                           filters={"status": status, "scope": scope, "q": q},
                           has_org=account.organization_id is not None)

    @signed_in(portal)
    async def detail(request: Request, view: View, account: AccountRow) -> Response:
        ticket = await run_in_threadpool(visible, portal, account, request.path_params["key"])
        if ticket is None:
            return await portal.not_found(request, Exception())
        return await show_request(portal, view, account, ticket)

    @signed_in(portal)
    async def download(request: Request, view: View, account: AccountRow) -> Response:
        raw_id = request.path_params["id"]
        if not raw_id.isdigit() or len(raw_id) > 12:
            return await portal.not_found(request, Exception())

        def load() -> tuple[bytes, str, str] | None:
            with reading(portal.engine) as session:
                found = portal_read.attachment(session, int(raw_id))
                if found is None or not found[1]:
                    return None
                att = found[0]
                ticket = repo.ticket_by_id(session.connection(), att.ticket_id)
                if ticket is None or not access.may_access(
                    session.connection(), account, ticket, as_agent=account.role == "agent"
                ):
                    return None
                try:
                    data = blobs.get(session.connection(), att.sha256)
                except KeyError:
                    return None
                return data, att.filename, att.content_type

        found = await run_in_threadpool(load)
        if found is None:
            return await portal.not_found(request, Exception())
        data, filename, content_type = found
        safe = "".join(c if c.isalnum() or c in "._- " else "_" for c in filename)[:120] or "attachment"
        from urllib.parse import quote

        disposition = f"attachment; filename=\"{safe}\"; filename*=UTF-8''{quote(filename[:200])}"
        headers = {
            "content-disposition": disposition,
            "x-content-type-options": "nosniff",
            "cache-control": "private, no-store",
        }
        # Never rendered by the browser: served as a download, with its type
        # only when it is a plain one (no HTML, no SVG, no script).
        plain = content_type.split(";")[0].strip() in _PLAIN_TYPES
        media = content_type if plain else "application/octet-stream"
        return portal.finish(view, Response(data, media_type=media, headers=headers))

    return [
        Route("/requests", listing),
        Route("/requests/{key}", detail),
        Route("/attachments/{id}", download),
    ]


_PLAIN_TYPES = frozenset({
    "image/png", "image/jpeg", "image/gif", "application/pdf", "text/plain", "application/zip",
    "application/msword", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.ms-excel", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
})
