"""GET /healthz (the process is up) and GET /readyz (database, schema, triggers, listener)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from tiffin_rt import __version__
from tiffin_rt.cluster import CLUSTER_BUS
from tiffin_rt.core.hub import SSE
from tiffin_rt.db import readiness
from tiffin_rt.db.errors import DB_ERRORS
from tiffin_rt.drain import DRAIN
from tiffin_rt.keys import HUB, LISTENER, POOL, ROUTER, SETTINGS, SOCKETIO
from tiffin_rt.kitchen_wiring import kitchen_health
from tiffin_rt.push.keys import PUSH
from tiffin_rt.tracking_wiring import tracking_health


def _open_sessions(sio: object) -> int:
    """Engine.IO sessions not closed: a closed one stays in Engine.IO's table until its sweep
    (within ping_timeout) or the client's next request, but is no connection any more."""
    sockets = getattr(getattr(sio, "eio", None), "sockets", {})
    return sum(1 for socket in sockets.values() if not socket.closed)


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
                "socketio": _open_sessions(sio),
                "sse": app[HUB].count(SSE),
            },
            "events": {
                "delivered": app[ROUTER].delivered,
                "cursor": listener.cursor if listener is not None else None,
                "listenerReconnects": listener.reconnects if listener is not None else 0,
                "malformedPayloads": listener.malformed_payloads if listener is not None else 0,
                "lateWatched": listener.late_watched if listener is not None else 0,
                "lateDelivered": listener.late_delivered if listener is not None else 0,
                "lateAbandoned": listener.late_abandoned if listener is not None else 0,
            },
            "cluster": app[CLUSTER_BUS].describe() if CLUSTER_BUS in app else None,
            "push": app[PUSH].describe() if PUSH in app else None,
            "tracking": tracking_health(app),
            "kitchen": kitchen_health(app),
        }
    )


# /readyz answers within this, whatever the database does: a probe still running then counts
# as unreachable and finishes in the background (its query has the same bound, and the pool
# drops a connection that does not answer).
PROBE_SECONDS = 2.0
_probes: set[asyncio.Task[readiness.Readiness]] = set()


async def _database_checks(app: web.Application) -> dict[str, str]:
    pool = app.get(POOL)
    if pool is None:
        return {"database": "starting"}
    probe = asyncio.create_task(
        readiness.check(
            pool,
            app[SETTINGS].orders,
            query_seconds=PROBE_SECONDS,
            payments=app[SETTINGS].payments,
        ),
        name="tiffin_rt-readyz",
    )
    _probes.add(probe)
    probe.add_done_callback(_probe_done)
    done, _ = await asyncio.wait({probe}, timeout=PROBE_SECONDS)
    if not done:
        return {"database": "unreachable: TimeoutError"}
    exc = probe.exception()
    if isinstance(exc, DB_ERRORS):
        return {"database": f"unreachable: {type(exc).__name__}"}
    if exc is not None:
        raise exc
    found = probe.result()
    return {"database": "ok", "schema": found.schema, "triggers": found.triggers}


def _probe_done(probe: asyncio.Task[readiness.Readiness]) -> None:
    _probes.discard(probe)
    if not probe.cancelled():
        probe.exception()  # retrieved: a late failure was already reported as unreachable


async def readyz(request: web.Request) -> web.Response:
    """Ready when the database answers, this role may use the schema, the orders table's
    triggers (and the payments table's, when configured) are in place and enabled, and the
    listener is connected."""
    app = request.app
    checks = await _database_checks(app)
    listener = app.get(LISTENER)
    checks["listener"] = "ok" if listener is not None and listener.connected else "disconnected"
    drain = app.get(DRAIN)
    if drain is not None and drain.started:
        checks["node"] = "draining"  # SIGTERM: a load balancer should send nothing more here
    ready = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )


def setup_health(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
