"""Room authorization from the orders table: only an order's own people get its events.

Demo orders: 1 = alice / spice-garden / rider rita; 3 = bob / green-bowl / rider ravi.
"""

from __future__ import annotations

import asyncio

import aiohttp
import asyncpg
import pytest
import socketio
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import make_settings, marker_arrived, sio_client, sse_events, token
from tiffin_rt.config import Settings

NS = "/notifications"


def forbidden(room: str) -> dict[str, object]:
    return {"ok": False, "error": {"code": "forbidden", "message": f"you may not join {room}"}}


async def test_customer_cannot_join_or_hear_another_customers_order(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    alice, to_alice = await sio_client(url, token(settings, "alice"))
    bob, to_bob = await sio_client(url, token(settings, "bob"))
    try:
        joined = await alice.call("joinRoom", "order-1", namespace=NS)
        assert (joined["ok"], joined["room"]) == (True, "order-1")
        # Someone else's order and an order that does not exist answer exactly alike.
        assert await bob.call("joinRoom", "order-1", namespace=NS) == forbidden("order-1")
        assert await bob.call("joinRoom", "order-999", namespace=NS) == forbidden("order-999")
        assert await bob.call("joinRoom", "user-alice", namespace=NS) == forbidden("user-alice")
        await db.execute("UPDATE orders SET status = 'confirmed' WHERE id = 1")
        [update] = await to_alice.wait_for("orderStatusUpdate")
        assert update["orderId"] == "1"
        await db.execute("UPDATE orders SET status = 'ready' WHERE id = 3")  # bob's own
        [own] = await to_bob.wait_for("orderStatusUpdate")
        assert own["orderId"] == "3"
        assert [u["orderId"] for u in to_bob.of("orderStatusUpdate")] == ["3"]
    finally:
        await alice.disconnect()
        await bob.disconnect()


async def test_kitchen_staff_only_join_their_vendors_orders(
    server: TestServer, url: str, settings: Settings
) -> None:
    other, _ = await sio_client(url, token(settings, "k2", "kitchen", vendor_id="green-bowl"))
    own, _ = await sio_client(url, token(settings, "k1", "kitchen", vendor_id="spice-garden"))
    try:
        assert await other.call("joinRoom", "order-1", namespace=NS) == forbidden("order-1")
        assert await other.call("joinRoom", "vendor-spice-garden", namespace=NS) == forbidden(
            "vendor-spice-garden"
        )
        assert (await own.call("joinRoom", "order-1", namespace=NS))["ok"] is True
        assert (await other.call("joinRoom", "order-3", namespace=NS))["ok"] is True
    finally:
        await other.disconnect()
        await own.disconnect()


@pytest.mark.parametrize(
    ("sub", "role", "vendor", "room", "allowed"),
    [
        ("rita", "rider", None, "order-1", True),
        ("rita", "rider", None, "order-3", False),
        ("sam", "support", None, "order-3", True),
        ("sam", "support", None, "user-alice", False),
        ("sam", "support", None, "vendor-green-bowl", True),
        ("ada", "admin", None, "user-alice", True),
        ("alice", "customer", None, "vendor-spice-garden", False),
    ],
)
async def test_policy_table(
    server: TestServer,
    url: str,
    settings: Settings,
    sub: str,
    role: str,
    vendor: str | None,
    room: str,
    allowed: bool,
) -> None:
    client, _ = await sio_client(url, token(settings, sub, role, vendor_id=vendor))
    try:
        ack = await client.call("joinRoom", room, namespace=NS)
        if allowed:
            assert (ack["ok"], ack["room"]) == (True, room)
        else:
            assert ack == forbidden(room)
    finally:
        await client.disconnect()


async def test_staff_learn_an_order_is_missing(
    server: TestServer, url: str, settings: Settings
) -> None:
    client, _ = await sio_client(url, token(settings, "sam", "support"))
    try:
        ack = await client.call("joinRoom", "order-999", namespace=NS)
        assert ack["error"]["code"] == "not_found"
    finally:
        await client.disconnect()


@pytest.mark.parametrize(
    "room", ["order-1; DROP TABLE orders", "", "orders-1", "order-" + "9" * 200, 42, None, ["x"]]
)
async def test_malformed_room_names_are_refused(
    server: TestServer, url: str, settings: Settings, room: object
) -> None:
    client, _ = await sio_client(url, token(settings, "alice"))
    try:
        ack = await client.call("joinRoom", room, namespace=NS)
        assert ack["ok"] is False
        assert ack["error"]["code"] == "invalid_room"
        ack = await client.call("leaveRoom", room, namespace=NS)
        assert ack["error"]["code"] == "invalid_room"
    finally:
        await client.disconnect()


async def join_eventually(client: socketio.AsyncClient, room: str) -> None:
    for _ in range(100):
        if (await client.call("joinRoom", room, namespace=NS))["ok"]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never allowed into {room}")


async def test_reassigned_rider_loses_the_room_and_the_new_one_gains_it(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(dsn, limits={"order_cache_ttl": 60})
    url = str((await start_server(settings)).make_url("")).rstrip("/")
    rita, to_rita = await sio_client(url, token(settings, "rita", "rider"))
    ravi, to_ravi = await sio_client(url, token(settings, "ravi", "rider"))
    alice, to_alice = await sio_client(url, token(settings, "alice"))
    try:
        assert (await rita.call("joinRoom", "order-1", namespace=NS))["ok"] is True
        assert await ravi.call("joinRoom", "order-1", namespace=NS) == forbidden("order-1")
        await db.execute("UPDATE orders SET rider_id = 'ravi' WHERE id = 1")
        # The reassignment is no status change: nobody gets an orderStatusUpdate for it.
        # The order's own event refreshes the cached parties (cached here for a minute).
        await join_eventually(ravi, "order-1")
        await db.execute("UPDATE orders SET status = 'ready' WHERE id = 1")
        [update] = await to_ravi.wait_for("orderStatusUpdate")
        assert update["status"] == "ready"
        await to_alice.wait_for("orderStatusUpdate")
        await marker_arrived(db, "rita", to_rita)
        await marker_arrived(db, "alice", to_alice)
        assert to_rita.of("orderStatusUpdate") == []
        assert [u["status"] for u in to_alice.of("orderStatusUpdate")] == ["ready"]
    finally:
        for client in (rita, ravi, alice):
            await client.disconnect()


async def test_sse_stream_of_a_reassigned_rider_ends_before_the_next_update(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(dsn, limits={"order_cache_ttl": 60})
    url = str((await start_server(settings)).make_url("")).rstrip("/")
    headers = {"Authorization": f"Bearer {token(settings, 'rita', 'rider')}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.get(f"{url}/api/notifications/orders/1/status") as response,
    ):
        assert response.status == 200
        events = sse_events(response)
        assert (await anext(events)).json()["status"] == "pending"
        await db.execute("UPDATE orders SET rider_id = 'ravi' WHERE id = 1")
        await db.execute("UPDATE orders SET status = 'ready' WHERE id = 1")
        end = await asyncio.wait_for(anext(events), 5)
        assert end.event == "end"
        assert end.json()["code"] == "forbidden"
        assert [e async for e in events] == []


async def test_the_reassignment_itself_ends_the_old_riders_sse_stream_not_the_customers(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(dsn, limits={"order_cache_ttl": 60})
    url = str((await start_server(settings)).make_url("")).rstrip("/")
    stream_url = f"{url}/api/notifications/orders/1/status"

    def auth(sub: str, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token(settings, sub, role)}"}

    async with (
        aiohttp.ClientSession() as http,
        http.get(stream_url, headers=auth("rita", "rider")) as rider,
        http.get(stream_url, headers=auth("alice", "customer")) as customer,
    ):
        to_rider, to_customer = sse_events(rider), sse_events(customer)
        assert (await anext(to_rider)).json()["status"] == "pending"
        assert (await anext(to_customer)).json()["status"] == "pending"
        # No status change follows: the order_parties event alone ends the rider's stream.
        await db.execute("UPDATE orders SET rider_id = 'ravi' WHERE id = 1")
        end = await asyncio.wait_for(anext(to_rider), 5)
        assert (end.event, end.json()["code"]) == ("end", "forbidden")
        assert [e async for e in to_rider] == []
        await db.execute("UPDATE orders SET status = 'ready' WHERE id = 1")
        update = await asyncio.wait_for(anext(to_customer), 5)
        assert (update.event, update.json()["status"]) == (None, "ready")


async def test_sse_applies_the_same_policy(
    server: TestServer, url: str, settings: Settings
) -> None:
    headers = {"Authorization": f"Bearer {token(settings, 'bob')}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        bodies = []
        for order in ("1", "999"):
            async with http.get(f"{url}/api/notifications/orders/{order}/status") as response:
                assert response.status == 403
                bodies.append((await response.json())["error"]["code"])
        assert bodies == ["forbidden", "forbidden"]
