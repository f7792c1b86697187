"""``/``: signed out, the way in (sign in or register); signed in, a
greeting and the requests the account may see (the next issue makes this
the dashboard with the three request categories)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from gateway.store import read
from gateway.store.db import reading
from gateway.web.portal import Handler, Portal


def index(portal: Portal) -> Handler:
    async def page(request: Request) -> Response:
        view = await portal.view(request)
        if view.user is None:
            return portal.page(view, "index.html.j2", tickets=[])
        account = view.user.account
        tickets = await run_in_threadpool(_tickets, portal, account.id, account.organization_id)
        return portal.page(view, "index.html.j2", tickets=tickets)

    return page


def _tickets(portal: Portal, account_id: int, organization_id: int | None) -> list[dict[str, object]]:
    with reading(portal.engine) as session:
        return read.tickets_visible_to(session, account_id, organization_id, limit=50)
