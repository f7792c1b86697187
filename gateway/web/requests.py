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

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.desk import access, operations
from gateway.desk.operations import Actor, Desk
from gateway.store import numbering, portal_read, repo
from gateway.store.blobs import make_blob_store
from gateway.store.db import connection, read_connection, reading
from gateway.store.repo import AccountRow, TicketRow
from gateway.web.portal import Handler, Portal, View

PAGE_SIZE = 25
STATUSES = ("open", "closed", "all")
SCOPES = ("mine", "org", "all")


def _visible(portal: Portal, account: AccountRow, key: str) -> TicketRow | None:
    with read_connection(portal.engine) as conn:
        ticket = repo.ticket_by_key(conn, key.strip().upper()[:30])
        if ticket is None or numbering.is_placeholder_key(ticket.key):
            return None
        as_agent = account.role == "agent"
        return ticket if access.may_access(conn, account, ticket, as_agent=as_agent) else None


def routes(portal: Portal) -> list[Route]:
    blobs = make_blob_store(portal.settings.storage.blobs)
    desk = Desk(portal.settings, blobs)

    def signed_in(page: Callable[[Request, View, AccountRow], Awaitable[Response]]) -> Handler:
        """The page for a signed-in account; anyone else to the sign-in
        form, and back here after it."""

        async def handler(request: Request) -> Response:
            view = await portal.view(request)
            if view.user is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return portal.redirect(view, f"/login?next={target}")
            return await page(request, view, view.user.account)

        return handler

    @signed_in
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

    @signed_in
    async def detail(request: Request, view: View, account: AccountRow) -> Response:
        ticket = await run_in_threadpool(_visible, portal, account, request.path_params["key"])
        if ticket is None:
            return await portal.not_found(request, Exception())

        def load() -> dict[str, Any]:
            with reading(portal.engine) as session:
                return portal_read.request_page(session, ticket.id)

        data = await run_in_threadpool(load)
        can_resolve = access.customer_may_move(data["status"], "resolved") or account.role == "agent"
        can_reopen = data["status"] == "resolved"
        return portal.page(view, "request.html.j2", ticket=data, can_resolve=can_resolve and
                           data["status"] not in ("resolved", "closed"), can_reopen=can_reopen)

    @signed_in
    async def set_status(request: Request, view: View, account: AccountRow) -> Response:
        ticket = await run_in_threadpool(_visible, portal, account, request.path_params["key"])
        if ticket is None:
            return await portal.not_found(request, Exception())
        form = await portal.form(view)
        target = f"/requests/{ticket.key}"
        if form is None:
            return portal.redirect(view, target)
        wanted = str(form.get("status", ""))
        if wanted not in ("resolved", "waiting_for_support"):
            return portal.redirect(view, target)

        def change() -> str:
            with connection(portal.engine) as conn:
                current = repo.ticket_by_id(conn, ticket.id)
                assert current is not None
                try:
                    operations.transition(conn, desk, Actor.of(account, "web"), current, wanted)
                except operations.Forbidden:
                    return "error.not_allowed"
                return "request.resolved" if wanted == "resolved" else "request.reopened"

        flash = await run_in_threadpool(change)
        return portal.redirect(view, target, flash=flash)

    @signed_in
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
        Route("/requests/{key}/status", set_status, methods=["POST"]),
        Route("/attachments/{id}", download),
    ]


_PLAIN_TYPES = frozenset({
    "image/png", "image/jpeg", "image/gif", "application/pdf", "text/plain", "application/zip",
    "application/msword", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.ms-excel", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
})
