"""Order status changes committed in PostgreSQL reach Socket.IO rooms and SSE streams.

Every test runs twice: against the demo orders table and against a table whose name and
columns are not the defaults.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import (
    Received,
    disconnecting,
    eventually,
    make_settings,
    marker_arrived,
    sio_client,
    sse_events,
    token,
)
from tests.orders_tables import CUSTOM, DEMO, OrdersTable
from tiffin_rt.config import Settings
from tiffin_rt.keys import LISTENER


@asynccontextmanager
async def watching(url: str, tok: str, *rooms: str) -> AsyncIterator[Received]:
    """What a Socket.IO client that joined `rooms` receives; disconnected on the way out."""
    async with disconnecting(sio_client(url, tok)) as (client, received):
        for room in rooms:
            await client.call("joinRoom", room, namespace="/notifications")
        yield received


@asynccontextmanager
async def status_stream(url: str, tok: str, order_id: str) -> AsyncIterator[aiohttp.ClientResponse]:
    """The response to an SSE request for an order's status, as the holder of `tok`."""
    headers = {"Authorization": f"Bearer {tok}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/api/notifications/orders/{order_id}/status", headers=headers) as response,
    ):
        yield response


@pytest.fixture(params=[DEMO, CUSTOM], ids=["demo-table", "custom-table"])
def orders(request: pytest.FixtureRequest) -> OrdersTable:
    table: OrdersTable = request.param
    return table


@pytest.fixture
def settings(dsn: str, orders: OrdersTable) -> Settings:
    return make_settings(dsn, orders=orders.section(), database={"gap_timeout": 30.0})


@pytest.fixture
async def server(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection, orders: OrdersTable
) -> TestServer:
    await orders.create(db)
    return await start_server(settings)


async def test_committed_update_reaches_socketio_room(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection, orders: OrdersTable
) -> None:
    async with disconnecting(sio_client(url, token(settings, "alice"))) as (client, received):
        ack = await client.call("joinRoom", "order-1", namespace="/notifications")
        assert (ack["ok"], ack["room"]) == (True, "order-1")
        await orders.set_status(db, "1", "preparing")
        [update] = await received.wait_for("orderStatusUpdate")
        assert update["orderId"] == "1"
        assert update["status"] == "preparing"
        assert update["previousStatus"] == "pending"
        assert update["timestamp"].endswith("Z")
        assert isinstance(update["eventId"], int)


async def test_customer_gets_own_orders_in_user_room_without_joining(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection, orders: OrdersTable
) -> None:
    alice, to_alice = await sio_client(url, token(settings, "alice"))
    bob, to_bob = await sio_client(url, token(settings, "bob"))
    try:
        await orders.set_status(db, "2", "ready")
        await orders.set_status(db, "3", "ready")
        [mine] = await to_alice.wait_for("orderStatusUpdate")
        [bobs] = await to_bob.wait_for("orderStatusUpdate")
        assert (mine["orderId"], bobs["orderId"]) == ("2", "3")
        await marker_arrived(db, "alice", to_alice)
        await marker_arrived(db, "bob", to_bob)
        assert len(to_alice.of("orderStatusUpdate")) == 1
        assert len(to_bob.of("orderStatusUpdate")) == 1
    finally:
        await alice.disconnect()
        await bob.disconnect()


async def test_update_reaches_sse_stream_then_ends_on_delivered(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection, orders: OrdersTable
) -> None:
    async with status_stream(url, token(settings, "alice"), "1") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        stream = sse_events(response)
        first = await anext(stream)
        assert first.json()["status"] == "pending"
        assert first.json()["orderId"] == "1"
        assert first.retry is not None
        await orders.set_status(db, "1", "ready")
        await orders.set_status(db, "1", "delivered")
        ready = await asyncio.wait_for(anext(stream), 5)
        delivered = await asyncio.wait_for(anext(stream), 5)
        assert [ready.json()["status"], delivered.json()["status"]] == ["ready", "delivered"]
        assert delivered.id == str(delivered.json()["eventId"])
        assert int(ready.id or 0) < int(delivered.id or 0)
        rest = [event async for event in stream]
        assert rest == []


async def test_unknown_order_answers_404_before_streaming(
    server: TestServer, url: str, settings: Settings
) -> None:
    async with status_stream(url, token(settings, "ops", "support"), "999") as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "not_found"


async def test_rolled_back_and_unchanged_updates_send_nothing(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection, orders: OrdersTable
) -> None:
    async with watching(url, token(settings, "alice"), "order-1") as received:
        tx = db.transaction()
        await tx.start()
        await orders.set_status(db, "1", "cancelled")
        await tx.rollback()
        await orders.set_status(db, "1", "pending")  # the status it already has
        # The rolled-back transaction left a hole in the event ids; gap_timeout is 30 s here,
        # so this arrives within the wait only if the hole is recognised as a rollback.
        await orders.set_status(db, "1", "confirmed")
        [update] = await received.wait_for("orderStatusUpdate", timeout=5)
        assert update["status"] == "confirmed"
        await marker_arrived(db, "alice", received)
        assert len(received.of("orderStatusUpdate")) == 1


async def test_quick_updates_arrive_in_commit_order(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection, orders: OrdersTable
) -> None:
    async with watching(url, token(settings, "alice"), "order-1") as received:
        statuses = ["confirmed", "preparing", "ready", "delivered"]
        for status in statuses:
            await orders.set_status(db, "1", status)
        updates = await received.wait_for("orderStatusUpdate", count=4)
        assert [u["status"] for u in updates] == statuses
        ids = [u["eventId"] for u in updates]
        assert ids == sorted(ids)


async def test_transaction_committing_after_a_later_one_is_not_lost(
    server: TestServer,
    url: str,
    settings: Settings,
    db: asyncpg.Connection,
    dsn: str,
    orders: OrdersTable,
) -> None:
    """Event ids are taken at insert: the listener must not skip an id that commits late."""
    async with watching(url, token(settings, "admin", "admin"), "order-1", "order-3") as received:
        other = await asyncpg.connect(dsn)
        try:
            slow = db.transaction()
            await slow.start()
            await orders.set_status(db, "1", "confirmed")  # takes the lower id, commits last
            lower = await db.fetchval("SELECT max(id) FROM tiffin_rt.events")
            await orders.set_status(other, "3", "ready")  # takes the higher id, commits first
            # The listener has seen the later event and holds it back for the missing one.
            listener = server.app[LISTENER]
            await eventually(lambda: listener.waiting_for == lower)
            assert received.of("orderStatusUpdate") == []  # held back: id order is kept
            await slow.commit()
            updates = await received.wait_for("orderStatusUpdate", count=2)
            assert [u["orderId"] for u in updates] == ["1", "3"]
            await marker_arrived(db, "admin", received)
            assert len(received.of("orderStatusUpdate")) == 2
        finally:
            await other.close()


async def test_listener_killed_while_updates_commit_loses_nothing(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection, orders: OrdersTable
) -> None:
    async with watching(url, token(settings, "admin", "admin"), "order-1") as received:
        statuses = [f"step-{n}" for n in range(30)]
        for n, status in enumerate(statuses):
            await orders.set_status(db, "1", status)
            if n in (5, 17):
                killed = await db.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = 'tiffin_rt-listener'"
                    " AND datname = current_database()"
                )
                assert killed == 1
            await asyncio.sleep(0.01)
        updates = await received.wait_for("orderStatusUpdate", count=30, timeout=15)
        assert [u["status"] for u in updates] == statuses
        await marker_arrived(db, "admin", received)
        assert len(received.of("orderStatusUpdate")) == 30
