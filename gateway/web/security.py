"""The portal's defences that are not about one page: the secret key, CSRF
tokens, the client's address behind trusted proxies, and the headers every
response carries (a Content-Security-Policy without inline script, no
framing, no sniffing)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
from pathlib import Path

from sqlalchemy import Engine
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.settings import Settings
from gateway.store import web
from gateway.store.db import connection

SECRET_FILE = "secret_key"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


def secret_key(settings: Settings, engine: Engine | None = None) -> bytes:
    """``security.secret_key``; else, with ``engine``, the key all
    instances on the database share (the first one's, see
    ``store.web.shared_secret``); else the one in the state directory."""
    if settings.security.secret_key:
        return settings.security.secret_key.encode("utf-8")
    local = _state_dir_key(settings)
    if engine is None:
        return local
    with connection(engine) as conn:
        return web.shared_secret(conn, "web", local.decode("utf-8")).encode("utf-8")


def _state_dir_key(settings: Settings) -> bytes:
    """The key in the state directory, made on first start (0600, written
    atomically so that two processes starting at once end up with the same
    key)."""
    path = Path(settings.storage.state_dir) / SECRET_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{SECRET_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(48) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)  # fails if another process was first: then use its key
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return path.read_bytes().strip()


class Csrf:
    """Tokens for forms. Signed in, the session's token (stored with the
    session) is the one; signed out, a random value in a cookie and the
    same value in the form, signed with the secret key so that a cookie
    planted by a neighbouring site cannot be paired with a form of its own."""

    COOKIE = "gw_csrf"

    def __init__(self, key: bytes) -> None:
        self.key = key

    def new_anonymous(self) -> str:
        nonce = secrets.token_urlsafe(24)
        return f"{nonce}.{self._sign(nonce)}"

    def anonymous_valid(self, token: str) -> bool:
        nonce, _, sig = token.partition(".")
        return bool(nonce) and hmac.compare_digest(sig, self._sign(nonce))

    def _sign(self, nonce: str) -> str:
        return hmac.new(self.key, nonce.encode("utf-8"), hashlib.sha256).hexdigest()[:32]

    @staticmethod
    def same(a: str | None, b: str | None) -> bool:
        return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


def client_address(request: Request, trusted_proxies: tuple[str, ...]) -> str:
    """The client's IP: the peer, or, when the peer is a trusted proxy, the
    last address in X-Forwarded-For that is not one of them."""
    peer = request.client.host if request.client else ""
    if not trusted_proxies or not _in(peer, trusted_proxies):
        return peer
    forwarded = request.headers.get("x-forwarded-for", "")
    for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
        if not _in(hop, trusted_proxies):
            return hop
    return peer


def forwarded_https(request: Request, trusted_proxies: tuple[str, ...]) -> bool:
    peer = request.client.host if request.client else ""
    return _in(peer, trusted_proxies) and request.headers.get("x-forwarded-proto", "") == "https"


def _in(address: str, networks: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for net in networks:
        try:
            if ip in ipaddress.ip_network(net, strict=False):
                return True
        except ValueError:
            continue
    return False


class SecurityHeaders:
    """ASGI middleware: the headers above on every response, and no
    caching of pages (they show a signed-in person's data; the stylesheets
    may be cached)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers += [h for h in HEADERS if h[0] not in names]
                if b"cache-control" not in names and not scope["path"].startswith("/static/"):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
