"""Socket.IO token expiry: tokenExpiring, refreshToken (same user only), disconnect at expiry."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import jwt
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import TEST_SECRET, eventually, make_settings, sio_client, sse_events, token
from tiffin_rt.keys import HUB
from tiffin_rt.transports.sse_location import LOCATION

NS = "/notifications"
EVENTS = ("tokenExpiring", "error", "orderStatusUpdate")


async def short_lived_server(start_server: StartServer, dsn: str) -> tuple[TestServer, str]:
    server = await start_server(make_settings(dsn, auth={"expiry_warning": 2}))
    return server, str(server.make_url("")).rstrip("/")


def expiry_of(tok: str) -> float:
    exp: int = jwt.decode(tok, TEST_SECRET, algorithms=["HS256"])["exp"]
    return float(exp)


async def test_refresh_keeps_the_connection_past_the_old_expiry(
    start_server: StartServer, dsn: str
) -> None:
    _, url = await short_lived_server(start_server, dsn)
    settings = make_settings(dsn)
    first = token(settings, "alice", ttl=3)
    client, received = await sio_client(url, first, events=EVENTS)
    try:
        [warning] = await received.wait_for("tokenExpiring", timeout=3)
        assert 0 <= warning["expiresIn"] <= 3
        assert warning["expiresAt"].endswith("Z")
        fresh = token(settings, "alice", ttl=600)
        ack = await client.call("refreshToken", {"token": fresh}, namespace=NS)
        assert ack["ok"] is True
        assert ack["expiresAt"].endswith("Z")
        await asyncio.sleep(max(0.0, expiry_of(first) - time.time()) + 0.7)
        assert client.connected
        assert received.of("error") == []
        assert (await client.call("joinRoom", "order-1", namespace=NS))["ok"] is True
    finally:
        await client.disconnect()


async def test_refresh_for_another_user_is_refused_and_the_connection_ends_at_expiry(
    start_server: StartServer, dsn: str
) -> None:
    _, url = await short_lived_server(start_server, dsn)
    settings = make_settings(dsn)
    client, received = await sio_client(url, token(settings, "alice", ttl=2), events=EVENTS)
    disconnected = asyncio.Event()
    client.on("disconnect", lambda *_: disconnected.set(), namespace=NS)
    try:
        for other in (token(settings, "bob"), token(settings, "alice", "admin")):
            ack = await client.call("refreshToken", {"token": other}, namespace=NS)
            assert ack["error"]["code"] == "forbidden"
        bad = jwt.encode({"sub": "alice", "exp": 1}, TEST_SECRET, algorithm="HS256")
        ack = await client.call("refreshToken", {"token": bad}, namespace=NS)
        assert ack["error"] == {"code": "unauthorized", "message": "token expired"}
        ack = await client.call("refreshToken", {"tok": "x"}, namespace=NS)
        assert ack["error"]["code"] == "invalid_payload"
        [ended] = await received.wait_for("error", timeout=4)
        assert ended["code"] == "token_expired"
        await asyncio.wait_for(disconnected.wait(), 3)
        assert not client.connected
    finally:
        await client.disconnect()


async def test_sse_stream_ends_when_its_token_expires(start_server: StartServer, dsn: str) -> None:
    _, url = await short_lived_server(start_server, dsn)
    query = {"access_token": token(make_settings(dsn), "alice", ttl=2)}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/api/notifications/orders/1/status", params=query) as response,
    ):
        assert response.status == 200
        events = sse_events(response)
        assert (await anext(events)).json()["status"] == "pending"
        end = await asyncio.wait_for(anext(events), 4)
        assert end.event == "end"
        assert end.json()["code"] == "token_expired"
        assert [e async for e in events] == []


async def test_a_location_stream_ends_when_its_token_expires(
    start_server: StartServer, dsn: str
) -> None:
    server, url = await short_lived_server(start_server, dsn)
    query = {"access_token": token(make_settings(dsn), "alice", ttl=2)}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/api/notifications/orders/1/location", params=query) as response,
    ):
        assert response.status == 200
        events = sse_events(response)
        end = await asyncio.wait_for(anext(events), 4)
        assert (end.event, end.json()["code"]) == ("end", "token_expired")
        assert [e async for e in events] == []
    await eventually(lambda: server.app[HUB].count(LOCATION) == 0)
