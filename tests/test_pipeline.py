"""Order status changes committed in PostgreSQL reach Socket.IO rooms and SSE streams."""

from __future__ import annotations

import asyncio

import aiohttp
import asyncpg
from aiohttp.test_utils import TestServer

from tests.helpers import sio_client, sse_events, token
from tiffin_rt.config import Settings


async def test_committed_update_reaches_socketio_room(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    client, received = await sio_client(url, token(settings, "alice"))
    try:
        ack = await client.call("joinRoom", "order-1", namespace="/notifications")
        assert ack == {"ok": True, "room": "order-1"}
        await db.execute("UPDATE orders SET status = 'preparing' WHERE id = 1")
        [update] = await received.wait_for("orderStatusUpdate")
        assert update["orderId"] == "1"
        assert update["status"] == "preparing"
        assert update["previousStatus"] == "pending"
        assert update["timestamp"].endswith("Z")
        assert isinstance(update["eventId"], int)
    finally:
        await client.disconnect()


async def test_update_reaches_sse_stream_then_ends_on_delivered(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    headers = {"Authorization": f"Bearer {token(settings, 'alice')}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/api/notifications/orders/1/status", headers=headers) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        stream = sse_events(response)
        first = await anext(stream)
        assert first.json()["status"] == "pending"
        assert first.retry is not None
        await db.execute("UPDATE orders SET status = 'ready' WHERE id = 1")
        await db.execute("UPDATE orders SET status = 'delivered' WHERE id = 1")
        ready = await asyncio.wait_for(anext(stream), 5)
        delivered = await asyncio.wait_for(anext(stream), 5)
        assert [ready.json()["status"], delivered.json()["status"]] == ["ready", "delivered"]
        assert delivered.id == str(delivered.json()["eventId"])
        rest = [event async for event in stream]
        assert rest == []


async def test_rolled_back_and_unchanged_updates_send_nothing(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    client, received = await sio_client(url, token(settings, "alice"))
    try:
        await client.call("joinRoom", "order-1", namespace="/notifications")
        tx = db.transaction()
        await tx.start()
        await db.execute("UPDATE orders SET status = 'cancelled' WHERE id = 1")
        await tx.rollback()
        await db.execute("UPDATE orders SET status = status, item = 'Extra naan' WHERE id = 1")
        await db.execute("UPDATE orders SET status = 'confirmed' WHERE id = 1")
        [update] = await received.wait_for("orderStatusUpdate")
        assert update["status"] == "confirmed"
        await asyncio.sleep(0.2)
        assert len(received.of("orderStatusUpdate")) == 1
    finally:
        await client.disconnect()
