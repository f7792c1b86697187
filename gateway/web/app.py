"""The portal as an ASGI application: its routes and error pages, on one
``Portal`` (``portal.py``)."""

from __future__ import annotations

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.outbound.templates import template_dir
from gateway.settings import Settings
from gateway.store.db import make_engine
from gateway.web import accounts, agent, home, new_request, request_actions, requests
from gateway.web.portal import Portal
from gateway.web.security import SecurityHeaders


def make_app(settings: Settings, engine: Engine | None = None) -> Starlette:
    """The portal as an ASGI application."""
    portal = Portal(settings, engine or make_engine(settings.database.url, settings.database.busy_timeout_ms))
    routes = [
        Route("/", home.index(portal)),
        *accounts.routes(portal),
        *new_request.routes(portal),
        *requests.routes(portal),
        *request_actions.routes(portal),
        *agent.routes(portal),
        Route("/static/theme.css", portal.theme),
        Mount("/static", app=StaticFiles(directory=str(template_dir("web") / "static")), name="static"),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={HTTPException: portal.not_found, 404: portal.not_found, 500: portal.server_error},
    )
