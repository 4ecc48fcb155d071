"""The floor: the least a Python server on uvloop can do per delivery, for comparison.

Not a Socket.IO server: it answers the load clients' handshake, namespace connect and joinRoom
with fixed packets, then, for each NOTIFY of the trigger the peers use, builds one WebSocket
frame and hands it to each room member's transport with one `transport.write` (one write
system call each, as nothing is queued). No acks, no pings, no rooms API, no backpressure:
what is left is the send system call and a Python loop over the room. Used by the spaced and
burst scenarios when `--servers` names `floor`.

  python bench/peer_floor.py PORT DSN PING_INTERVAL
"""

from __future__ import annotations

import asyncio
import resource
import struct
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import uvloop
from aiohttp import WSMsgType, web

NAMESPACE = "/notifications"
OPEN = b'0{"sid":"floor","upgrades":[],"pingInterval":%d,"pingTimeout":%d,"maxPayload":1000000}'


def ws_frame(payload: bytes) -> bytes:
    """One unmasked, uncompressed text frame (FIN set)."""
    size = len(payload)
    if size < 126:
        return struct.pack("!BB", 0x81, size) + payload
    if size < 65536:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


def main() -> None:
    port, dsn, ping_interval = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rooms: dict[str, set[asyncio.Transport]] = defaultdict(set)
    opening = OPEN % (int(ping_interval * 1000), int(ping_interval * 1000))

    async def socket_io(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, autoping=True)
        await ws.prepare(request)
        transport = request.transport
        await ws.send_str(opening.decode())
        joined: list[str] = []
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    break
                data: str = msg.data
                if data.startswith(f"40{NAMESPACE},"):
                    await ws.send_str(f'40{NAMESPACE},{{"sid":"floor"}}')
                elif data.startswith(f"42{NAMESPACE},"):
                    body = data[len(NAMESPACE) + 3 :]
                    ack_id = body[: body.index("[")]
                    event = orjson.loads(body[len(ack_id) :])
                    if event[0] == "joinRoom" and transport is not None:
                        rooms[event[1]].add(transport)
                        joined.append(event[1])
                    reply = orjson.dumps([{"ok": True, "room": event[1]}]).decode()
                    await ws.send_str(f"43{NAMESPACE},{ack_id}{reply}")
        finally:
            for room in joined:
                rooms[room].discard(transport)
        return ws

    def write_all(room: str, frame: bytes) -> None:
        for transport in rooms.get(room, ()):
            transport.write(frame)

    def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        order_id = orjson.loads(payload)["orderId"]
        packet = f'42{NAMESPACE},["orderStatusUpdate",{payload}]'.encode()
        write_all(f"order-{order_id}", ws_frame(packet))

    async def burst(request: web.Request) -> web.Response:
        room = request.query["room"]
        for i in range(int(request.query["n"])):
            body = orjson.dumps(
                ["notification", {"id": i, "title": "Kitchen update", "room": room}]
            )
            write_all(room, ws_frame(f"42{NAMESPACE},".encode() + body))
        return web.json_response({"ok": True})

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def listen(_app: web.Application) -> AsyncIterator[None]:
        conn = await asyncpg.connect(dsn)
        await conn.add_listener("order_status", on_notify)  # type: ignore[arg-type]
        yield
        await conn.close()

    app = web.Application()
    app.cleanup_ctx.append(listen)
    app.router.add_get("/socket.io/", socket_io)
    app.router.add_post("/bench/burst", burst)
    app.router.add_get("/healthz", healthz)
    web.run_app(
        app, host="127.0.0.1", port=port, access_log=None, print=None, loop=uvloop.new_event_loop()
    )


if __name__ == "__main__":
    main()
