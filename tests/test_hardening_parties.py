"""An `extra_channels` payload names no parties: it never cuts an order's real parties off."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import base_url, disconnecting, make_settings, sio_client, sse_events, token
from tests.orders_tables import DEMO
from tiffin_rt.config import Settings

NS = "/notifications"

# Order 3 of the demo table: customer bob, kitchen green-bowl, rider ravi.
CHANNEL_PAYLOADS = [
    {"orderId": 3, "status": "on_the_way"},  # no customer_field at all
    {"orderId": "3", "status": "nearly_there", "userId": None},  # present but null
    {"orderId": 3, "status": "at_the_door", "userId": "bob"},  # no vendor or rider fields
    {"orderId": 3, "status": "lying", "userId": "mallory"},  # names someone else
]


@pytest.fixture
def channel_settings(dsn: str) -> Settings:
    return make_settings(
        dsn,
        notifications={"extra_channels": [{"channel": "order_status", "customer_field": "userId"}]},
        # a long cache: a poisoned entry would outlive the test
        limits={"order_cache_ttl": 300.0},
    )


async def join(url: str, settings: Settings, user: str, role: str, **claims: Any) -> Any:
    return await sio_client(url, token(settings, user, role, **claims))


async def test_channel_payloads_without_parties_keep_every_party_in_on_every_transport(
    start_server: StartServer, channel_settings: Settings, db: asyncpg.Connection
) -> None:
    server: TestServer = await start_server(channel_settings)
    url = base_url(server)
    headers = {"Authorization": f"Bearer {token(channel_settings, 'bob')}"}
    async with (
        disconnecting(join(url, channel_settings, "bob", "customer")) as (bob, to_bob),
        disconnecting(join(url, channel_settings, "k", "kitchen", vendor_id="green-bowl")) as (
            kitchen,
            to_kitchen,
        ),
        disconnecting(join(url, channel_settings, "ravi", "rider")) as (ravi, to_ravi),
        disconnecting(join(url, channel_settings, "mallory", "customer")) as (mallory, _),
        aiohttp.ClientSession(headers=headers) as http,
        http.get(f"{url}/api/notifications/orders/3/status") as response,
    ):
        for client in (bob, kitchen, ravi):
            ack = await client.call("joinRoom", "order-3", namespace=NS)
            assert (ack["ok"], ack["room"]) == (True, "order-3")
        assert response.status == 200
        stream = sse_events(response)
        first = await asyncio.wait_for(anext(stream), 5)
        assert first.json()["status"] == "preparing"

        for payload in CHANNEL_PAYLOADS:
            await db.execute("SELECT pg_notify('order_status', $1)", json.dumps(payload))
        # The marker, from the orders table itself, after every channel payload.
        await DEMO.set_status(db, "3", "delivered")

        expected = [p["status"] for p in CHANNEL_PAYLOADS] + ["delivered"]
        for received in (to_bob, to_kitchen, to_ravi):
            updates = await received.wait_for("orderStatusUpdate", len(expected))
            assert [u["status"] for u in updates] == expected
        seen = [await asyncio.wait_for(anext(stream), 5) for _ in expected]
        assert [(e.event, e.json()["status"]) for e in seen] == [(None, s) for s in expected]

        # The policy still says what the orders table says, for a new join too.
        again = await bob.call("joinRoom", "order-3", namespace=NS)
        assert (again["ok"], again["room"]) == (True, "order-3")
        refused = await mallory.call("joinRoom", "order-3", namespace=NS)
        assert refused["ok"] is False
        assert refused["error"]["code"] == "forbidden"
