"""Delivery settings and the fast delivery path, seen from real clients."""

from __future__ import annotations

import aiohttp
import orjson

from tests.conftest import StartServer


async def test_ping_interval_comes_from_the_delivery_settings(start_server: StartServer) -> None:
    server = await start_server(delivery={"ping_interval": 7, "ping_timeout": 4})
    url = str(server.make_url("/socket.io/")) + "?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        opening = await ws.receive_str(timeout=5)
    handshake = orjson.loads(opening[1:])
    assert handshake["pingInterval"] == 7000
    assert handshake["pingTimeout"] == 4000
