"""A connection told `resync` (too far behind) harms nobody: its own joinRoom still works, and
every other connection keeps getting every live event."""

from __future__ import annotations

import logging

import asyncpg
import pytest
import socketio
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import eventually, make_settings, token
from tests.replay_helpers import NAMESPACE, connected, set_statuses
from tests.test_hardening_join_gone import leave_during_query, pool_idle, rooms_of, table_locked
from tiffin_rt.config import Settings


async def test_joining_right_after_a_resync_is_answered_and_others_lose_nothing(
    start_server: StartServer,
    dsn: str,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(dsn, replay={"max_events": 3})
    server = await start_server(settings)
    url = str(server.make_url("")).rstrip("/")
    alice, bob = token(settings, "alice"), token(settings, "bob")
    # Order 2 starts confirmed: five changes, four of them after `first` (over max_events).
    [first, *_] = await set_statuses(db, 2, ["preparing", "ready"] * 2 + ["preparing"])
    caplog.set_level(logging.WARNING)
    async with connected(url, alice) as (healthy, to_healthy), connected(url, bob) as (_, to_bob):
        assert (await healthy.call("joinRoom", "order-2", namespace=NAMESPACE))["ok"] is True
        async with connected(url, alice, last_event_id=first) as (behind, to_behind):
            # As the README's reconnect code does: join at once, racing the connect-time replay.
            ack = await behind.call("joinRoom", "order-2", namespace=NAMESPACE)
            assert ack["ok"] is True, ack
            [resync] = await to_behind.wait_for("resync")
            assert resync["reason"] == "too_many"
            [later] = await set_statuses(db, 2, ["ready"])
            [bobs] = await set_statuses(db, 3, ["ready"])
            for log in (to_healthy, to_behind):
                await log.wait_for("orderStatusUpdate", 1)
                assert [u["eventId"] for u in log.of("orderStatusUpdate")] == [later]
            [update] = await to_bob.wait_for("orderStatusUpdate")
            assert update["eventId"] == bobs
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_a_join_waiting_behind_the_replay_of_a_client_that_left_enters_nothing(
    server: TestServer,
    url: str,
    settings: Settings,
    db: asyncpg.Connection,
    dsn: str,
    caplog: pytest.LogCaptureFixture,
    transport: str,
) -> None:
    caplog.set_level(logging.INFO)
    [first, *_] = await set_statuses(db, 2, ["preparing", "ready"])
    leaver = socketio.AsyncClient(reconnection=False)
    monitor = await asyncpg.connect(dsn)
    try:
        # The replay's read of the log waits on the lock; the join waits behind the replay.
        async with table_locked(db, "tiffin_rt.events"):
            await leaver.connect(
                url,
                namespaces=[NAMESPACE],
                auth={"token": token(settings, "alice"), "lastEventId": first},
                transports=[transport],
                wait_timeout=5,
            )
            await leave_during_query(server, leaver, NAMESPACE, "joinRoom", "order-2", monitor)
        await eventually(lambda: pool_idle(server))
    finally:
        await monitor.close()
    # The marker: a later join of the same order is answered, and only it is in the room.
    async with connected(url, token(settings, "alice")) as (watcher, _):
        ack = await watcher.call("joinRoom", "order-2", namespace=NAMESPACE)
        assert ack["ok"] is True
        members = rooms_of(server, NAMESPACE).get("order-2", {})
        assert list(members) == [watcher.get_sid(NAMESPACE)]
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
