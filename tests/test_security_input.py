"""Hostile input: oversized and malformed packets, wrong event shapes, unknown events, CORS."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import Received, make_settings, sio_client, token
from tiffin_rt.config import Settings

NS = "/notifications"


async def raw_socket(
    http: aiohttp.ClientSession, url: str, tok: str
) -> aiohttp.ClientWebSocketResponse:
    """A bare Engine.IO v4 WebSocket connected to /notifications, speaking the wire format."""
    ws = await http.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket")
    opened = await ws.receive_str()
    assert opened.startswith("0{")
    await ws.send_str("40/notifications," + json.dumps({"token": tok}))
    connected = await ws.receive_str()
    assert connected.startswith("40/notifications,{")
    return ws


async def closed_by_server(ws: aiohttp.ClientWebSocketResponse) -> bool:
    """True once the server ends the session: Engine.IO's close packet "1" or a WebSocket close."""
    ends = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    for _ in range(5):
        message = await asyncio.wait_for(ws.receive(), 5)
        if message.type in ends or (message.type == aiohttp.WSMsgType.TEXT and message.data == "1"):
            await ws.close()
            return True
    return False


async def acks_by_id(ws: aiohttp.ClientWebSocketResponse, ids: set[str]) -> dict[str, Any]:
    """Read until every asked-for acknowledgement arrived; other server events are skipped."""
    acks: dict[str, Any] = {}
    prefix = "43/notifications,"
    while set(acks) != ids:
        text = await asyncio.wait_for(ws.receive_str(), 5)
        if text.startswith(prefix):
            body = text[len(prefix) :]
            ack_id = body[: body.index("[")]
            acks[ack_id] = json.loads(body[len(ack_id) :])
    return acks


async def assert_still_delivering(
    url: str, settings: Settings, db: asyncpg.Connection, status: str
) -> None:
    client, received = await sio_client(url, token(settings, "alice"))
    try:
        assert (await client.call("joinRoom", "order-1", namespace=NS))["ok"] is True
        await db.execute("UPDATE orders SET status = $1 WHERE id = 1", status)
        [update] = await received.wait_for("orderStatusUpdate")
        assert update["status"] == status
    finally:
        await client.disconnect()


async def assert_watcher_and_newcomers_served(
    url: str, settings: Settings, db: asyncpg.Connection, watcher: Received
) -> None:
    """After the hostile traffic, a client watching order 1 and a new client still get updates."""
    await db.execute("UPDATE orders SET status = 'confirmed' WHERE id = 1")
    [update] = await watcher.wait_for("orderStatusUpdate")
    assert update["status"] == "confirmed"
    await assert_still_delivering(url, settings, db, "preparing")


async def test_oversized_message_closes_only_that_connection(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(dsn, limits={"max_message_bytes": 2048})
    server = await start_server(settings)
    url = str(server.make_url("")).rstrip("/")
    watcher, to_watcher = await sio_client(url, token(settings, "alice"))
    try:
        await watcher.call("joinRoom", "order-1", namespace=NS)
        async with aiohttp.ClientSession() as http:
            ws = await raw_socket(http, url, token(settings, "bob"))
            await ws.send_str('42/notifications,["joinRoom","' + "x" * 10_000 + '"]')
            closing = await asyncio.wait_for(ws.receive(), 5)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        await assert_watcher_and_newcomers_served(url, settings, db, to_watcher)
    finally:
        await watcher.disconnect()


# Packets python-socketio cannot decode: the sender is disconnected.
MALFORMED = [
    '42/notifications,["joinRoom", "order-1"',  # truncated JSON
    "42/notifications,{}",  # not an event array
    "42/notifications,[]",  # no event name
    "42/notifications,null",
    "4\x00\xff garbage",
    '42/nowhere,["joinRoom","order-1"]',  # a namespace it has not joined
]
# Well-formed but pointless: ignored, the connection stays.
IGNORED = [
    "42/notifications,[42]",  # event name not a string
    '42/notifications,["__class__"]',
    '43/notifications,12["x"]',  # an ack nobody asked for
]


async def test_malformed_packets_never_stop_other_clients(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    watcher, to_watcher = await sio_client(url, token(settings, "alice"))
    try:
        await watcher.call("joinRoom", "order-1", namespace=NS)
        async with aiohttp.ClientSession() as http:
            for packet in [*MALFORMED, "binary"]:
                ws = await raw_socket(http, url, token(settings, "bob"))
                if packet == "binary":
                    await ws.send_bytes(b"\xff\xfe\x00")  # an attachment nobody announced
                else:
                    await ws.send_str(packet)
                assert await closed_by_server(ws), packet
            # No such Engine.IO packet type: Engine.IO drops it and stops reading that socket.
            ws = await raw_socket(http, url, token(settings, "bob"))
            await ws.send_str("9999")
            await ws.close()
            ws = await raw_socket(http, url, token(settings, "bob"))
            for packet in IGNORED:
                await ws.send_str(packet)
            await ws.send_str('42/notifications,8[42, "order-3"]')
            await ws.send_str('42/notifications,7["joinRoom","order-3"]')
            acks = await acks_by_id(ws, {"7", "8"})
            assert acks["8"][0]["error"]["code"] == "unknown_event"
            assert (acks["7"][0]["ok"], acks["7"][0]["room"]) == (True, "order-3")
            await ws.close()
        await assert_watcher_and_newcomers_served(url, settings, db, to_watcher)
    finally:
        await watcher.disconnect()


@pytest.mark.parametrize(
    ("event", "args", "code"),
    [
        ("joinRoom", ("order-1", "extra"), "invalid_payload"),
        ("joinRoom", ({"room": "order-1"},), "invalid_room"),
        ("refreshToken", (["not", "a", "token"],), "invalid_payload"),
        ("dropDatabase", ("order-1",), "unknown_event"),
        ("__init__", (), "unknown_event"),
        ("trigger_event", ("connect",), "unknown_event"),
    ],
)
async def test_every_client_event_is_checked_before_use(
    server: TestServer, url: str, settings: Settings, event: str, args: tuple[Any, ...], code: str
) -> None:
    client, _ = await sio_client(url, token(settings, "alice"))
    try:
        ack = await client.call(event, args, namespace=NS, timeout=5)
        assert ack["ok"] is False
        assert ack["error"]["code"] == code
        assert (await client.call("joinRoom", "order-1", namespace=NS))["ok"] is True
    finally:
        await client.disconnect()


async def test_cross_site_origins_are_refused_unless_listed(
    start_server: StartServer, dsn: str
) -> None:
    settings = make_settings(dsn, server={"cors_origins": ["https://shop.example"]})
    server = await start_server(settings)
    url = str(server.make_url("")).rstrip("/")
    handshake = f"{url}/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as http:
        async with http.get(handshake, headers={"Origin": "https://evil.example"}) as response:
            assert response.status == 400
        # A preflight answers with the CORS headers without opening a polling session.
        async with http.options(handshake, headers={"Origin": "https://shop.example"}) as response:
            assert response.status == 200
            assert response.headers["Access-Control-Allow-Origin"] == "https://shop.example"
            assert response.headers["Access-Control-Allow-Credentials"] == "true"


async def test_engineio_handshakes_per_ip(start_server: StartServer, dsn: str) -> None:
    settings = make_settings(dsn, limits={"handshakes_per_ip": "2/minute"})
    server = await start_server(settings)
    url = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as http:
        first = await raw_socket(http, url, token(settings, "alice"))
        second = await raw_socket(http, url, token(settings, "alice"))
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket")
        assert refused.value.status == 429
        await first.close()
        await second.close()


async def test_same_origin_only_by_default(server: TestServer, url: str) -> None:
    handshake = f"{url}/socket.io/?EIO=4&transport=polling"
    async with (
        aiohttp.ClientSession() as http,
        http.get(handshake, headers={"Origin": "https://evil.example"}) as response,
    ):
        assert response.status == 400
        # WebSockets have no CORS in browsers: the origin check is what stops hijacking.
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(
                f"{url}/socket.io/?EIO=4&transport=websocket",
                headers={"Origin": "https://evil.example"},
            )
