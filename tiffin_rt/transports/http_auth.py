"""HTTP authentication: aiohttp-jwt's middleware, fed from a header, a query token or a cookie."""

from __future__ import annotations

import functools
import logging
import re
import secrets
import time
import warnings
from collections.abc import Awaitable, Callable

import jwt
from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp.web_exceptions import NotAppKeyWarning
from aiohttp_jwt import JWTMiddleware

from tiffin_rt import metrics
from tiffin_rt.auth import AuthError, Identity, TokenVerifier
from tiffin_rt.core.errors import ClientError, http_status
from tiffin_rt.db.errors import DB_ERRORS, INPUT_ERRORS, input_error_name
from tiffin_rt.keys import IDENTITY_KEY
from tiffin_rt.ratelimit import RateLimits
from tiffin_rt.transports.origins import OriginPolicy

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = logging.getLogger(__name__)

_CLAIMS_KEY = "tiffin_rt.claims"
_PASS_KEY = web.RequestKey("guard_pass", str)

# Routes that need no token: health, the Socket.IO endpoint (it authenticates on connect),
# the demo page, its static files and its token minting (which exists only with demo.enabled);
# /metrics checks metrics.token itself (a scraper has no JWT); the payment webhook checks the
# provider's signature.
PUBLIC_PATHS = (
    r"^/healthz$",
    r"^/metrics$",
    r"^/readyz$",
    r"^/socket\.io/",
    r"^/$",
    r"^/static/",
    r"^/favicon",
    r"^/api/demo/(users|token)$",
    r"^/api/webhooks/payments$",
)
_PUBLIC = re.compile("|".join(f"(?:{p})" for p in PUBLIC_PATHS))

# aiohttp-jwt logs every bad token with a traceback; a flood of them must not flood the logs.
logging.getLogger("aiohttp_jwt").setLevel(logging.CRITICAL)
# aiohttp-jwt stores the claims under a string key, which aiohttp 3.14 warns about.
warnings.filterwarnings("ignore", category=NotAppKeyWarning, module="aiohttp_jwt")


class GuardPass:
    """What aiohttp-jwt checks: a pass signed with a per-process key once TokenVerifier
    accepted the client's token.

    Fed the client's token, aiohttp-jwt would apply PyJWT's own rules (no leeway; `exp` as
    anything int() takes, such as "1700000000") and could answer differently from Socket.IO
    and SSE. Fed this pass, HTTP has the one verifier's result, and a route that somehow
    escaped that verifier still finds no pass.
    """

    ALGORITHM = "HS256"
    TTL = 60

    def __init__(self) -> None:
        self.key = secrets.token_urlsafe(48)

    def issue(self, who: Identity) -> str:
        claims = {"sub": who.user_id, "role": who.role, "exp": int(time.time()) + self.TTL}
        return jwt.encode(claims, self.key, algorithm=self.ALGORITHM)


# Headers that are URLs or origins: ASCII by their RFCs (6454, 9110), whatever a client sends.
_ASCII_HEADERS = ("Origin", "Referer")


def is_public(request: web.Request) -> bool:
    return request.method == "OPTIONS" or _PUBLIC.match(request.path) is not None


def is_engineio_handshake(request: web.Request) -> bool:
    """A new Engine.IO session (later requests of a session carry its `sid`)."""
    return request.path.startswith("/socket.io/") and "sid" not in request.query


def _header_token(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def bearer_token(request: web.Request, cookie_name: str) -> str | None:
    header = _header_token(request)
    if header:
        return header
    query = request.query.get("access_token")
    if query:
        return query
    return request.cookies.get(cookie_name) or None


def by_cookie(request: web.Request) -> bool:
    """Authenticated by the cookie alone: what a cross-site form or image can send."""
    return _header_token(request) is None and not request.query.get("access_token")


# Status -> the error code answered for aiohttp's own refusals (404, 405, 413, ...).
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    429: "rate_limited",
}
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def json_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


def refusal(exc: ClientError) -> web.Response:
    """The one HTTP answer to a refusal: the JSON error shape, with its code's status."""
    return json_error(http_status(exc.code), exc.code, exc.message)


def answers_refusals(*, unavailable: str) -> Callable[[Handler], Handler]:
    """A route's refusals in the JSON error shape: a ClientError with its code's status, data
    the database refuses 400 `invalid_payload`, and a database that fails 503 `unavailable`
    (`unavailable` says what), each logged without the input it quotes."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def answer(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except ClientError as exc:
                return refusal(exc)
            except INPUT_ERRORS as exc:
                log.warning(
                    "%s %s: the database refused the input (%s)",
                    request.method,
                    request.path,
                    input_error_name(exc),
                )
                return json_error(
                    400, "invalid_payload", "the request holds data that cannot be stored"
                )
            except DB_ERRORS as exc:
                log.warning(
                    "%s %s failed on the database: %s: %s",
                    request.method,
                    request.path,
                    type(exc).__name__,
                    exc,
                )
                return json_error(503, "unavailable", unavailable)

        return answer

    return wrap


def unauthorized(code: str, message: str) -> web.Response:
    description = message.replace('"', "'")
    challenge = f'Bearer error="invalid_token", error_description="{description}"'
    if code == "unauthorized" and message == "a token is required":
        challenge = "Bearer"
    return json_error(401, code, message, {"WWW-Authenticate": challenge})


def auth_middlewares(
    verifier: TokenVerifier,
    cookie_name: str,
    limits: RateLimits | None = None,
    origins: OriginPolicy | None = None,
) -> list[Middleware]:
    """Connection rate limit, then our verification (precise reasons, audience, issuer, leeway,
    claim types, role rules shared with Socket.IO and SSE), then aiohttp-jwt as the guard no
    route can skip, fed by that verification (see GuardPass)."""

    guard_pass = GuardPass()

    async def token_getter(request: web.Request) -> str | None:
        return request.get(_PASS_KEY)

    jwt_middleware = JWTMiddleware(
        guard_pass.key,
        request_property=_CLAIMS_KEY,
        credentials_required=True,
        whitelist=PUBLIC_PATHS,
        token_getter=token_getter,
        algorithms=[GuardPass.ALGORITHM],
    )

    @web.middleware
    async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every HTTP error in the JSON error shape, aiohttp's own (404, 405, 413) included."""
        for name in _ASCII_HEADERS:
            value = request.headers.get(name)
            if value is not None and not value.isascii():
                # Bytes that are not UTF-8 reach us as lone surrogates, which no answer that
                # quotes them (aiohttp-cors's 403, Engine.IO's 400) could even encode.
                return json_error(400, "bad_request", f"the {name} header must be ASCII")
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400 or exc.content_type == "application/json":
                raise  # a redirect, or a handler's own JSON answer
            if exc.status == 401:
                return unauthorized("unauthorized", exc.reason or "unauthorized")
            kept = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
            code = _CODES.get(exc.status, "error")
            message = (
                exc.text if exc.text and exc.text != f"{exc.status}: {exc.reason}" else exc.reason
            )
            return json_error(exc.status, code, message, kept)

    @web.middleware
    async def connection_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        if limits is not None:
            address = request.remote or "-"
            if is_engineio_handshake(request):
                allowed = limits.allow_handshake(address)
            else:
                allowed = is_public(request) or limits.allow_connect(address)
            if not allowed:
                metrics.refused("http", "rate_limited")
                return json_error(429, "rate_limited", "too many connection attempts; slow down")
        return await handler(request)

    @web.middleware
    async def identity(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_public(request):
            return await handler(request)
        try:
            who = verifier.verify(bearer_token(request, cookie_name))
        except AuthError as exc:
            metrics.refused("http", exc.code)
            return unauthorized(exc.code, exc.message)
        if (
            origins is not None
            and request.method not in _SAFE_METHODS
            and by_cookie(request)
            and not origins.allows_request(request)
        ):
            log.warning("cross-site %s %s with the cookie refused", request.method, request.path)
            return json_error(
                403, "forbidden", "cross-site request refused: send the token as a Bearer header"
            )
        request[IDENTITY_KEY] = who
        request[_PASS_KEY] = guard_pass.issue(who)
        if limits is None:
            return await handler(request)
        # An open SSE stream is a connection like a socket: it counts until it ends.
        if not await limits.open_user_connection(who.user_id):
            metrics.refused("http", "connections_per_user")
            return json_error(429, "rate_limited", "too many open connections for this user")
        try:
            return await handler(request)
        finally:
            await limits.close_user_connection(who.user_id)

    return [errors_as_json, connection_limit, identity, jwt_middleware]
