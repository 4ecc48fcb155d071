"""The stock peer: python-socketio AsyncServer on aiohttp, a plain emit loop, aiohttp-sse,
and an asyncpg LISTEN on a trigger that NOTIFYs JSON. Nothing tuned, nothing replayed.

  python bench/peer_pysio.py PORT DSN PING_INTERVAL
"""

from __future__ import annotations

import asyncio
import resource
import sys
from collections import defaultdict
from typing import Any

import asyncpg
import orjson
import socketio
import uvloop
from aiohttp import web
from aiohttp_sse import sse_response

NAMESPACE = "/notifications"


def main() -> None:
    port, dsn, ping_interval = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        cors_allowed_origins=[],
        ping_interval=ping_interval,
        ping_timeout=ping_interval,
    )
    app = web.Application()
    sio.attach(app)
    streams: dict[str, set[asyncio.Queue[str]]] = defaultdict(set)

    @sio.on("connect", namespace=NAMESPACE)  # type: ignore[misc]
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        return None

    @sio.on("joinRoom", namespace=NAMESPACE)  # type: ignore[misc]
    async def join_room(sid: str, room: str) -> dict[str, Any]:
        await sio.enter_room(sid, room, namespace=NAMESPACE)
        return {"ok": True, "room": room}

    async def burst(request: web.Request) -> web.Response:
        room = request.query["room"]
        for i in range(int(request.query["n"])):
            await sio.emit(
                "notification", bench_notification(i, room), to=room, namespace=NAMESPACE
            )
        return web.json_response({"ok": True})

    async def order_status(request: web.Request) -> web.StreamResponse:
        queue: asyncio.Queue[str] = asyncio.Queue()
        order_id = request.match_info["id"]
        streams[order_id].add(queue)
        try:
            async with sse_response(request) as stream:
                while stream.is_connected():
                    await stream.send(await queue.get())
        finally:
            streams[order_id].discard(queue)
        return stream

    def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        message = orjson.loads(payload)
        order_id = message["orderId"]
        for queue in streams.get(order_id, ()):
            queue.put_nowait(payload)
        asyncio.get_running_loop().create_task(
            sio.emit("orderStatusUpdate", message, to=f"order-{order_id}", namespace=NAMESPACE)
        )

    async def listen(app: web.Application) -> Any:
        conn = await asyncpg.connect(dsn)
        await conn.add_listener("order_status", on_notify)
        yield
        await conn.close()

    app.cleanup_ctx.append(listen)
    app.router.add_post("/bench/burst", burst)
    app.router.add_get("/api/notifications/orders/{id}/status", order_status)
    app.router.add_get("/healthz", lambda _r: web.json_response({"status": "ok"}))
    web.run_app(
        app, host="127.0.0.1", port=port, access_log=None, print=None, loop=uvloop.new_event_loop()
    )


def bench_notification(i: int, room: str) -> dict[str, Any]:
    return {
        "id": i,
        "type": "bench",
        "title": "Kitchen update",
        "body": f"event {i}",
        "data": {"seq": i},
        "createdAt": "2026-11-25T20:00:00.000Z",
        "eventId": i,
        "room": room,
    }


if __name__ == "__main__":
    main()
