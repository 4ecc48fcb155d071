"""Rate limits: connection attempts per IP, events per connection and type, users' connections."""

from __future__ import annotations

import asyncio

import aiohttp
import asyncpg
import socketio

from tests.conftest import StartServer
from tests.helpers import connect_refusal, make_settings, sio_client, token

NS = "/notifications"


async def test_event_flood_gets_rate_limited_then_disconnected_while_others_are_served(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(
        dsn, limits={"events_per_connection": "5/minute", "abuse_strikes": "3/minute"}
    )
    server = await start_server(settings)
    url = str(server.make_url("")).rstrip("/")
    abuser, to_abuser = await sio_client(url, token(settings, "alice"), events=("error",))
    bystander, to_bystander = await sio_client(url, token(settings, "alice"))
    disconnected = asyncio.Event()
    abuser.on("disconnect", lambda *_: disconnected.set(), namespace=NS)
    try:
        acks = [await abuser.call("joinRoom", "order-1", namespace=NS) for _ in range(6)]
        assert all(ack["ok"] for ack in acks[:5])
        assert acks[5]["error"]["code"] == "rate_limited"
        # Each event name has its own budget.
        assert (await abuser.call("leaveRoom", "order-1", namespace=NS))["ok"] is True
        for _ in range(3):
            ack = await abuser.call("joinRoom", "order-1", namespace=NS)
            assert ack["error"]["code"] == "rate_limited"
        [reason] = await to_abuser.wait_for("error")
        assert reason["code"] == "rate_limited"
        await asyncio.wait_for(disconnected.wait(), 3)
        # The other connection of the same user is unaffected.
        assert (await bystander.call("joinRoom", "order-1", namespace=NS))["ok"] is True
        await db.execute("UPDATE orders SET status = 'confirmed' WHERE id = 1")
        [update] = await to_bystander.wait_for("orderStatusUpdate")
        assert update["status"] == "confirmed"
    finally:
        await abuser.disconnect()
        await bystander.disconnect()


async def test_connection_attempts_per_ip(start_server: StartServer, dsn: str) -> None:
    settings = make_settings(dsn, limits={"connect_per_ip": "3/minute"})
    server = await start_server(settings)
    url = str(server.make_url("")).rstrip("/")
    clients = [(await sio_client(url, token(settings, f"user{i}")))[0] for i in range(3)]
    try:
        refusal = await connect_refusal(url, {"token": token(settings, "user9")})
        assert refusal == {
            "code": "rate_limited",
            "message": "too many connection attempts; slow down",
        }
        headers = {"Authorization": f"Bearer {token(settings, 'alice')}"}
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            http.get(f"{url}/api/notifications/orders/1/status") as response,
        ):
            assert response.status == 429
            assert (await response.json())["error"]["code"] == "rate_limited"
    finally:
        for client in clients:
            await client.disconnect()


async def test_open_connections_per_user(start_server: StartServer, dsn: str) -> None:
    settings = make_settings(dsn, limits={"connections_per_user": 2})
    server = await start_server(settings)
    url = str(server.make_url("")).rstrip("/")
    first, _ = await sio_client(url, token(settings, "alice"))
    second, _ = await sio_client(url, token(settings, "alice"))
    try:
        refusal = await connect_refusal(url, {"token": token(settings, "alice")})
        assert refusal["code"] == "rate_limited"
        other, _ = await sio_client(url, token(settings, "bob"))  # another user is fine
        await other.disconnect()
        await first.disconnect()
        await asyncio.sleep(0.2)
        third, _ = await sio_client(url, token(settings, "alice"))
        await third.disconnect()
    finally:
        await first.disconnect()
        await second.disconnect()


async def test_sse_streams_count_as_the_users_connections(
    start_server: StartServer, dsn: str
) -> None:
    settings = make_settings(dsn, limits={"connections_per_user": 1})
    server = await start_server(settings)
    url = str(server.make_url("")).rstrip("/")
    stream_url = f"{url}/api/notifications/orders/1/status"
    headers = {"Authorization": f"Bearer {token(settings, 'alice')}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.get(stream_url) as open_stream,
    ):
        assert open_stream.status == 200
        await open_stream.content.readline()
        async with http.get(stream_url) as second:
            assert second.status == 429
            assert (await second.json())["error"]["code"] == "rate_limited"
        refusal = await connect_refusal(url, {"token": token(settings, "alice")})
        assert refusal["code"] == "rate_limited"
    # Once the server notices the closed stream, the user may connect again.
    for _ in range(50):
        try:
            client, _ = await sio_client(url, token(settings, "alice"))
        except socketio.exceptions.ConnectionError:
            await asyncio.sleep(0.1)
        else:
            await client.disconnect()
            return
    raise AssertionError("the closed stream was never released")
