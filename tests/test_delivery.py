"""Delivery settings and the fast delivery path, seen from real clients."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import orjson
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import SseEvent, eventually, marker_arrived, sio_client, sse_events, token
from tiffin_rt.config import Settings
from tiffin_rt.keys import SOCKETIO


async def test_ping_interval_comes_from_the_delivery_settings(start_server: StartServer) -> None:
    server = await start_server(delivery={"ping_interval": 7, "ping_timeout": 4})
    url = str(server.make_url("/socket.io/")) + "?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        opening = await ws.receive_str(timeout=5)
    handshake = orjson.loads(opening[1:])
    assert handshake["pingInterval"] == 7000
    assert handshake["pingTimeout"] == 4000


async def test_a_burst_in_one_transaction_arrives_whole_and_in_order(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    first, on_first = await sio_client(url, token(settings, "alice"))
    second, on_second = await sio_client(url, token(settings, "alice"))
    try:
        await db.execute(
            "SELECT tiffin_rt.notify_user('alice', 'tick', 'Tick ' || i, 'n', "
            "jsonb_build_object('n', i)) FROM generate_series(1, 200) i"
        )
        for received in (on_first, on_second):
            notes = await received.wait_for("notification", 200)
            assert [n["data"]["n"] for n in notes] == list(range(1, 201))
            ids = [n["eventId"] for n in notes]
            assert ids == sorted(ids)
            assert len(set(ids)) == 200
        await marker_arrived(db, "alice", on_first, on_second)
        for received in (on_first, on_second):
            assert len(received.of("notification")) == 200
    finally:
        await first.disconnect()
        await second.disconnect()


async def test_compression_is_off_unless_configured(
    start_server: StartServer, settings: Settings
) -> None:
    for configured in (False, True):
        server = await start_server(delivery={"websocket_compression": configured})
        url = str(server.make_url("/socket.io/")) + "?EIO=4&transport=websocket"
        # compress=15 offers permessage-deflate, as a browser does.
        async with aiohttp.ClientSession() as session, session.ws_connect(url, compress=15) as ws:
            negotiated = ws.compress
            opening = await ws.receive_str(timeout=5)
            auth = orjson.dumps({"token": token(settings, "alice")}).decode()
            await ws.send_str("40/notifications," + auth)
            reply = await ws.receive_str(timeout=5)
        assert opening.startswith("0")
        assert reply.startswith("40/notifications,")
        assert bool(negotiated) is configured


async def test_connections_answer_pings_and_stay_connected(
    start_server: StartServer, settings: Settings
) -> None:
    server = await start_server(delivery={"ping_interval": 1, "ping_timeout": 1})
    url = str(server.make_url("")).rstrip("/")
    client, received = await sio_client(url, token(settings, "alice"))
    try:
        await asyncio.sleep(3.5)  # three ping rounds, each answered by the client
        assert client.connected
        sio = server.app[SOCKETIO]
        await sio.emit("notification", {"id": 1}, to="user-alice", namespace="/notifications")
        assert (await received.wait_for("notification")) == [{"id": 1}]
    finally:
        await client.disconnect()


async def test_a_client_that_stops_reading_is_disconnected_past_the_limit(
    start_server: StartServer, settings: Settings
) -> None:
    server = await start_server(delivery={"max_buffered_kib": 4096})
    sio = server.app[SOCKETIO]
    stalled = await StalledClient.connect(server, token(settings, "alice"))
    healthy, on_healthy = await sio_client(
        str(server.make_url("")).rstrip("/"), token(settings, "alice")
    )
    try:
        big = "x" * 100_000
        for i in range(200):  # 20 MB: far more than the socket buffers and the limit hold
            await sio.emit(
                "notification", {"id": i, "body": big}, to="user-alice", namespace="/notifications"
            )
            await asyncio.sleep(0.005)
        await eventually(lambda: len(sio.eio.sockets) == 1, timeout=10)
        # The healthy connection of the same user got everything, in order.
        notes = await on_healthy.wait_for("notification", 200, timeout=20)
        assert [n["id"] for n in notes] == list(range(200))
        # The stalled one reads what was already on the wire, then the connection ends.
        assert await stalled.drain() < 200 * 100_000
    finally:
        await healthy.disconnect()
        stalled.close()


async def test_a_client_behind_but_under_the_limit_gets_every_status_in_order(
    start_server: StartServer, settings: Settings
) -> None:
    server = await start_server(delivery={"max_buffered_kib": 100_000})
    sio = server.app[SOCKETIO]
    stalled = await StalledClient.connect(server, token(settings, "alice"))
    try:
        big = "x" * 100_000
        for i in range(100):  # 10 MB of filler puts the client behind
            await sio.emit(
                "notification", {"id": i, "body": big}, to="user-alice", namespace="/notifications"
            )
        await asyncio.sleep(0.2)  # written: the socket buffers are full, the rest waits
        sent = []
        for status in ("confirmed", "preparing", "ready"):
            for order in ("7", "8"):
                sent.append((order, status))
                await sio.emit(
                    "orderStatusUpdate",
                    {"orderId": order, "status": status},
                    to="user-alice",
                    namespace="/notifications",
                )
                await asyncio.sleep(0)
        await sio.emit("notification", {"id": "last"}, to="user-alice", namespace="/notifications")
        messages = await stalled.read_events(until='"last"')
        statuses = [
            (m[1]["orderId"], m[1]["status"]) for m in messages if m[0] == "orderStatusUpdate"
        ]
        notes = [m[1]["id"] for m in messages if m[0] == "notification"]
        assert notes == [*range(100), "last"]
        assert statuses == sent  # none merged away while it was behind
    finally:
        stalled.close()


class StalledClient:
    """A raw Engine.IO WebSocket client with a tiny receive buffer that stops reading."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, server: TestServer, tok: str) -> StalledClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        # A small limit: the reader stops taking data from the socket once 16 KiB wait unread.
        reader, writer = await asyncio.open_connection(sock=sock, limit=8192)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        await reader.readuntil(b"\r\n\r\n")
        client = cls(reader, writer)
        assert (await client.read_frame()).startswith("0")
        client.send_text("40/notifications," + orjson.dumps({"token": tok}).decode())
        assert (await client.read_frame()).startswith("40/notifications,")
        return client

    def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert len(payload) < 65536
        if len(payload) < 126:
            header = bytes([0x81, 0x80 | len(payload)])
        else:
            header = bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big")
        self.writer.write(header + mask + masked)

    async def read_frame(self) -> str:
        head = await self.reader.readexactly(2)
        size = head[1] & 0x7F
        if size == 126:
            size = int.from_bytes(await self.reader.readexactly(2), "big")
        elif size == 127:
            size = int.from_bytes(await self.reader.readexactly(8), "big")
        data = await self.reader.readexactly(size)
        if head[0] & 0x0F == 0x8:
            raise EOFError("close frame")
        return data.decode()

    async def read_events(self, until: str) -> list[list[Any]]:
        events = []
        while True:
            text = await asyncio.wait_for(self.read_frame(), 10)
            if text == "2":
                self.send_text("3")
                continue
            if text.startswith("42/notifications,"):
                events.append(orjson.loads(text[len("42/notifications,") :]))
                if until in text:
                    return events

    async def drain(self) -> int:
        """Read until the server ends the connection; the number of bytes read."""
        total = 0
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while chunk := await asyncio.wait_for(self.reader.read(1 << 20), 10):
                total += len(chunk)
        return total

    def close(self) -> None:
        self.writer.close()


async def test_an_emit_then_a_disconnect_arrive_in_that_order(
    start_server: StartServer, settings: Settings
) -> None:
    server = await start_server()
    sio = server.app[SOCKETIO]
    client, received = await sio_client(
        str(server.make_url("")).rstrip("/"), token(settings, "alice")
    )
    gone = asyncio.Event()
    client.on("disconnect", lambda *_: gone.set(), namespace="/notifications")
    try:
        [sid] = [s for s, _ in sio.manager.get_participants("/notifications", "user-alice")]
        await sio.emit("notification", {"id": "bye"}, to=sid, namespace="/notifications")
        await sio.disconnect(sid, namespace="/notifications")
        await asyncio.wait_for(gone.wait(), 5)
        assert received.of("notification") == [{"id": "bye"}]
    finally:
        await client.disconnect()


async def test_an_sse_client_that_stops_reading_is_dropped_and_resumes_without_a_gap(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    server = await start_server(delivery={"max_buffered_kib": 1024})
    url = str(server.make_url("")).rstrip("/")
    path = "/api/notifications/orders/1/status"
    auth = {"Authorization": f"Bearer {token(settings, 'alice')}"}
    # A raw client with a tiny receive buffer that reads the response head, then stops.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=8192)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
        f"Authorization: {auth['Authorization']}\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    statuses = [f"s{n:03d}-" + "x" * 100_000 for n in range(100)]  # 10 MB in all
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(url + path, headers=auth) as healthy,
        ):
            live = sse_events(healthy)
            await anext(live)  # the current status
            reading = asyncio.create_task(_take(live, len(statuses)))
            for status in statuses:
                await db.execute("UPDATE orders SET status = $1 WHERE id = 1", status)
                await asyncio.sleep(0.005)
            got = await asyncio.wait_for(reading, 20)
            # A reader that keeps up gets every status, in order.
            assert [e.json()["status"] for e in got] == statuses
        # The stalled one is cut off: what it can still read ends before the last status.
        stalled = b""
        with contextlib.suppress(ConnectionError):
            while chunk := await asyncio.wait_for(reader.read(1 << 20), 10):
                stalled += chunk
    finally:
        writer.close()
    complete = [e for e in stalled.replace(b"\r\n", b"\n").split(b"\n\n")[:-1] if b"id:" in e]
    assert 0 < len(complete) < len(statuses) + 1
    last_id = next(
        line[3:].strip().decode() for line in complete[-1].split(b"\n") if line.startswith(b"id:")
    )
    # Reconnecting as an EventSource does, with Last-Event-ID: the rest, none twice.
    seen = [s for s in statuses if f'"{s[:5]}'.encode() in b"".join(complete)]
    async with (
        aiohttp.ClientSession() as http,
        http.get(url + path, headers={**auth, "Last-Event-ID": last_id}) as again,
    ):
        stream = sse_events(again)
        rest = [await asyncio.wait_for(anext(stream), 10) for _ in statuses[len(seen) :]]
    assert seen + [e.json()["status"] for e in rest] == statuses


async def _take(stream: AsyncIterator[SseEvent], count: int) -> list[SseEvent]:
    return [await anext(stream) for _ in range(count)]
