"""Notifications from the backend's SQL functions, and existing NOTIFY channels."""

from __future__ import annotations

import json
import logging

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import base_url, make_settings, marker_arrived, sio_client, token
from tiffin_rt.config import Settings
from tiffin_rt.db.pruner import prune_once
from tiffin_rt.keys import POOL


async def test_notify_user_reaches_every_device_of_that_user_only(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    phone, on_phone = await sio_client(url, token(settings, "alice"))
    laptop, on_laptop = await sio_client(url, token(settings, "alice"))
    bob, on_bob = await sio_client(url, token(settings, "bob"))
    try:
        await db.execute(
            "SELECT tiffin_rt.notify_user('alice', 'promo', 'Free delivery', 'Today only',"
            " $1::jsonb)",
            '{"code": "FREEDEL"}',
        )
        for received in (on_phone, on_laptop):
            [note] = await received.wait_for("notification")
            assert note["type"] == "promo"
            assert note["title"] == "Free delivery"
            assert note["body"] == "Today only"
            assert note["data"] == {"code": "FREEDEL"}
            assert note["createdAt"].endswith("Z")
            assert note["id"] == note["eventId"]
        await marker_arrived(db, "bob", on_bob)
        assert on_bob.of("notification") == []
    finally:
        for client in (phone, laptop, bob):
            await client.disconnect()


async def test_a_20kb_notification_arrives_whole(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    client, received = await sio_client(url, token(settings, "alice"))
    body = "".join(chr(0x41 + i % 26) for i in range(20_000)) + " ✓ naïve 食"
    try:
        await db.execute(
            "SELECT tiffin_rt.notify_room('order-1', 'receipt', 'Your receipt', $1)", body
        )
        await client.call("joinRoom", "order-1", namespace="/notifications")
        await db.execute(
            "SELECT tiffin_rt.notify_room('order-1', 'receipt', 'Your receipt', $1)", body
        )
        [note] = await received.wait_for("notification")
        assert note["body"] == body
        assert note["room"] == "order-1"
    finally:
        await client.disconnect()


async def test_notification_in_a_rolled_back_transaction_is_never_sent(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    client, received = await sio_client(url, token(settings, "alice"))
    try:
        tx = db.transaction()
        await tx.start()
        await db.execute("SELECT tiffin_rt.notify_user('alice', 'x', 'never', 'sent')")
        await tx.rollback()
        await db.execute("SELECT tiffin_rt.notify_user('alice', 'x', 'sent', 'once')")
        [note] = await received.wait_for("notification")
        assert note["title"] == "sent"
    finally:
        await client.disconnect()


@pytest.fixture
def channel_settings(dsn: str) -> Settings:
    return make_settings(
        dsn,
        notifications={
            "extra_channels": [
                {
                    "channel": "order_status",
                    "order_id_field": "orderId",
                    "status_field": "status",
                    "customer_field": "userId",
                },
            ]
        },
    )


async def test_malformed_channel_payload_does_not_stop_the_next_good_one(
    start_server: StartServer,
    channel_settings: Settings,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = await start_server(channel_settings)
    url = base_url(server)
    client, received = await sio_client(url, token(channel_settings, "carol"))
    try:
        with caplog.at_level(logging.WARNING, logger="tiffin_rt.db.listener"):
            # Each an order id no joinRoom or SSE stream accepts for order 3 (an integer id
            # column), or a customer no user room has: malformed, counted, not sent nowhere.
            odd_ids: list[object] = ["03", "+3", " 3", "3\u0000", "\u00b3", 3.0, True, "x" * 7000]
            bad_payloads = [
                "not json",
                "[1, 2]",
                '{"status": "ready"}',
                '{"orderId": {"a": 1}}',
                *(json.dumps({"orderId": odd, "status": "ready"}) for odd in odd_ids),
                json.dumps({"orderId": 3, "status": "ready", "userId": "carol\u0000"}),
                json.dumps({"orderId": 3, "status": "ready", "userId": ["carol"]}),
            ]
            for bad in bad_payloads:
                await db.execute("SELECT pg_notify('order_status', $1)", bad)
            good = {"orderId": 77, "status": "ready", "userId": "carol"}
            await db.execute("SELECT pg_notify('order_status', $1)", json.dumps(good))
            [update] = await received.wait_for("orderStatusUpdate")
        assert update["orderId"] == "77"
        assert update["status"] == "ready"
        assert update["eventId"] is None
        warnings = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
        assert len(warnings) == len(bad_payloads)
        assert f"({len(bad_payloads)} so far)" in warnings[-1]
        assert received.of("orderStatusUpdate") == [update]
    finally:
        await client.disconnect()


async def test_two_server_processes_each_deliver_once_to_their_own_clients(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    first = await start_server(settings)
    second = await start_server(settings)
    on_first, got_first = await sio_client(base_url(first), token(settings, "alice"))
    on_second, got_second = await sio_client(base_url(second), token(settings, "alice"))
    try:
        await db.execute("UPDATE orders SET status = 'ready' WHERE id = 1")
        await db.execute("SELECT tiffin_rt.notify_user('alice', 'promo', 'T', 'B')")
        for received in (got_first, got_second):
            await received.wait_for("orderStatusUpdate")
            await received.wait_for("notification")
        await marker_arrived(db, "alice", got_first, got_second)
        for received in (got_first, got_second):
            assert len(received.of("orderStatusUpdate")) == 1
            assert len(received.of("notification")) == 1
    finally:
        await on_first.disconnect()
        await on_second.disconnect()


async def test_retention_prunes_only_old_events(server: TestServer, db: asyncpg.Connection) -> None:
    await db.execute("SELECT tiffin_rt.notify_user('alice', 'old', 'T', 'B')")
    await db.execute("SELECT tiffin_rt.notify_user('alice', 'new', 'T', 'B')")
    await db.execute(
        "UPDATE tiffin_rt.events SET created_at = now() - interval '8 days'"
        " WHERE payload->>'type' = 'old'"
    )
    removed = await prune_once(server.app[POOL], retention_days=7)
    assert removed == 1
    kinds = await db.fetch("SELECT payload->>'type' AS t FROM tiffin_rt.events")
    assert [r["t"] for r in kinds] == ["new"]
