"""Events delivered from their NOTIFY payload and events read back from the log reach clients
alike, in log order, exactly once; a wake-up that carries no event still delivers."""

from __future__ import annotations

import logging

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from tests.helpers import marker_arrived, token
from tests.replay_helpers import connect, delivered_live, set_statuses
from tiffin_rt.config import Settings

OVERSIZED = "x" * 9000  # beyond PostgreSQL's 8000-byte NOTIFY payload: only the id is carried


async def test_small_and_oversized_events_of_one_transaction_arrive_once_in_order(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    client, log = await connect(url, token(settings, "alice"))
    try:
        bodies = ["first", OVERSIZED, "third", OVERSIZED + "!", "fifth"]
        async with db.transaction():
            for n, body in enumerate(bodies):
                await db.execute(
                    "SELECT tiffin_rt.notify_user('alice', 'receipt', $1, $2)", f"n{n}", body
                )
        notes = await log.wait_for("notification", count=5)
        assert [n["title"] for n in notes] == ["n0", "n1", "n2", "n3", "n4"]
        assert [n["body"] for n in notes] == bodies
        ids = [n["eventId"] for n in notes]
        assert ids == sorted(ids)
        assert len(set(ids)) == 5
        await marker_arrived(db, "alice", log)
        assert len(log.of("notification")) == 5
    finally:
        await client.disconnect()


async def test_a_live_update_is_identical_to_its_replay_from_the_log(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    """The payload a client gets live (from the NOTIFY) equals what a reconnect reads back."""
    live_client, live = await connect(url, token(settings, "alice"))
    try:
        [before] = await set_statuses(db, 1, ["confirmed"])
        await live.wait_for("orderStatusUpdate")
        await set_statuses(db, 1, ["preparing"])
        await db.execute("SELECT tiffin_rt.notify_user('alice', 'promo', 'Tea', 'On us')")
        await live.wait_for("notification")
        [live_update] = live.of("orderStatusUpdate")[1:]
        [live_note] = live.of("notification")
    finally:
        await live_client.disconnect()
    await delivered_live(server.app, live_note["eventId"])

    again, replayed = await connect(url, token(settings, "alice"), last_event_id=before)
    try:
        [replayed_update] = await replayed.wait_for("orderStatusUpdate")
        [replayed_note] = await replayed.wait_for("notification")
        assert replayed_update == live_update
        assert replayed_note == live_note
    finally:
        await again.disconnect()


@pytest.mark.parametrize("wakeup", ["", "17", "{not json", '{"id": "x"}'])
async def test_a_wakeup_without_a_usable_event_still_delivers_from_the_log(
    server: TestServer,
    url: str,
    settings: Settings,
    db: asyncpg.Connection,
    wakeup: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An older tiffin_rt node (empty payload), an id-only wake-up, or a foreign NOTIFY on the
    channel: the listener reads the log, delivers, and keeps serving."""
    client, log = await connect(url, token(settings, "alice"))
    try:
        async with db.transaction():
            # The row without append_event's NOTIFY, then the wake-up under test.
            await db.execute(
                "INSERT INTO tiffin_rt.events (kind, rooms, payload, customer_id)"
                " VALUES ('notification', ARRAY['user-alice'],"
                " '{\"type\": \"t\", \"title\": \"from the log\", \"body\": \"b\"}', 'alice')"
            )
            await db.execute("SELECT pg_notify('tiffin_rt_events', $1)", wakeup)
        [note] = await log.wait_for("notification")
        assert note["title"] == "from the log"
        await db.execute("SELECT tiffin_rt.notify_user('alice', 't', 'carried', 'b')")
        notes = await log.wait_for("notification", count=2)
        assert [n["title"] for n in notes] == ["from the log", "carried"]
        await marker_arrived(db, "alice", log)
        assert len(log.of("notification")) == 2
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        await client.disconnect()
