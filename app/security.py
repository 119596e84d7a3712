"""Host and cross-site checks for every request, auth on or off (pure ASGI middleware).

The loopback default has no auth, so a web page the user visits must not reach it: a Host
that is not one of ours (DNS rebinding: attacker.example resolving to 127.0.0.1) gets 400, and
a state-changing request that a browser marks as cross-site (Origin of another site, or
Sec-Fetch-Site: cross-site) gets 403. Clients that send neither header (curl, the CLI, httpx
scripts) are not browsers and pass; bearer tokens guard them when auth is on.
"""
from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings, get_settings

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
WILDCARD_BINDS = ("0.0.0.0", "::", "[::]", "")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A random value per browser that anonymous CSRF tokens are bound to (app/auth/deps.py sets
# scope["state"]["csrf_cookie"] when it made one; SiteGuard sends it).
CSRF_COOKIE = "tunedeck_csrf"
NO_PAGES = ("/api/", "/static/", "/healthz")  # never render a CSRF token: no cookie to send


def allowed_hosts(settings: Settings) -> frozenset[str] | None:
    """The Host names (no port) this server answers besides the address a request arrived
    on (see SiteGuard); None when TUNEDECK_ALLOWED_HOSTS is *.

    Loopback names are always allowed: a rebinding page cannot claim them. Other names (the
    machine's own included) only from TUNEDECK_HOST or TUNEDECK_ALLOWED_HOSTS, never "any".
    """
    configured = settings.allowed_host_list
    if "*" in configured:
        return None
    names = {*LOOPBACK_NAMES, *map(_as_host_header, configured)}
    bind = settings.host.strip().lower()
    if bind not in WILDCARD_BINDS:
        names.add(_as_host_header(bind))
    return frozenset(name.rstrip(".") for name in names)


def _as_host_header(name: str) -> str:
    """A configured name as host_name() reads it from a Host header: IPv6 in brackets."""
    if name.count(":") > 1 and not name.startswith("["):
        return f"[{name}]"
    return host_name(name)


def host_name(host: str) -> str:
    """The name in a Host header, lower case, without the port: example.com, [::1]."""
    host = host.lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.partition(":")[0].rstrip(".")


class SiteGuard:
    """400 for a Host not in allowed_hosts(); 403 for a cross-site unsafe request; sets the
    CSRF cookie a request's handler made for a browser that had none."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self.hosts = allowed_hosts(get_settings())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = origin = fetch_site = cookie = b""
            for name, value in scope["headers"]:
                if name == b"host":
                    host = value
                elif name == b"origin":
                    origin = value
                elif name == b"sec-fetch-site":
                    fetch_site = value
                elif name == b"cookie":
                    cookie = value
            problem = self.problem(scope["method"], host, origin, fetch_site,
                                   scope.get("server"))
            if problem is not None:
                await _refuse(send, *problem)
                return
            if b"tunedeck_csrf=" not in cookie and not scope["path"].startswith(NO_PAGES):
                send = _sending_csrf_cookie(scope, send)
        await self.app(scope, receive, send)

    def problem(self, method: str, host: bytes, origin: bytes, fetch_site: bytes,
                server: tuple[str, int | None] | None) -> tuple[int, str] | None:
        """(status, detail) when the request must be refused, else None.

        The address the connection reached (ASGI's server) is allowed too: an IP literal of
        this machine cannot be rebound, so `serve --host 0.0.0.0` answers to each address of
        the box, but to no name that is not configured.
        """
        name = host_name(host.decode("latin-1"))
        if self.hosts is not None and name not in self.hosts and name != _address(server):
            return 400, (f"Host {name[:100]!r} is not one this server answers to: "
                         "add it to TUNEDECK_ALLOWED_HOSTS (comma-separated)")
        if method not in UNSAFE_METHODS:
            return None
        if fetch_site == b"cross-site" or (origin and not _same_origin(origin, host)):
            return 403, "cross-site request refused: send it from this server's own pages"
        return None


def _address(server: tuple[str, int | None] | None) -> str:
    """The server's address from the ASGI scope, written as a Host header would name it."""
    if not server or not server[0]:
        return ""
    address = server[0].lower().removeprefix("::ffff:")  # IPv4 on a dual-stack socket
    return f"[{address}]" if ":" in address else address


def _same_origin(origin: bytes, host: bytes) -> bool:
    """Whether Origin (scheme://host[:port]) names the Host the request was sent to."""
    _, sep, netloc = origin.lower().partition(b"://")
    return bool(sep) and netloc == host.lower()


def _sending_csrf_cookie(scope: Scope, send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            value = scope.get("state", {}).get("csrf_cookie")
            if value:
                secure = "; Secure" if scope.get("scheme") == "https" else ""
                cookie = f"{CSRF_COOKIE}={value}; HttpOnly; Path=/; SameSite=Lax{secure}"
                message["headers"] = [*message.get("headers", []),
                                      (b"set-cookie", cookie.encode())]
        await send(message)

    return wrapped


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
