"""The demo endpoints behind the page: present only with demo.enabled, and bound to the token."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import base_url, sio_client
from tests.test_cli_and_health import run_cli


@pytest.fixture
async def demo(start_server: StartServer) -> str:
    server = await start_server(demo={"enabled": True})
    return base_url(server)


async def demo_token(http: aiohttp.ClientSession, base: str, user: str) -> str:
    async with http.post(f"{base}/api/demo/token", json={"user": user}) as response:
        assert response.status == 200
        body = await response.json()
    assert body["user"]["id"] == user
    token: str = body["token"]
    return token


async def call(
    http: aiohttp.ClientSession, method: str, url: str, token: str | None, body: Any = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url, json=body, headers=headers) as response:
        return response.status, await response.json()


async def test_without_demo_enabled_there_is_no_way_to_mint_a_token(
    server: TestServer, url: str
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/") as page:
            assert page.status == 200
            assert "tiffin_rt" in await page.text()
        async with http.post(f"{url}/api/demo/token", json={"user": "sam"}) as response:
            assert response.status == 404
        async with http.get(f"{url}/api/demo/users") as response:
            assert response.status == 404


async def test_each_demo_user_lists_only_the_orders_they_may_see(demo: str) -> None:
    async with aiohttp.ClientSession() as http:
        seen = {}
        for user in ("alice", "kitchen-green-bowl", "sam"):
            tok = await demo_token(http, demo, user)
            status, body = await call(http, "GET", f"{demo}/api/demo/orders", tok)
            assert status == 200
            seen[user] = sorted(o["id"] for o in body["orders"])
        assert seen == {
            "alice": ["1", "2"],
            "kitchen-green-bowl": ["3"],
            "sam": ["1", "2", "3", "4"],
        }
        status, body = await call(http, "GET", f"{demo}/api/demo/orders", None)
        assert status == 401
        status, body = await call(http, "POST", f"{demo}/api/demo/token", None, {"user": "root"})
        assert (status, body["error"]["code"]) == (400, "unknown_user")


async def test_kitchen_moves_its_own_orders_and_the_customer_is_notified(
    demo: str, db: asyncpg.Connection
) -> None:
    async with aiohttp.ClientSession() as http:
        alice = await demo_token(http, demo, "alice")
        spice = await demo_token(http, demo, "kitchen-spice-garden")
        client, received = await sio_client(demo, alice)
        try:
            move = f"{demo}/api/demo/orders/1/status"
            assert (await call(http, "POST", move, alice, {"status": "confirmed"}))[0] == 403
            other = f"{demo}/api/demo/orders/3/status"
            assert (await call(http, "POST", other, spice, {"status": "confirmed"}))[0] == 403
            status, body = await call(http, "POST", move, spice, {"status": "delivered"})
            assert (status, body["error"]["code"]) == (409, "invalid_transition")
            status, body = await call(http, "POST", move, spice, {"status": "bogus"})
            assert (status, body["error"]["code"]) == (400, "invalid_status")
            assert await db.fetchval("SELECT status FROM orders WHERE id = 1") == "pending"

            status, body = await call(http, "POST", move, spice, {"status": "confirmed"})
            assert status == 200
            assert body["order"]["status"] == "confirmed"
            assert await db.fetchval("SELECT status FROM orders WHERE id = 1") == "confirmed"
            [update] = await received.wait_for("orderStatusUpdate")
            assert (update["orderId"], update["status"]) == ("1", "confirmed")
            [note] = await received.wait_for("notification")
            assert note["title"] == "Order confirmed"
            assert "Spice Garden" in note["body"]
            assert note["data"] == {"orderId": "1", "status": "confirmed"}
        finally:
            await client.disconnect()


async def test_a_customer_places_an_order_and_its_kitchen_hears_of_it(demo: str) -> None:
    async with aiohttp.ClientSession() as http:
        bob = await demo_token(http, demo, "bob")
        green = await demo_token(http, demo, "kitchen-green-bowl")
        client, received = await sio_client(demo, green)
        try:
            order = {"vendorId": "green-bowl", "item": "Falafel bowl", "totalCents": 1050}
            status, body = await call(http, "POST", f"{demo}/api/demo/orders", bob, order)
            assert status == 201
            assert body["order"]["customerId"] == "bob"
            [update] = await received.wait_for("orderStatusUpdate")
            assert update["orderId"] == body["order"]["id"]
            assert update["status"] == "pending"
            bad = {"vendorId": "nowhere", "item": "x"}
            status, body = await call(http, "POST", f"{demo}/api/demo/orders", bob, bad)
            assert (status, body["error"]["code"]) == (400, "invalid_order")
        finally:
            await client.disconnect()


async def test_demo_simulate_moves_orders_through_the_trigger_path(
    server: TestServer, dsn: str, db: asyncpg.Connection
) -> None:
    await db.execute("UPDATE orders SET status = 'delivered' WHERE id IN (2, 3, 4)")
    result = await asyncio.to_thread(
        run_cli, "demo", "simulate", "--steps", "6", "--interval", "0.01", env_dsn=dsn
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        "order 1: confirmed (alice)",
        "order 1: preparing (alice)",
        "order 1: ready (alice)",
        "order 1: delivered (alice)",
    ]
    # Nothing left to move: it places a new order, then moves that one.
    assert lines[4].startswith("order 5: pending (")
    assert lines[5].startswith("order 5: confirmed (")
    assert await db.fetchval("SELECT status FROM orders WHERE id = 1") == "delivered"
    statuses = await db.fetch(
        "SELECT payload->>'status' AS status FROM tiffin_rt.events"
        " WHERE kind = 'order_status' AND order_id = '1' ORDER BY id"
    )
    assert [r["status"] for r in statuses][-4:] == ["confirmed", "preparing", "ready", "delivered"]
    titles = await db.fetch(
        "SELECT payload->>'title' AS title FROM tiffin_rt.events"
        " WHERE kind = 'notification' AND rooms = ARRAY['user-alice'] ORDER BY id"
    )
    assert [r["title"] for r in titles][:4] == [
        "Order confirmed",
        "Being prepared",
        "Ready for pickup",
        "Delivered",
    ]
