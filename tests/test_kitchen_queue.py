"""The live kitchen queue: `kitchenQueue` to `vendor-<id>` and `queuePosition` to `order-<id>`,
with real python-socketio clients on WebSocket and long-polling and a real PostgreSQL.

The demo table's open orders: 1 (alice, spice-garden, pending), 2 (alice, spice-garden,
confirmed), 3 (bob, green-bowl, preparing), 4 (bob, spice-garden, pending); none has an event in
the log, so spice-garden's queue is 2 (confirmed), then 1 and 4 in id order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import asyncpg
import pytest
import socketio

from tests.conftest import StartServer
from tests.helpers import (
    Received,
    base_url,
    eventually,
    leave,
    make_settings,
    marker_arrived,
    token,
)
from tiffin_rt.config import Settings

NS = "/notifications"
KQ = "kitchenQueue"
EVENTS = ("kitchenQueue", "queuePosition", "notification", "orderStatusUpdate")
TRANSPORTS = {"websocket": ["websocket"], "polling": ["polling"]}
FAST = {"coalesce_interval": 0.05}


@asynccontextmanager
async def client(
    url: str, tok: str, transport: str = "websocket"
) -> AsyncIterator[tuple[socketio.AsyncClient, Received]]:
    """A python-socketio client on `transport`, recording the kitchen events and markers."""
    sio = socketio.AsyncClient(reconnection=False)
    received = Received()
    for name in EVENTS:
        sio.on(name, (lambda n: lambda data=None: received.record(n, data))(name), namespace=NS)
    await sio.connect(
        url,
        namespaces=[NS],
        auth={"token": tok},
        transports=TRANSPORTS[transport],
        wait_timeout=5,
    )
    try:
        yield sio, received
    finally:
        await sio.disconnect()


async def server_url(start_server: StartServer, dsn: str, **kitchen: Any) -> tuple[str, Settings]:
    settings = make_settings(dsn, kitchen=kitchen)
    return base_url(await start_server(settings)), settings


def positions(message: dict[str, Any]) -> dict[str, int | None]:
    return {o["orderId"]: o["position"] for orders in message["orders"].values() for o in orders}


async def queue_where(
    received: Received, check: Callable[[dict[str, Any]], bool], timeout: float = 5.0
) -> dict[str, Any]:
    """The first kitchenQueue message (old or new) that passes `check`."""

    async def found() -> dict[str, Any]:
        while True:
            for message in received.of("kitchenQueue"):
                if check(message):
                    return message
            received.changed.clear()
            await received.changed.wait()

    return await asyncio.wait_for(found(), timeout)


async def latest_queue(received: Received, count: int) -> dict[str, Any]:
    """The kitchenQueue message number `count` (1-based), once it arrived."""
    messages = await received.wait_for("kitchenQueue", count)
    return messages[count - 1]


@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_kitchen_gets_its_queue_on_connect_and_right_after_each_status_change(
    start_server: StartServer, dsn: str, db: asyncpg.Connection, transport: str
) -> None:
    url, settings = await server_url(start_server, dsn, **FAST)
    kitchen = token(settings, "chef", "kitchen", vendor_id="spice-garden")
    async with client(url, kitchen, transport) as (_, got):
        first = await latest_queue(got, 1)
        assert first["vendorId"] == "spice-garden"
        assert first["counts"] == {"pending": 2, "confirmed": 1, "preparing": 0, "ready": 0}
        assert first["waiting"] == 3
        assert positions(first) == {"2": 1, "1": 2, "4": 3}
        assert [o["orderId"] for o in first["orders"]["pending"]] == ["1", "4"]

        steps = [
            (
                "2",
                "preparing",
                {"pending": 2, "confirmed": 0, "preparing": 1, "ready": 0},
                {"2": 1, "1": 2, "4": 3},
            ),
            (
                "4",
                "confirmed",
                {"pending": 1, "confirmed": 1, "preparing": 1, "ready": 0},
                {"2": 1, "4": 2, "1": 3},
            ),
            (
                "2",
                "ready",
                {"pending": 1, "confirmed": 1, "preparing": 0, "ready": 1},
                {"2": None, "4": 1, "1": 2},
            ),
            (
                "1",
                "preparing",
                {"pending": 0, "confirmed": 1, "preparing": 1, "ready": 1},
                {"2": None, "1": 1, "4": 2},
            ),
            (
                "2",
                "delivered",
                {"pending": 0, "confirmed": 1, "preparing": 1, "ready": 0},
                {"1": 1, "4": 2},
            ),
            (
                "4",
                "cancelled",
                {"pending": 0, "confirmed": 0, "preparing": 1, "ready": 0},
                {"1": 1},
            ),
        ]
        for count, (order_id, status, counts, expected) in enumerate(steps, start=2):
            await db.execute("UPDATE orders SET status = $2 WHERE id = $1", int(order_id), status)
            message = await latest_queue(got, count)
            assert message["counts"] == counts, (order_id, status)
            assert positions(message) == expected, (order_id, status)
            assert message["waiting"] == sum(1 for p in expected.values() if p is not None)
        # the marker: a new order; its message comes right after the last step's
        await db.execute("INSERT INTO orders (user_id, vendor_id) VALUES ('carol', 'spice-garden')")
        marker_counts = {"pending": 1, "confirmed": 0, "preparing": 1, "ready": 0}
        marker = await queue_where(got, lambda m: m["counts"] == marker_counts)
        assert got.of("kitchenQueue").index(marker) == len(steps) + 1
        assert {m["vendorId"] for m in got.of("kitchenQueue")} == {"spice-garden"}


async def test_a_burst_of_changes_is_coalesced_and_the_last_message_holds_the_final_state(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    url, settings = await server_url(start_server, dsn)  # the default 250 ms
    kitchen = token(settings, "chef", "kitchen", vendor_id="spice-garden")
    burst = 40
    async with client(url, kitchen) as (_, got):
        await latest_queue(got, 1)
        cycle = ["pending", "confirmed", "preparing"]
        for step in range(burst):  # each change commits on its own
            await db.execute(
                "UPDATE orders SET status = $2 WHERE id = $1", step % 2 + 1, cycle[step % 3]
            )
        final = {
            r["id"]: r["status"]
            for r in await db.fetch("SELECT id, status FROM orders WHERE id IN (1, 2)")
        }
        # A last change after the burst: the message showing it comes after every burst message.
        await db.execute("UPDATE orders SET status = 'ready' WHERE id = 4")
        marker = await queue_where(got, lambda m: m["counts"]["ready"] == 1)
        messages = got.of("kitchenQueue")
        index = messages.index(marker)
        during = messages[1:index]
        assert len(during) + 1 < burst, f"{len(during) + 1} messages for {burst + 1} changes"
        statuses = {
            int(o["orderId"]): o["status"] for orders in marker["orders"].values() for o in orders
        }
        assert statuses[1] == final[1]
        assert statuses[2] == final[2]
        assert statuses[4] == "ready"


@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_a_customer_sees_the_position_of_their_own_order_change_and_only_then(
    start_server: StartServer, dsn: str, db: asyncpg.Connection, transport: str
) -> None:
    url, settings = await server_url(start_server, dsn, **FAST)
    chef = token(settings, "chef", "kitchen", vendor_id="spice-garden")
    async with (
        client(url, token(settings, "alice"), transport) as (alice, alice_got),
        client(url, token(settings, "bob"), transport) as (bob, bob_got),
        client(url, chef) as (_, kitchen_got),
    ):
        ack = await alice.call("joinRoom", "order-1", namespace=NS, timeout=5)
        assert ack["ok"]
        assert (await bob.call("joinRoom", "order-4", namespace=NS, timeout=5))["ok"]
        # joining: the current position at once
        (joined,) = await alice_got.wait_for("queuePosition")
        assert joined == {"orderId": "1", "position": 2, "ahead": 1, "estimatedReadyAt": None}
        assert (await bob_got.wait_for("queuePosition"))[0]["position"] == 3

        # a rider assigned to order 1: the queue is read again, alice's position is the same
        await latest_queue(kitchen_got, 1)
        await db.execute("UPDATE orders SET rider_id = 'rita2' WHERE id = 1")
        await latest_queue(kitchen_got, 2)  # read and sent on its own
        # order 2 (ahead of both) is ready: both move up
        await db.execute("UPDATE orders SET status = 'ready' WHERE id = 2")
        moved = (await alice_got.wait_for("queuePosition", 2))[1]
        assert (moved["orderId"], moved["position"], moved["ahead"]) == ("1", 1, 0)
        assert (await bob_got.wait_for("queuePosition", 2))[1]["position"] == 2
        # bob's order confirmed: it goes ahead of alice's pending one
        await db.execute("UPDATE orders SET status = 'confirmed' WHERE id = 4")
        behind = (await alice_got.wait_for("queuePosition", 3))[2]
        assert (behind["position"], behind["ahead"]) == (2, 1)
        # alice's order ready: it leaves the queue, said once
        await db.execute("UPDATE orders SET status = 'ready' WHERE id = 1")
        done = (await alice_got.wait_for("queuePosition", 4))[3]
        assert done == {"orderId": "1", "position": None, "ahead": None, "estimatedReadyAt": None}
        await db.execute("UPDATE orders SET status = 'delivered' WHERE id = 1")
        await db.execute("UPDATE orders SET status = 'preparing' WHERE id = 4")
        await queue_where_position(bob_got, lambda p: p["position"] == 1)
        await marker_arrived(db, "alice", alice_got)
        assert len(alice_got.of("queuePosition")) == 4  # unchanged positions are not repeated
        assert {p["orderId"] for p in alice_got.of("queuePosition")} == {"1"}
        assert {p["orderId"] for p in bob_got.of("queuePosition")} == {"4"}
        assert alice_got.of("kitchenQueue") == []
        assert bob_got.of("kitchenQueue") == []


async def queue_where_position(
    received: Received, check: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    async def found() -> dict[str, Any]:
        while True:
            for message in received.of("queuePosition"):
                if check(message):
                    return message
            received.changed.clear()
            await received.changed.wait()

    return await asyncio.wait_for(found(), 5)


async def test_another_vendors_kitchen_gets_nothing_of_this_vendors_queue(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    url, settings = await server_url(start_server, dsn, **FAST)
    spice = token(settings, "chef", "kitchen", vendor_id="spice-garden")
    green = token(settings, "gina", "kitchen", vendor_id="green-bowl")
    async with client(url, spice) as (_, spice_got), client(url, green) as (_, green_got):
        (own,) = await green_got.wait_for("kitchenQueue")
        assert own["vendorId"] == "green-bowl"
        assert positions(own) == {"3": 1}
        await spice_got.wait_for("kitchenQueue")
        for status in ("preparing", "ready"):
            await db.execute("UPDATE orders SET status = $1 WHERE id = 2", status)
        await queue_where(spice_got, lambda m: m["counts"]["ready"] == 1)
        # the marker: green-bowl's own change reaches it after everything sent before
        await db.execute("UPDATE orders SET status = 'ready' WHERE id = 3")
        await queue_where(green_got, lambda m: m["counts"]["ready"] == 1)
        assert {m["vendorId"] for m in green_got.of("kitchenQueue")} == {"green-bowl"}
        assert len(green_got.of("kitchenQueue")) == 2
        assert green_got.of("queuePosition") == []
        assert {m["vendorId"] for m in spice_got.of("kitchenQueue")} == {"spice-garden"}


async def test_staff_joining_a_vendor_room_get_its_queue_at_once_and_others_are_refused(
    start_server: StartServer, dsn: str
) -> None:
    url, settings = await server_url(start_server, dsn)
    async with (
        client(url, token(settings, "sam", "support")) as (sam, sam_got),
        client(url, token(settings, "alice")) as (alice, alice_got),
        client(url, token(settings, "gina", "kitchen", vendor_id="green-bowl")) as (gina, _),
    ):
        ack = await sam.call("joinRoom", "vendor-spice-garden", namespace=NS, timeout=5)
        assert ack["ok"]
        (queue,) = await sam_got.wait_for("kitchenQueue")
        assert queue["vendorId"] == "spice-garden"
        assert queue["waiting"] == 3
        for who in (alice, gina):
            refused = await who.call("joinRoom", "vendor-spice-garden", namespace=NS, timeout=5)
            assert refused["ok"] is False
            assert refused["error"]["code"] == "forbidden"
        assert alice_got.of("kitchenQueue") == []


async def test_clients_leaving_mid_burst_and_right_after_connecting_leave_the_rest_served(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    url, settings = await server_url(start_server, dsn, **FAST)
    kitchen = token(settings, "chef", "kitchen", vendor_id="spice-garden")
    async with client(url, kitchen) as (_, stays):
        await stays.wait_for("kitchenQueue")
        for transport in TRANSPORTS:  # gone before its first queue could be sent
            quick = socketio.AsyncClient(reconnection=False)
            await quick.connect(
                url, namespaces=[NS], auth={"token": kitchen}, transports=TRANSPORTS[transport]
            )
            await leave(quick)
        async with client(url, kitchen, "polling") as (goes, _):
            await db.execute("UPDATE orders SET status = 'preparing' WHERE id = 2")
            await leave(goes)
        for order_id in (1, 4):
            await db.execute("UPDATE orders SET status = 'confirmed' WHERE id = $1", order_id)
        final = await queue_where(stays, lambda m: m["counts"]["confirmed"] == 2)
        assert positions(final) == {"2": 1, "1": 2, "4": 3}
    async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as response:
        assert response.status == 200


async def test_malformed_rows_and_log_events_are_left_out_of_every_queue(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    url, settings = await server_url(start_server, dsn, **FAST)
    kitchen = token(settings, "chef", "kitchen", vendor_id="spice-garden")
    async with client(url, kitchen) as (_, got):
        await got.wait_for("kitchenQueue")
        await db.execute("ALTER TABLE orders ALTER COLUMN status DROP NOT NULL")
        await db.execute(
            "INSERT INTO orders (user_id, vendor_id, status) VALUES"
            " ('carol', NULL, 'pending'), ('carol', 'spice-garden', 'PENDING'),"
            " ('carol', 'spice-garden', 'out_for_delivery'), ('carol', 'spice-garden', ''),"
            " ('carol', 'spice-garden', NULL), ('carol', '', 'pending'),"
            " ('carol', 'spice garden', 'pending'), ('carol', repeat('v', 5000), 'pending')"
        )
        # hand-written log rows that lie about the vendor
        for payload in (
            '{"orderId": "1", "vendorId": {"nested": true}}',
            '{"orderId": "1", "vendorId": 7}',
            '{"orderId": "1", "vendorId": "\u00b2"}',
            '{"orderId": "1"}',
            "[]",
        ):
            await db.execute(
                "SELECT tiffin_rt.append_event('order_status', ARRAY['order-1'], $1::jsonb, '1')",
                payload,
            )
        await db.execute("UPDATE orders SET status = 'preparing' WHERE id = 2")
        message = await queue_where(got, lambda m: m["counts"]["preparing"] == 1)
        assert message["counts"] == {"pending": 2, "confirmed": 0, "preparing": 1, "ready": 0}
        # order 1 now has log rows (placed now), order 4 none (it predates the log): 4 first
        assert positions(message) == {"2": 1, "4": 2, "1": 3}
        await db.execute("UPDATE orders SET status = 'ready' WHERE id = 2")
        await queue_where(got, lambda m: m["counts"]["ready"] == 1)


async def test_the_rolling_average_and_estimates_come_from_the_log(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    url, settings = await server_url(start_server, dsn, **FAST)
    kitchen = token(settings, "chef", "kitchen", vendor_id="spice-garden")
    async with client(url, kitchen) as (_, got):
        first = await latest_queue(got, 1)
        assert first["averagePrepSeconds"] is None
        assert first["averageSamples"] == 0
        assert all(o["estimatedReadyAt"] is None for o in first["orders"]["pending"])
        await db.execute("UPDATE orders SET status = 'preparing' WHERE id = 2")
        await db.execute(
            "UPDATE tiffin_rt.events SET created_at = created_at - interval '10 minutes'"
            " WHERE order_id = '2'"
        )
        await db.execute("UPDATE orders SET status = 'ready' WHERE id = 2")
        message = await queue_where(got, lambda m: m["averageSamples"] == 1)
        assert 599 <= message["averagePrepSeconds"] <= 660
        estimates = [o["estimatedReadyAt"] for o in message["orders"]["pending"]]
        assert all(estimates)
        assert estimates == sorted(estimates)
        assert message["orders"]["ready"][0]["estimatedReadyAt"] is None
        # a change that makes nothing ready: the averages are kept, not lost
        await db.execute("UPDATE orders SET status = 'preparing' WHERE id = 1")
        later = await queue_where(got, lambda m: m["counts"]["preparing"] == 1)
        assert later["averageSamples"] == 1
        assert later["averagePrepSeconds"] == message["averagePrepSeconds"]


async def test_two_nodes_each_send_the_queue_once_to_their_own_kitchens(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection, dsn: str
) -> None:
    both = make_settings(dsn, kitchen=FAST)
    first, second = await start_server(both), await start_server(both)
    kitchen = token(both, "chef", "kitchen", vendor_id="spice-garden")
    async with (
        client(base_url(first), kitchen) as (_, on_first),
        client(base_url(second), kitchen, "polling") as (_, on_second),
    ):
        for got in (on_first, on_second):
            await got.wait_for("kitchenQueue")
        await db.execute("UPDATE orders SET status = 'preparing' WHERE id = 2")
        for got in (on_first, on_second):
            await queue_where(got, lambda m: m["counts"]["preparing"] == 1)
        await db.execute("UPDATE orders SET status = 'ready' WHERE id = 2")  # the marker
        for got in (on_first, on_second):
            await queue_where(got, lambda m: m["counts"]["ready"] == 1)
            seen = [
                (m["counts"]["preparing"], m["counts"]["ready"]) for m in got.of("kitchenQueue")
            ]
            assert seen == [(0, 0), (1, 0), (0, 1)]


async def test_rooms_a_client_lies_about_are_refused_and_send_it_no_queue(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    url, settings = await server_url(start_server, dsn, **FAST)
    chef = token(settings, "chef", "kitchen", vendor_id="spice-garden")
    async with (
        client(url, token(settings, "alice"), "polling") as (alice, got),
        client(url, chef) as (_, kitchen_got),
    ):
        for room in (
            "order-01",
            "order-+1",
            "order-1\u0000",
            "order-\u00b2",
            "vendor-spice-garden",
            "vendor-",
            "order-4",  # bob's
            "order-" + "9" * 5000,
            42,
            None,
            ["order-1"],
            {"room": "order-1"},
        ):
            ack = await alice.call("joinRoom", room, namespace=NS, timeout=5)
            assert ack["ok"] is False, room
            assert ack["error"]["code"] in {"invalid_room", "forbidden"}, room
        await db.execute("UPDATE orders SET status = 'ready' WHERE id = 2")
        # once the kitchen has the change, whatever the same read sent alice is on its way
        await queue_where(kitchen_got, lambda m: m["counts"]["ready"] == 1)
        await marker_arrived(db, "alice", got)
        assert got.of("kitchenQueue") == []
        assert got.of("queuePosition") == []
        # and the truth still works on the same connection
        assert (await alice.call("joinRoom", "order-1", namespace=NS, timeout=5))["ok"]
        (position,) = await got.wait_for("queuePosition")
        assert position["orderId"] == "1"


async def test_changes_made_while_the_queue_cannot_be_read_are_sent_once_it_can(
    start_server: StartServer, dsn: str, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    url, settings = await server_url(start_server, dsn, **FAST)
    kitchen = token(settings, "chef", "kitchen", vendor_id="spice-garden")
    async with client(url, kitchen, "polling") as (_, got):
        await got.wait_for("kitchenQueue")
        # the backend's table is away (renamed): every read fails; its trigger still logs
        await db.execute("ALTER TABLE orders RENAME TO orders_away")
        await db.execute("UPDATE orders_away SET status = 'preparing' WHERE id = 2")
        await db.execute("UPDATE orders_away SET status = 'confirmed' WHERE id = 1")
        await eventually(lambda: "kitchen queue: reading" in caplog.text)
        await db.execute("ALTER TABLE orders_away RENAME TO orders")
        message = await queue_where(got, lambda m: m["counts"]["preparing"] == 1, timeout=10)
        assert message["counts"] == {"pending": 1, "confirmed": 1, "preparing": 1, "ready": 0}
        assert positions(message) == {"2": 1, "1": 2, "4": 3}
