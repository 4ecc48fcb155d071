"""What the admin view shows, read from the app as it is now."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from tiffin_rt import __version__
from tiffin_rt.admin.recent import RecentErrors
from tiffin_rt.cluster import CLUSTER_BUS
from tiffin_rt.core.hub import SSE
from tiffin_rt.db.errors import DB_ERRORS
from tiffin_rt.keys import HUB, LISTENER, POOL, ROUTER, SOCKETIO
from tiffin_rt.logs import CLIENT_FAULTS
from tiffin_rt.metrics.collector import LISTENER_LAG, socket_transport, socketio_connections
from tiffin_rt.transports.sse_location import LOCATION

# The page lists at most this many rooms (the fullest first) and members per room.
MAX_ROOMS = 200
MAX_MEMBERS = 50
HEAD_QUERY_SECONDS = 1.0


def _connections(app: web.Application) -> dict[str, Any]:
    sio: Any = app.get(SOCKETIO)
    by_namespace: dict[str, dict[str, int]] = {}
    if sio is not None:
        for namespace in sio.namespace_handlers:
            by_namespace[namespace] = {"websocket": 0, "polling": 0}
        for (transport, namespace), count in socketio_connections(sio).items():
            by_namespace.setdefault(namespace, {})[transport] = count
    sessions = sum(1 for s in sio.eio.sockets.values() if not s.closed) if sio is not None else 0
    hub = app[HUB]
    return {
        "socketio": by_namespace,
        "engineio": sessions,
        "sse": hub.count(SSE),
        "sseLocation": hub.count(LOCATION),
    }


def _member(who: Any, transport: str, namespace: str) -> dict[str, Any]:
    return {
        "user": getattr(who, "user_id", None),
        "role": getattr(who, "role", None),
        "transport": transport,
        "namespace": namespace,
    }


def _rooms(app: web.Application) -> list[dict[str, Any]]:
    """Every room with members on any transport: Socket.IO rooms, and the orders of SSE status
    and rider location streams."""
    rooms: dict[str, list[dict[str, Any]]] = {}
    sio: Any = app.get(SOCKETIO)
    if sio is not None:
        sockets = sio.eio.sockets
        for namespace in sio.namespace_handlers:
            for room, members in sio.manager.hub.rooms(namespace):
                if room is None or any(c.sid == room for c in members):  # a sid's own room
                    continue
                for client in members:
                    socket = sockets.get(client.eio_sid)
                    if socket is None or socket.closed:
                        continue
                    rooms.setdefault(room, []).append(
                        _member(client.who, socket_transport(socket), namespace)
                    )
    for namespace in (SSE, LOCATION):
        for room, clients in app[HUB].rooms(namespace):
            for client in clients:
                rooms.setdefault(str(room), []).append(_member(client.who, "sse", namespace))
    fullest = sorted(rooms.items(), key=lambda item: (-len(item[1]), item[0]))[:MAX_ROOMS]
    return [
        {"room": room, "count": len(members), "members": members[:MAX_MEMBERS]}
        for room, members in fullest
    ]


async def _listener(app: web.Application) -> dict[str, Any]:
    listener = app.get(LISTENER)
    cursor = listener.cursor if listener is not None else None
    head: int | None = None
    pool = app.get(POOL)
    if pool is not None:
        try:
            head = await pool.fetchval(
                "SELECT max(id) FROM tiffin_rt.events", timeout=HEAD_QUERY_SECONDS
            )
        except (*DB_ERRORS, TimeoutError):
            head = None
    lag = app.get(LISTENER_LAG)
    router = app[ROUTER]
    return {
        "connected": listener.connected if listener is not None else False,
        "cursor": cursor,
        "logHead": head,
        "behind": (head - cursor) if head is not None and cursor is not None else None,
        "waitingFor": listener.waiting_for if listener is not None else None,
        "reconnects": listener.reconnects if listener is not None else 0,
        "lastLagSeconds": lag.last_lag if lag is not None else None,
        "meanLagSeconds": (lag.total_seconds / lag.observed) if lag and lag.observed else None,
        "routerBacklog": router.backlog,
        "delivered": router.delivered,
    }


async def snapshot(app: web.Application, errors: RecentErrors) -> dict[str, Any]:
    return {
        "version": __version__,
        "time": time.time(),
        "connections": _connections(app),
        "listener": await _listener(app),
        "rooms": _rooms(app),
        "recentErrors": list(errors.lines)[::-1],
        "clientFaults": CLIENT_FAULTS.describe(),
        "cluster": app[CLUSTER_BUS].describe() if CLUSTER_BUS in app else None,
    }
