"""The server-side Python API (NotificationGateway) writes through the event log."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from tests.helpers import sse_events, token
from tests.replay_helpers import connected, delivered_live, set_statuses
from tiffin_rt.config import Settings
from tiffin_rt.core.rooms import InvalidRoom
from tiffin_rt.transports.socketio.notifications import NOTIFICATION_GATEWAY, InvalidNotification


async def test_a_status_update_sent_from_python_is_logged_live_on_both_transports_and_replayed(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    gateway = server.app[NOTIFICATION_GATEWAY]
    [seen] = await set_statuses(db, 1, ["confirmed"])
    await delivered_live(server.app, seen)  # else alice's user room may get it live
    alice = token(settings, "alice")
    headers = {"Authorization": f"Bearer {alice}"}
    async with (
        connected(url, alice) as (client, log),
        aiohttp.ClientSession() as http,
        http.get(url + "/api/notifications/orders/1/status", headers=headers) as response,
    ):
        stream = sse_events(response)
        first = await asyncio.wait_for(anext(stream), 5)
        assert first.json()["eventId"] == seen
        ack = await client.call("joinRoom", "order-1", namespace="/notifications")
        assert ack["ok"] is True
        sent = await gateway.send_order_status_update("1", "preparing", previous_status="confirmed")

        [live] = await log.wait_for("orderStatusUpdate", 1)
        assert live["eventId"] == sent
        assert (live["orderId"], live["status"], live["previousStatus"]) == (
            "1",
            "preparing",
            "confirmed",
        )
        on_sse = await asyncio.wait_for(anext(stream), 5)
        assert on_sse.id == str(sent)
        assert on_sse.json() == live  # one builder: the same message on both transports

    row = await db.fetchrow(
        "SELECT kind, order_id, rooms FROM tiffin_rt.events WHERE id = $1", sent
    )
    assert (row["kind"], row["order_id"], row["rooms"]) == ("order_status", "1", ["order-1"])

    # A Socket.IO client that saw `seen` reconnects: the update is replayed to it.
    async with connected(url, alice, last_event_id=seen) as (client, log):
        await client.call("joinRoom", "order-1", namespace="/notifications")
        [replayed] = await log.wait_for("orderStatusUpdate", 1)
        assert replayed == live
    # So is an SSE client with Last-Event-ID.
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            url + "/api/notifications/orders/1/status",
            headers={**headers, "Last-Event-ID": str(seen)},
        ) as response,
    ):
        again = await asyncio.wait_for(anext(sse_events(response)), 5)
        assert (again.id, again.json()) == (str(sent), live)


async def test_a_notification_sent_from_python_reaches_the_users_devices_and_is_replayed(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    gateway = server.app[NOTIFICATION_GATEWAY]
    alice = token(settings, "alice")
    before = int(await db.fetchval("SELECT coalesce(max(id), 0) FROM tiffin_rt.events"))
    async with connected(url, alice) as (_client, log):
        sent = await gateway.send_notification(
            "user-alice", {"type": "promo", "title": "Free delivery", "body": "Today only"}
        )
        [note] = await log.wait_for("notification", 1)
    assert note["eventId"] == sent
    assert (note["type"], note["title"], note["body"], note["data"], note["room"]) == (
        "promo",
        "Free delivery",
        "Today only",
        {},
        "user-alice",
    )
    assert await db.fetchval("SELECT kind FROM tiffin_rt.events WHERE id = $1", sent) == (
        "notification"
    )
    async with connected(url, alice, last_event_id=before) as (_client, log):
        [replayed] = await log.wait_for("notification", 1)
    assert replayed["eventId"] == sent


async def test_a_send_inside_a_rolled_back_transaction_reaches_nobody(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    gateway = server.app[NOTIFICATION_GATEWAY]
    async with connected(url, token(settings, "alice")) as (_client, log):
        tx = db.transaction()
        await tx.start()
        await gateway.send_notification("user-alice", {"title": "never"}, connection=db)
        await tx.rollback()
        await gateway.send_notification("user-alice", {"title": "once"})
        [note] = await log.wait_for("notification", 1)
        assert note["title"] == "once"


async def test_a_room_no_client_can_join_is_refused_before_anything_is_logged(
    server: TestServer,
) -> None:
    gateway = server.app[NOTIFICATION_GATEWAY]
    with pytest.raises(InvalidRoom):
        await gateway.send_notification("lobby", {"title": "x"})
    with pytest.raises(InvalidRoom):
        await gateway.send_notification([], {"title": "x"})


async def test_an_order_id_printed_as_no_client_names_it_is_refused_before_anything_is_logged(
    server: TestServer, db: asyncpg.Connection
) -> None:
    """With an integer id column `order-04` is a room nobody can join and no SSE stream
    watches (joinRoom answers invalid_room): the gateway refuses it as joinRoom does, instead
    of logging an event that reaches no one."""
    gateway = server.app[NOTIFICATION_GATEWAY]
    before = await db.fetchval("SELECT count(*) FROM tiffin_rt.events")
    for order_id in ("01", "+1", "1.0"):
        with pytest.raises(InvalidRoom):
            await gateway.send_order_status_update(order_id, "ready")
        with pytest.raises(InvalidRoom):
            await gateway.send_notification(f"order-{order_id}", {"title": "x"})
    with pytest.raises(InvalidRoom):
        await gateway.send_order_status_update("1", "ready", rooms=["order-01"])
    assert await db.fetchval("SELECT count(*) FROM tiffin_rt.events") == before


async def test_a_send_the_log_cannot_store_raises_one_error_and_logs_nothing(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    """Unstorable input is one documented ValueError, InvalidNotification, raised before
    anything is logged (it was asyncpg's, orjson's or AttributeError, after a round trip)."""
    gateway = server.app[NOTIFICATION_GATEWAY]
    before = await db.fetchval("SELECT count(*) FROM tiffin_rt.events")
    bad_notifications: list[Any] = [
        {"title": "a\u0000b"},
        {"title": "ok", "data": {"k\u0000": 1}},
        {"title": "ok", "data": {"deep": ["x", {"y": "\u0000"}]}},
        {"title": "ok", "data": {1: "int key"}},
        {"title": "ok", "data": {"when": object()}},
        {"title": "ok", "data": ["not", "an", "object"]},
        {"title": 5},
        {"type": ["promo"]},
        ["title", "x"],
        "title",
    ]
    for note in bad_notifications:
        with pytest.raises(InvalidNotification):
            await gateway.send_notification("user-alice", note)
    for status, previous in (
        ("", None),
        (5, None),
        (None, None),
        ("re\u0000dy", None),
        ("ready", 3),
    ):
        with pytest.raises(InvalidNotification):
            await gateway.send_order_status_update("1", status, previous_status=previous)
    assert await db.fetchval("SELECT count(*) FROM tiffin_rt.events") == before
    # The marker: a good send after them is logged and delivered, text that merely looks like
    # an escape included.
    async with connected(url, token(settings, "alice")) as (_client, log):
        await gateway.send_notification("user-alice", {"title": "\\u0000 is fine as text"})
        [note] = await log.wait_for("notification", 1)
        assert note["title"] == "\\u0000 is fine as text"
