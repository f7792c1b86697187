"""``/``: signed out, the way in (sign in or register); signed in, the
dashboard of the XiTrust guide: the three request categories with their
descriptions, each leading to its form, the account's recent requests, and
what a good request contains."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from gateway.store import read
from gateway.store.db import reading
from gateway.web.portal import Handler, Portal

RECENT = 8


def index(portal: Portal) -> Handler:
    async def page(request: Request) -> Response:
        view = await portal.view(request)
        if view.user is None:
            return portal.page(view, "index.html.j2", tickets=[])
        account = view.user.account
        tickets = await run_in_threadpool(_recent, portal, account.id, account.organization_id)
        return portal.page(view, "index.html.j2", tickets=tickets)

    return page


def _recent(portal: Portal, account_id: int, organization_id: int | None) -> list[dict[str, Any]]:
    """The requests the account may see, latest activity first."""
    with reading(portal.engine) as session:
        return read.tickets_visible_to(session, account_id, organization_id, limit=RECENT)
