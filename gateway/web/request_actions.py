"""What a customer does on a request's page (SPEC §6), each through the
desk's operations with source ``web``, as by mail: a comment with files
(``POST /requests/{KEY}/comments``), sharing (``POST /requests/{KEY}/share``)
and marking it resolved or reopening it (``POST /requests/{KEY}/status``).

A ticket the viewer may not see is 404 here too. A rejected form comes back
as the request page with the message next to its field and the text kept."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.desk import operations
from gateway.desk.operations import NewComment
from gateway.domain import Refused, normalize_address
from gateway.store.repo import AccountRow
from gateway.web.portal import Portal, View, signed_in
from gateway.web.requests import show_request, visible
from gateway.web.uploads import read_reply

MAX_COMMENT = 50_000


def routes(portal: Portal) -> list[Route]:
    @signed_in(portal)
    async def comment(request: Request, view: View, account: AccountRow) -> Response:
        ticket = await run_in_threadpool(visible, portal, account, request.path_params["key"])
        if ticket is None:
            return await portal.not_found(request, Exception())
        form = await portal.form(view)
        if form is None:
            return await show_request(portal, view, account, ticket, 400, errors={"body": "error.csrf"})
        reply = await read_reply(form, portal.settings.web.max_upload_size, MAX_COMMENT)
        body = reply.body
        if reply.errors:
            return await show_request(portal, view, account, ticket, 400, errors=reply.errors,
                                      values={"body": body[:MAX_COMMENT * 2]})
        new = NewComment(body=body, attachments=reply.files)
        try:
            await run_in_threadpool(portal.operate, account.id, ticket.id, operations.add_comment, new)
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
        if isinstance(remove, str) and remove:
            op, who, flash = operations.unshare, normalize_address(remove[:320]), "request.unshared"
        elif share_with == "":
            op, who, flash = operations.unshare, operations.SHARE_ORG, "request.unshared"
        else:
            who = share_with if share_with == operations.SHARE_ORG else normalize_address(share_with)
            op, flash = operations.share, "request.shared_now"
        try:
            done = await run_in_threadpool(portal.operate, account.id, ticket.id, op, who)
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
            await run_in_threadpool(portal.operate, account.id, ticket.id, operations.transition, wanted)
        except Refused:
            return portal.redirect(view, target, flash="error.not_allowed")
        flash = "request.resolved" if wanted == "resolved" else "request.reopened"
        return portal.redirect(view, target, flash=flash)

    return [
        Route("/requests/{key}/comments", comment, methods=["POST"]),
        Route("/requests/{key}/share", share, methods=["POST"]),
        Route("/requests/{key}/status", set_status, methods=["POST"]),
    ]
