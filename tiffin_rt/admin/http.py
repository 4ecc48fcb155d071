"""GET /admin and GET /admin/state: a JWT with the admin role on every path, or 401/403."""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from tiffin_rt import metrics
from tiffin_rt.admin.recent import recent_errors
from tiffin_rt.admin.state import snapshot
from tiffin_rt.keys import request_identity
from tiffin_rt.transports.http_auth import json_error

log = logging.getLogger(__name__)

PAGE = Path(__file__).parent / "page.html"
ADMIN_ROLE = "admin"


def admins_only(handler: Handler) -> Handler:
    """The auth middleware has verified the token (401 without one); here the role."""

    async def checked(request: web.Request) -> web.StreamResponse:
        who = request_identity(request)
        if who.role != ADMIN_ROLE:
            metrics.refused("admin", "forbidden")
            log.info("%s %s refused: role %s is not admin", request.method, request.path, who.role)
            return json_error(403, "forbidden", "the admin view needs a token with role admin")
        return await handler(request)

    return checked


async def page(_request: web.Request) -> web.StreamResponse:
    return web.FileResponse(
        PAGE,
        headers={
            "Cache-Control": "no-store",
            # The page's own inline script and its fetches only: nothing from anywhere else.
            "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
            "style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; "
            "frame-ancestors 'none'",
            "Referrer-Policy": "no-referrer",
        },
    )


async def state(request: web.Request) -> web.Response:
    return web.json_response(
        await snapshot(request.app, recent_errors()), headers={"Cache-Control": "no-store"}
    )


def setup_admin(app: web.Application) -> None:
    recent_errors()
    app.router.add_get("/admin", admins_only(page))
    app.router.add_get("/admin/state", admins_only(state))
