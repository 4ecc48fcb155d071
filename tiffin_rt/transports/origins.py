"""Which browser origins may use the server: its own, and `server.cors_origins`.

One rule for Socket.IO (Engine.IO's origin check), for REST and SSE (aiohttp-cors answers
preflights and adds the headers), and for state changes authenticated by the cookie (a
cross-site form can send the cookie but cannot make its Origin one of these).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import aiohttp_cors
from aiohttp import web
from yarl import URL

# Headers a cross-site client may send, and the ones it may read, on REST and SSE.
ALLOW_HEADERS = ("Authorization", "Content-Type", "Last-Event-ID")
EXPOSE_HEADERS = ("WWW-Authenticate",)
API_PREFIX = "/api/"


def _first(value: str) -> str:
    return value.split(",")[0].strip()


def own_origins(
    scheme: str, host: str | None, forwarded_proto: str | None, forwarded_host: str | None
) -> list[str]:
    """The server's own origin as the request reached it, and as a proxy in front says it is
    (Engine.IO's same-origin rule)."""
    if not host:
        return []
    origins = [f"{scheme}://{host}"]
    if forwarded_proto or forwarded_host:
        proto = _first(forwarded_proto) if forwarded_proto else scheme
        origins.append(f"{proto}://{_first(forwarded_host) if forwarded_host else host}")
    return origins


class OriginPolicy:
    """The server's own origin is always allowed; listing other origins adds to it."""

    def __init__(self, listed: Sequence[str]) -> None:
        self.listed = tuple(origin.rstrip("/") for origin in listed)

    def allows(self, origin: str, own: Iterable[str]) -> bool:
        return origin in self.listed or origin in own

    def allows_engineio(self, origin: str | None, environ: Mapping[str, Any]) -> bool:
        """python-engineio's `cors_allowed_origins` callable: (origin, WSGI-style environ)."""
        own = own_origins(
            str(environ.get("wsgi.url_scheme", "http")),
            environ.get("HTTP_HOST"),
            environ.get("HTTP_X_FORWARDED_PROTO"),
            environ.get("HTTP_X_FORWARDED_HOST"),
        )
        return origin is not None and self.allows(origin, own)

    def allows_request(self, request: web.Request) -> bool:
        """The request's Origin (or, without one, its Referer's origin) is allowed."""
        origin = request.headers.get("Origin")
        if origin is None:
            referer = request.headers.get("Referer")
            if not referer:
                return False
            try:
                url = URL(referer)
                origin = f"{url.scheme}://{url.raw_authority}" if url.absolute else ""
            except ValueError:  # a Referer no browser sends (a bad port, bad brackets)
                return False
        own = own_origins(
            request.scheme,
            request.headers.get("Host"),
            request.headers.get("X-Forwarded-Proto"),
            request.headers.get("X-Forwarded-Host"),
        )
        return self.allows(origin, own)


def setup_cors(app: web.Application, policy: OriginPolicy) -> None:
    """CORS on the REST and SSE routes for the listed origins; call after all routes exist.

    Socket.IO answers its own preflights (Engine.IO, with the same policy).
    """
    if not policy.listed:
        return
    options = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
        allow_credentials=True,
        allow_headers=ALLOW_HEADERS,
        expose_headers=EXPOSE_HEADERS,
        allow_methods=("GET", "POST"),
        max_age=600,
    )
    cors = aiohttp_cors.setup(app, defaults=dict.fromkeys(policy.listed, options))
    for route in list(app.router.routes()):
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or ""
        if path.startswith(API_PREFIX) and route.method != "OPTIONS":
            cors.add(route)
