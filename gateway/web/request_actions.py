"""What a customer does on a request's page (SPEC §6), each through the
desk's operations with source ``web``, as by mail: a comment with files
(``POST /requests/{KEY}/comments``), sharing (``POST /requests/{KEY}/share``)
and marking it resolved or reopening it (``POST /requests/{KEY}/status``).

A ticket the viewer may not see is 404 here too. A rejected form comes back
as the request page with the message next to its field and the text kept."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.desk import operations
from gateway.desk.operations import Actor, NewComment
from gateway.domain import ParsedAttachment, Refused, normalize_address
from gateway.store import repo
from gateway.store.db import connection
from gateway.store.repo import AccountRow, TicketRow
from gateway.web.portal import Portal, View, signed_in
from gateway.web.requests import show_request, visible
from gateway.web.uploads import read_uploads

MAX_COMMENT = 50_000


def routes(portal: Portal) -> list[Route]:
    desk = portal.desk

    def run(account: AccountRow, ticket: TicketRow, op: Any, *args: Any) -> operations.Done:
        """``op`` on the ticket as it is now, in one transaction."""
        with connection(portal.engine) as conn:
            me = repo.account_by_id(conn, account.id)
            current = repo.ticket_by_id(conn, ticket.id)
            assert me is not None and current is not None
            done: operations.Done = op(conn, desk, Actor.of(me, "web"), current, *args)
            return done

    @signed_in(portal)
    async def comment(request: Request, view: View, account: AccountRow) -> Response:
        ticket = await run_in_threadpool(visible, portal, account, request.path_params["key"])
        if ticket is None:
            return await portal.not_found(request, Exception())
        form = await portal.form(view)
        if form is None:
            return await show_request(portal, view, account, ticket, 400, errors={"body": "error.csrf"})
        raw = form.get("body")
        body = raw.replace("\r\n", "\n").strip("\n").rstrip() if isinstance(raw, str) else ""
        uploads = await read_uploads(form, "attachments", portal.settings.web.max_upload_size)
        errors: dict[str, str] = {}
        if uploads.error:
            errors["attachments"] = uploads.error
        if not body.strip() and not uploads.files:
            errors["body"] = "error.comment_empty"
        elif len(body) > MAX_COMMENT:
            errors["body"] = "error.description_long"
        if errors:
            return await show_request(portal, view, account, ticket, 400, errors=errors,
                                      values={"body": body[:MAX_COMMENT * 2]})
        files: list[ParsedAttachment] = uploads.files
        new = NewComment(body=body, attachments=files)
        try:
            await run_in_threadpool(run, account, ticket, operations.add_comment, new)
        except Refused:
            # A closed request takes no more comments from customers.
            return await show_request(portal, view, account, ticket, 400, errors={"body": "error.closed"},
                                      values={"body": body})
        return portal.redirect(view, f"/requests/{ticket.key}#latest", flash="request.commented")

    @signed_in(portal)
    async def share(request: Request, view: View, account: AccountRow) -> Response:
        ticket = await run_in_threadpool(visible, portal, account, request.path_params["key"])
        if ticket is None:
            return await portal.not_found(request, Exception())
        form = await portal.form(view)
        target = f"/requests/{ticket.key}"
        if form is None:
            return portal.redirect(view, target)
        raw = form.get("share_with")
        remove = form.get("remove")
        if raw is None and not remove:  # nothing chosen (a person form's placeholder)
            return portal.redirect(view, target)
        share_with = raw.strip()[:320] if isinstance(raw, str) else ""
        try:
            if isinstance(remove, str) and remove:
                done = await run_in_threadpool(
                    run, account, ticket, operations.unshare, normalize_address(remove[:320]))
                flash = "request.unshared"
            elif share_with == "":
                done = await run_in_threadpool(run, account, ticket, operations.unshare, operations.SHARE_ORG)
                flash = "request.unshared"
            else:
                person = share_with if share_with == operations.SHARE_ORG else normalize_address(share_with)
                done = await run_in_threadpool(run, account, ticket, operations.share, person)
                flash = "request.shared_now"
        except operations.Forbidden:  # a participant, not the reporter: may see, not share
            return portal.redirect(view, target, flash="error.not_allowed")
        except Refused:  # not a person of the reporter's organization
            errors = {"share_with": "error.colleague"}
            return await show_request(portal, view, account, ticket, 400, errors=errors,
                                      values={"share_with": share_with})
        return portal.redirect(view, target, flash=flash if done.changed else None)

    @signed_in(portal)
    async def set_status(request: Request, view: View, account: AccountRow) -> Response:
        ticket = await run_in_threadpool(visible, portal, account, request.path_params["key"])
        if ticket is None:
            return await portal.not_found(request, Exception())
        form = await portal.form(view)
        target = f"/requests/{ticket.key}"
        if form is None:
            return portal.redirect(view, target)
        wanted = str(form.get("status", ""))
        if wanted not in ("resolved", "waiting_for_support"):
            return portal.redirect(view, target)
        try:
            await run_in_threadpool(run, account, ticket, operations.transition, wanted)
        except Refused:
            return portal.redirect(view, target, flash="error.not_allowed")
        flash = "request.resolved" if wanted == "resolved" else "request.reopened"
        return portal.redirect(view, target, flash=flash)

    return [
        Route("/requests/{key}/comments", comment, methods=["POST"]),
        Route("/requests/{key}/share", share, methods=["POST"]),
        Route("/requests/{key}/status", set_status, methods=["POST"]),
    ]
