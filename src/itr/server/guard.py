"""Refusing requests that a hostile web page makes a browser send: cross-site requests (CSRF) and
DNS rebinding.

A page on another site can make the user's browser POST a form or DELETE to ``127.0.0.1:8000``
(multipart and urlencoded POSTs need no CORS preflight), and a name the attacker controls can be
re-pointed at 127.0.0.1 so that the browser treats the server as the attacker's own origin (DNS
rebinding). Two checks stop both, before any handler runs:

- ``Host`` must be a name this server answers to: an IP address (rebinding needs a DNS name),
  ``localhost``, this machine's host name, or one given in ``allowed_hosts`` (``*``: any).
- A state-changing request (POST, PUT, PATCH, DELETE) that a browser marks as coming from a page
  (``Origin``, or ``Sec-Fetch-Site``) must come from the server's own origin or one in
  ``allowed_origins``. Clients that are not browsers (curl, scripts) send neither header and pass.

Starlette's TrustedHostMiddleware checks names only, and CORS middleware decides what a page may
*read*, not what it may *send*; neither stops a form POST, hence this small middleware.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, kw_only=True)
class RequestGuard:
    """Which ``Host`` names and which page origins the server accepts (see the module docstring).

    Args:
        allowed_hosts: extra names the server is reached by (``search.example.org``), ``*`` for any.
        allowed_origins: other origins whose pages may change the index (``https://app.example.org``),
            ``*`` for any.
    """

    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()

    def host_names(self) -> frozenset[str]:
        names = {"localhost", *(h.lower() for h in self.allowed_hosts)}
        try:  # not getfqdn: a reverse DNS look-up can hang for seconds on an offline machine
            host = socket.gethostname().lower()
            names |= {host, host.split(".")[0]}
        except OSError:
            pass
        return frozenset(n for n in names if n)

    def problem(self, method: str, headers: dict[str, str], names: frozenset[str]) -> tuple[int, str] | None:
        """(status, reason) for a request to refuse, or None."""
        host = headers.get("host", "")
        if "*" not in names and not _host_allowed(host, names):
            return 400, (f"Host '{host[:100]}' is not a name this server answers to (a DNS-rebinding guard); "
                         "start it with --allow-host NAME to accept that name")
        if method in SAFE_METHODS:
            return None
        origin = headers.get("origin")
        if origin is not None:
            if "*" in self.allowed_origins or origin in self.allowed_origins:
                return None
            if origin != "null" and _same_origin(origin, host):
                return None
            return 403, (f"cross-site {method} from origin '{origin[:100]}' refused; start the server with "
                         "--allow-origin ORIGIN to let pages of that origin change the index")
        if headers.get("sec-fetch-site") == "cross-site":
            return 403, f"cross-site {method} refused (Sec-Fetch-Site: cross-site)"
        return None


def _split_host(host: str) -> str:
    """The name part of a Host header value (``[::1]:8000`` -> ``::1``, ``a.org:80`` -> ``a.org``)."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _host_allowed(host: str, names: frozenset[str]) -> bool:
    name = _split_host(host.strip()).lower().rstrip(".")
    if not name:
        return False
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return name in names or name.endswith(".localhost")


def _same_origin(origin: str, host: str) -> bool:
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.strip().lower()


class GuardMiddleware:
    """ASGI middleware applying a RequestGuard to every HTTP request."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], guard: RequestGuard) -> None:
        self.app = app
        self.guard = guard
        self.names = guard.host_names()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refused = self.guard.problem(scope.get("method", "GET").upper(), headers, self.names)
        if refused is None:
            await self.app(scope, receive, send)
            return
        status, reason = refused
        body = json.dumps({"detail": reason}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
