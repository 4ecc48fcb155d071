"""Socket.IO: a client that reconnects with lastEventId gets what it missed, then live events."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import base_url, eventually, marker_arrived, token
from tests.replay_helpers import FIVE, NAMESPACE, connect, connected, delivered_live, set_statuses
from tiffin_rt.config import Settings
from tiffin_rt.db import replay
from tiffin_rt.keys import ROUTER


async def _last_seen(url: str, settings: Settings, db: asyncpg.Connection) -> int:
    """Connect, see one live update of order 1, disconnect: the id a phone would keep."""
    async with connected(url, token(settings, "alice")) as (_, log):
        await set_statuses(db, 1, ["confirmed"])
        [update] = await log.wait_for("orderStatusUpdate")
        return int(update["eventId"])


async def test_reconnect_gets_exactly_the_five_missed_in_order_then_live(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    last = await _last_seen(url, settings, db)
    missed = await set_statuses(db, 1, ["preparing", "ready", "preparing", "ready", "preparing"])

    async with connected(url, token(settings, "alice"), last_event_id=last) as (_, log):
        updates = await log.wait_for("orderStatusUpdate", 5)
        assert [u["eventId"] for u in updates] == missed
        assert [u["status"] for u in updates] == ["preparing", "ready", "preparing", "ready",
                                                  "preparing"]
        assert all(u["orderId"] == "1" for u in updates)
        [live] = await set_statuses(db, 1, ["ready"])
        updates = await log.wait_for("orderStatusUpdate", 6)
        assert updates[5]["eventId"] == live
        await marker_arrived(db, "alice", log)
        assert [u["eventId"] for u in log.of("orderStatusUpdate")] == [*missed, live]
        assert log.of("resync") == []


async def test_missed_notifications_are_replayed_with_status_updates_in_log_order(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    last = await _last_seen(url, settings, db)
    await set_statuses(db, 1, ["preparing"])
    await db.execute("SELECT tiffin_rt.notify_user('alice', 'promo', 'Half price', 'Today')")
    await set_statuses(db, 1, ["ready"])
    await db.execute("SELECT tiffin_rt.notify_user('bob', 'promo', 'Not for alice', '')")

    async with connected(url, token(settings, "alice"), last_event_id=str(last)) as (_, log):
        await log.wait_for("orderStatusUpdate", 2)
        await log.wait_for("notification", 1)
        await marker_arrived(db, "alice", log)
        names = [name for name, _ in log.entries if name != "unreadCount"]
        assert names == ["orderStatusUpdate", "notification", "orderStatusUpdate"]
        ids = log.event_ids()
        assert ids == sorted(ids)
        assert log.of("notification")[0]["title"] == "Half price"


async def test_rejoining_an_order_room_replays_what_that_room_missed(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    support = token(settings, "sam", "support")
    client, log = await connect(url, support)
    await client.call("joinRoom", "order-3", namespace=NAMESPACE)
    [first] = await set_statuses(db, 3, ["ready"])
    await log.wait_for("orderStatusUpdate")
    await client.disconnect()

    missed = await set_statuses(db, 3, FIVE)
    await set_statuses(db, 1, ["preparing"])  # another order: not in a room support rejoins
    async with connected(url, support, last_event_id=first) as (client, log):
        await marker_arrived(db, "sam", log)
        assert log.of("orderStatusUpdate") == []  # support's own room had nothing
        ack = await client.call("joinRoom", "order-3", namespace=NAMESPACE)
        assert (ack["ok"], ack["room"]) == (True, "order-3")
        updates = await log.wait_for("orderStatusUpdate", 5)
        assert [u["eventId"] for u in updates] == missed
        [live] = await set_statuses(db, 3, ["delivered"])
        updates = await log.settled("orderStatusUpdate", 6, db, "sam")
        assert [u["eventId"] for u in updates] == [*missed, live]


async def test_rejoining_a_room_sends_nothing_already_received_through_the_user_room(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    last = await _last_seen(url, settings, db)
    missed = await set_statuses(db, 1, FIVE[1:])
    async with connected(url, token(settings, "alice"), last_event_id=last) as (client, log):
        await log.wait_for("orderStatusUpdate", 4)
        ack = await client.call("joinRoom", "order-1", namespace=NAMESPACE)
        assert ack["ok"] is True
        await marker_arrived(db, "alice", log)
        assert [u["eventId"] for u in log.of("orderStatusUpdate")] == missed


@pytest.fixture
async def short_replay(start_server: StartServer) -> TestServer:
    """A server that replays at most three missed events, and asks for a resync past that."""
    return await start_server(replay={"max_events": 3})


def _around_replay_query(
    monkeypatch: pytest.MonkeyPatch, before: Callable[[], Awaitable[None]] | None = None,
    after: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run `before`/`after` inside the replay's read of the log, to commit in the middle of it."""
    real = replay.events_for_rooms

    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        if before is not None:
            await before()
        result = await real(*args, **kwargs)
        if after is not None:
            await after()
        return result

    monkeypatch.setattr(replay, "events_for_rooms", wrapped)


@pytest.mark.parametrize("when", ["before", "after"])
async def test_event_committed_while_the_replay_query_runs_arrives_once_and_in_order(
    when: str,
    monkeypatch: pytest.MonkeyPatch,
    server: TestServer,
    url: str,
    settings: Settings,
    db: asyncpg.Connection,
) -> None:
    last = await _last_seen(url, settings, db)
    missed = await set_statuses(db, 1, FIVE[1:])
    router = server.app[ROUTER]
    committed: list[int] = []

    async def commit_and_wait_for_live_delivery() -> None:
        before = router.delivered
        committed.extend(await set_statuses(db, 1, ["delivered"]))
        await eventually(lambda: router.delivered > before)

    _around_replay_query(monkeypatch, **{when: commit_and_wait_for_live_delivery})
    async with connected(url, token(settings, "alice"), last_event_id=last) as (_, log):
        updates = await log.settled("orderStatusUpdate", 5, db, "alice")
        assert [u["eventId"] for u in updates] == [*missed, *committed]


async def test_an_id_older_than_retention_gets_resync_then_live(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    last = await _last_seen(url, settings, db)
    await set_statuses(db, 1, ["preparing", "ready"])
    await db.execute("DELETE FROM tiffin_rt.events WHERE id <= $1 + 1", last)  # as pruning does
    async with connected(url, token(settings, "alice"), last_event_id=last) as (_, log):
        [resync] = await log.wait_for("resync")
        assert resync["reason"] == "expired"
        assert resync["lastEventId"] == last
        assert log.of("orderStatusUpdate") == []
        [live] = await set_statuses(db, 1, ["delivered"])
        [update] = await log.wait_for("orderStatusUpdate")
        assert update["eventId"] == live


@pytest.mark.parametrize(
    ("last_event_id", "reason"), [(10**9, "expired"), ("abc", "invalid"), (-3, "invalid")]
)
async def test_an_unknown_or_malformed_id_gets_resync_and_the_connection_stays(
    last_event_id: Any,
    reason: str,
    server: TestServer,
    url: str,
    settings: Settings,
    db: asyncpg.Connection,
) -> None:
    async with connected(url, token(settings, "alice"), last_event_id=last_event_id) as (_, log):
        [resync] = await log.wait_for("resync")
        assert resync["reason"] == reason
        assert resync["message"]
        [live] = await set_statuses(db, 1, ["confirmed"])
        [update] = await log.wait_for("orderStatusUpdate")
        assert update["eventId"] == live


async def test_too_many_missed_events_get_resync_instead_of_a_flood(
    short_replay: TestServer, settings: Settings, db: asyncpg.Connection
) -> None:
    url = base_url(short_replay)
    last = await _last_seen(url, settings, db)
    missed = await set_statuses(db, 1, FIVE[1:])
    # Missed once the server has read them: one still unread is sent live after the replay.
    await delivered_live(short_replay.app, missed[-1])
    async with connected(url, token(settings, "alice"), last_event_id=last) as (_, log):
        [resync] = await log.wait_for("resync")
        assert resync["reason"] == "too_many"
        await marker_arrived(db, "alice", log)
        assert log.of("orderStatusUpdate") == []


async def test_connections_without_last_event_id_replay_nothing(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    ids = await set_statuses(db, 1, FIVE)
    await delivered_live(server.app, ids[-1])
    async with connected(url, token(settings, "alice")) as (client, log):
        await client.call("joinRoom", "order-1", namespace=NAMESPACE)
        await marker_arrived(db, "alice", log)
        assert log.of("orderStatusUpdate") == []
        assert log.of("resync") == []


async def test_a_disconnect_during_replay_leaves_the_server_serving(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    last = await _last_seen(url, settings, db)
    await set_statuses(db, 1, FIVE[1:])
    for _ in range(5):
        client, _log = await connect(url, token(settings, "alice"), last_event_id=last)
        await client.disconnect()
    async with connected(url, token(settings, "alice"), last_event_id=last) as (_, log):
        await log.wait_for("orderStatusUpdate", 4)
    await asyncio.sleep(0.1)


async def test_resuming_on_another_server_process_gets_the_missed_events_once(
    start_server: StartServer,
    settings: Settings,
    db: asyncpg.Connection,
) -> None:
    first, second = await start_server(settings), await start_server(settings)
    last = await _last_seen(base_url(first), settings, db)
    missed = await set_statuses(db, 1, FIVE[1:])
    url = base_url(second)
    async with connected(url, token(settings, "alice"), last_event_id=last) as (_, log):
        await log.wait_for("orderStatusUpdate", 4)
        [live] = await set_statuses(db, 1, ["delivered"])
        updates = await log.settled("orderStatusUpdate", 5, db, "alice")
        assert [u["eventId"] for u in updates] == [*missed, live]


async def test_a_room_that_missed_too_much_gets_a_resync_naming_it(
    short_replay: TestServer, settings: Settings, db: asyncpg.Connection
) -> None:
    url = base_url(short_replay)
    support = token(settings, "sam", "support")
    [first] = await set_statuses(db, 3, ["ready"])
    missed = await set_statuses(db, 3, FIVE[1:])
    await delivered_live(short_replay.app, missed[-1])
    async with connected(url, support, last_event_id=first) as (client, log):
        ack = await client.call("joinRoom", "order-3", namespace=NAMESPACE)
        assert (ack["ok"], ack["room"]) == (True, "order-3")
        [resync] = await log.wait_for("resync")
        assert (resync["reason"], resync["room"]) == ("too_many", "order-3")
        assert log.of("orderStatusUpdate") == []
        [live] = await set_statuses(db, 3, ["delivered"])
        [update] = await log.wait_for("orderStatusUpdate")
        assert update["eventId"] == live
