"""Notifications from the backend's SQL functions, and existing NOTIFY channels."""

from __future__ import annotations

import asyncio
import json
import logging

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import make_settings, sio_client, token
from tiffin_rt.config import Settings


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
        await asyncio.sleep(0.2)
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
    url = str(server.make_url("")).rstrip("/")
    client, received = await sio_client(url, token(channel_settings, "carol"))
    try:
        with caplog.at_level(logging.WARNING, logger="tiffin_rt.db.listener"):
            for bad in ("not json", "[1, 2]", '{"status": "ready"}', '{"orderId": {"a": 1}}'):
                await db.execute("SELECT pg_notify('order_status', $1)", bad)
            good = {"orderId": 77, "status": "ready", "userId": "carol"}
            await db.execute("SELECT pg_notify('order_status', $1)", json.dumps(good))
            [update] = await received.wait_for("orderStatusUpdate")
        assert update["orderId"] == "77"
        assert update["status"] == "ready"
        assert update["eventId"] is None
        warnings = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
        assert len(warnings) == 4
        assert "(4 so far)" in warnings[-1]
    finally:
        await client.disconnect()
