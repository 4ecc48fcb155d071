"""HTTP authentication: aiohttp-jwt's middleware, fed from a header, a query token or a cookie."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp.web_exceptions import NotAppKeyWarning
from aiohttp_jwt import JWTMiddleware

from tiffin_rt.auth import AuthError, TokenVerifier
from tiffin_rt.keys import IDENTITY_KEY

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_CLAIMS_KEY = "tiffin_rt.claims"

# Routes that need no token: health, the Socket.IO endpoint (it authenticates on connect),
# the demo page and its static files.
PUBLIC_PATHS = (r"^/healthz$", r"^/readyz$", r"^/socket\.io/", r"^/$", r"^/static/", r"^/favicon")

# aiohttp-jwt logs every bad token with a traceback; a flood of them must not flood the logs.
logging.getLogger("aiohttp_jwt").setLevel(logging.CRITICAL)
# aiohttp-jwt stores the claims under a string key, which aiohttp 3.14 warns about.
warnings.filterwarnings("ignore", category=NotAppKeyWarning, module="aiohttp_jwt")


def bearer_token(request: web.Request, cookie_name: str) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    query = request.query.get("access_token")
    if query:
        return query
    return request.cookies.get(cookie_name) or None


def json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def auth_middlewares(verifier: TokenVerifier, cookie_name: str) -> list[Middleware]:
    """Errors as JSON, then aiohttp-jwt's verification, then the claims as an Identity."""

    async def token_getter(request: web.Request) -> str | None:
        return bearer_token(request, cookie_name)

    jwt_middleware = JWTMiddleware(
        verifier.key,
        request_property=_CLAIMS_KEY,
        credentials_required=True,
        whitelist=PUBLIC_PATHS,
        token_getter=token_getter,
        algorithms=verifier.algorithms,
    )

    @web.middleware
    async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPUnauthorized as exc:
            reason = exc.reason or "unauthorized"
            code = "token_expired" if "expired" in reason.lower() else "unauthorized"
            return json_error(401, code, reason)

    @web.middleware
    async def identity(request: web.Request, handler: Handler) -> web.StreamResponse:
        claims = request.get(_CLAIMS_KEY)
        if claims is not None:
            token = bearer_token(request, cookie_name)
            try:
                # aiohttp-jwt checked signature and expiry; this adds audience, issuer,
                # leeway and the role rules shared with Socket.IO.
                request[IDENTITY_KEY] = verifier.verify(token)
            except AuthError as exc:
                return json_error(401, exc.code, exc.message)
        return await handler(request)

    return [errors_as_json, jwt_middleware, identity]
