"""Every /notifications connection has a position, so a quiet client loses nothing on reconnect."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
import socketio
from aiohttp.test_utils import TestServer

from tests.helpers import Received, token
from tests.orders_tables import DEMO
from tiffin_rt.config import Settings

NS = "/notifications"
EVENTS = ("orderStatusUpdate", "position", "resync", "unreadCount")


async def connect(
    url: str, settings: Settings, transport: str, user: str = "ops", **auth: Any
) -> tuple[socketio.AsyncClient, Received]:
    """A support agent: in no order's rooms but the ones it joins (the quiet client)."""
    client = socketio.AsyncClient(reconnection=False)
    received = Received()
    for name in EVENTS:
        client.on(name, (lambda n: lambda d=None: received.add(n, d))(name), namespace=NS)
    await client.connect(
        url,
        namespaces=[NS],
        auth={"token": token(settings, user, "support"), **auth},
        transports=[transport],
        wait_timeout=5,
    )
    return client, received


@pytest.fixture(params=["websocket", "polling"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_a_quiet_client_resumes_from_its_connect_position_and_gets_the_change(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection, transport: str
) -> None:
    client, received = await connect(url, settings, transport)
    try:
        [position] = await received.wait_for("position")
        assert isinstance(position["eventId"], int)
        ack = await client.call("joinRoom", "order-3", namespace=NS)
        assert ack["ok"]
        assert ack["room"] == "order-3"
        assert isinstance(ack["eventId"], int)
        assert ack["eventId"] >= position["eventId"]
        assert ack["order"]["orderId"] == "3"
        assert ack["order"]["status"] == "preparing"
        last_event_id = max(position["eventId"], ack["eventId"])  # no event was received
    finally:
        await client.disconnect()

    await DEMO.set_status(db, "3", "ready")  # while the client is away

    client, received = await connect(url, settings, transport, lastEventId=last_event_id)
    try:
        [position] = await received.wait_for("position")
        assert position["eventId"] >= last_event_id
        ack = await client.call("joinRoom", "order-3", namespace=NS)
        assert ack["ok"]
        assert ack["order"]["status"] == "ready"
        await DEMO.set_status(db, "3", "delivered")  # the marker
        updates = await received.wait_for("orderStatusUpdate", 2)
        assert [u["status"] for u in updates] == ["ready", "delivered"]
        assert updates[0]["eventId"] == ack["order"]["eventId"]
        assert received.of("resync") == []
    finally:
        await client.disconnect()


async def test_a_client_with_no_position_learns_the_current_status_from_the_join(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection, transport: str
) -> None:
    await DEMO.set_status(db, "2", "ready")
    client, _received = await connect(url, settings, transport)
    try:
        ack = await client.call("joinRoom", "order-2", namespace=NS)
        assert ack["ok"]
        order = ack["order"]
        assert (order["orderId"], order["status"]) == ("2", "ready")
        assert isinstance(order["eventId"], int)
        assert order["eventId"] <= ack["eventId"]
        assert order["timestamp"].endswith("Z")
        # Not an order room: a position, no order.
        own = await client.call("joinRoom", "user-ops", namespace=NS)
        assert own["ok"]
        assert isinstance(own["eventId"], int)
        assert "order" not in own
        missing = await client.call("joinRoom", "order-999", namespace=NS)
        assert missing["ok"] is False
        assert missing["error"]["code"] == "not_found"
    finally:
        await client.disconnect()


async def test_the_position_is_the_replay_end_for_a_resumed_connection(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection, transport: str
) -> None:
    client, received = await connect(url, settings, transport, user="alice")
    try:
        [start] = await received.wait_for("position")
    finally:
        await client.disconnect()
    # Alice's own order: her user room replays it. Her other connection getting it live shows
    # the server has read it, so the resumed one must get it by replay (before its position),
    # not live after a position that was taken before the server saw the change.
    watcher, to_watcher = await connect(url, settings, "websocket", user="alice")
    try:
        await DEMO.set_status(db, "1", "ready")
        await to_watcher.wait_for("orderStatusUpdate")
    finally:
        await watcher.disconnect()
    client, received = await connect(
        url, settings, transport, user="alice", lastEventId=start["eventId"]
    )
    try:
        [replayed] = await received.wait_for("orderStatusUpdate")
        [position] = await received.wait_for("position")
        assert replayed["status"] == "ready"
        assert position["eventId"] >= replayed["eventId"]
    finally:
        await client.disconnect()
