"""GET /healthz (the process is up) and GET /readyz (database and listener)."""

from __future__ import annotations

import asyncio

import asyncpg
from aiohttp import web

from tiffin_rt import __version__
from tiffin_rt.keys import LISTENER, ORDER_STREAMS, POOL, ROUTER, SOCKETIO


async def healthz(request: web.Request) -> web.Response:
    """Liveness, plus counters an operator looks at first."""
    app = request.app
    listener = app.get(LISTENER)
    sio = app.get(SOCKETIO)
    return web.json_response(
        {
            "status": "ok",
            "version": __version__,
            "connections": {
                "socketio": len(getattr(getattr(sio, "eio", None), "sockets", {})),
                "sse": len(app[ORDER_STREAMS]),
            },
            "events": {
                "delivered": app[ROUTER].delivered,
                "cursor": listener.cursor if listener is not None else None,
                "listenerReconnects": listener.reconnects if listener is not None else 0,
                "malformedPayloads": listener.malformed_payloads if listener is not None else 0,
            },
        }
    )


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    checks: dict[str, str] = {}
    pool = app.get(POOL)
    if pool is None:
        checks["database"] = "starting"
    else:
        try:
            await asyncio.wait_for(pool.fetchval("SELECT 1"), timeout=2)
            checks["database"] = "ok"
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
    listener = app.get(LISTENER)
    checks["listener"] = "ok" if listener is not None and listener.connected else "disconnected"
    ready = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )


def setup_health(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
