"""Batching decided in log order: notifications for one user committed by concurrent backend
transactions are batched like a burst from one, without ever making a backend transaction wait
or fail; batching turned off still sends what was held; the inbox on connect and Web Push give
digests as the live channel does."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.conftest import StartServer
from tests.helpers import base_url, token
from tests.push_service import PushServiceForTests
from tests.test_batching import (
    WINDOW,
    batching,
    burst,
    connect,
    delivered,
    status_marker,
)
from tests.test_push import call, notify, push_config, pushes, vapid  # noqa: F401  (fixtures)
from tiffin_rt.config import Settings
from tiffin_rt.push.vapid import KeyPair

LIVE_STATUS = "orderStatusUpdate"
ISOLATIONS = ["read_committed", "repeatable_read"]


async def notify_in(conn: asyncpg.Connection, user: str, title: str) -> int:
    return int(
        await conn.fetchval("SELECT tiffin_rt.notify_user($1, 'promo', $2, '')", user, title)
    )


async def digests_written(db: asyncpg.Connection, user: str) -> list[int]:
    rows = await db.fetch(
        "SELECT (payload->>'count')::int AS n FROM tiffin_rt.events"
        " WHERE kind = 'notification_digest' AND payload->>'userId' = $1 ORDER BY id",
        user,
    )
    return [int(r["n"]) for r in rows]


async def until_digests(db: asyncpg.Connection, user: str, count: int = 1) -> list[int]:
    for _ in range(400):
        written = await digests_written(db, user)
        if len(written) >= count:
            return written
        await asyncio.sleep(0.025)
    raise AssertionError(f"no digest for {user} was written")


@pytest.mark.parametrize("isolation", ISOLATIONS)
async def test_concurrent_backend_transactions_for_one_user_are_batched(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection, dsn: str, isolation: str
) -> None:
    server = await start_server(batching=batching(window_seconds=2.0))
    url = base_url(server)
    alice = token(settings, "alice")
    client, log = await connect(url, alice)
    start = log.of("position")[0]["eventId"]
    writers = [await asyncpg.connect(dsn) for _ in range(8)]
    try:
        transactions = [w.transaction(isolation=isolation) for w in writers]  # type: ignore[arg-type]
        for transaction in transactions:
            await transaction.start()
        ids = [await notify_in(w, "alice", f"c{i}") for i, w in enumerate(writers)]
        await asyncio.wait_for(asyncio.gather(*(t.commit() for t in transactions)), 5)
        [digest] = await log.wait_for("notificationDigest", timeout=10)
        marker = await status_marker(db, log)
        again, replayed = await connect(url, alice, last_event_id=start)
        try:
            await status_marker(db, replayed)
        finally:
            await again.disconnect()
    finally:
        await client.disconnect()
        for writer in writers:
            await writer.close()
    ids.sort()
    assert [n["id"] for n in log.of("notification")] == ids[:5]
    assert digest["count"] == 3
    assert [i["data"]["id"] for i in digest["items"]] == ids[5:]
    assert delivered(replayed, start, marker) == delivered(log, start, marker)


@pytest.mark.parametrize("isolation", ISOLATIONS)
async def test_transactions_notifying_two_users_in_opposite_orders_never_wait_or_fail(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection, dsn: str, isolation: str
) -> None:
    server = await start_server(batching=batching(window_seconds=3.0))
    url = base_url(server)
    alice, on_alice = await connect(url, token(settings, "alice"))
    bob, on_bob = await connect(url, token(settings, "bob"))
    first, second = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        await burst(db, "alice", 5)
        await burst(db, "bob", 5, "b")
        one = first.transaction(isolation=isolation)  # type: ignore[arg-type]
        two = second.transaction(isolation=isolation)  # type: ignore[arg-type]
        await one.start()
        await two.start()
        # Each step is bounded: a per-user lock taken in the trigger would block here.
        await asyncio.wait_for(notify_in(first, "alice", "1a"), 2)
        await asyncio.wait_for(notify_in(second, "bob", "2b"), 2)
        await asyncio.wait_for(notify_in(first, "bob", "1b"), 2)
        await asyncio.wait_for(notify_in(second, "alice", "2a"), 2)
        await asyncio.wait_for(asyncio.gather(one.commit(), two.commit()), 2)
        [for_alice] = await on_alice.wait_for("notificationDigest", timeout=10)
        [for_bob] = await on_bob.wait_for("notificationDigest", timeout=10)
    finally:
        await first.close()
        await second.close()
        await alice.disconnect()
        await bob.disconnect()
    assert len(on_alice.of("notification")) == len(on_bob.of("notification")) == 5
    assert sorted(i["data"]["title"] for i in for_alice["items"]) == ["1a", "2a"]
    assert sorted(i["data"]["title"] for i in for_bob["items"]) == ["1b", "2b"]


async def test_items_held_when_batching_is_turned_off_still_go_out_in_a_digest(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    window = 30.0  # far past the restart: the digest can only come from the node without batching
    server = await start_server(batching=batching(window_seconds=window))
    url = base_url(server)
    alice = token(settings, "alice")
    client, log = await connect(url, alice)
    start = log.of("position")[0]["eventId"]
    ids = await burst(db, "alice", 8)
    await log.wait_for("notification", 5)
    await status_marker(db, log)
    await client.disconnect()
    await server.close()
    assert await digests_written(db, "alice") == []

    server = await start_server(batching={"enabled": False})
    url = base_url(server)
    assert await digests_written(db, "alice") == [3]
    client, log = await connect(url, alice, last_event_id=start)
    try:
        marker = await status_marker(db, log)
    finally:
        await client.disconnect()
    got = delivered(log, start, marker)
    assert [d["id"] for n, d in got if n == "notification"] == ids[:5]
    [digest] = [d for n, d in got if n == "notificationDigest"]
    assert [i["data"]["id"] for i in digest["items"]] == ids[5:8]
    assert digest["count"] == 3


async def test_the_inbox_on_connect_gives_the_digest_as_live_and_replay_do(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    server = await start_server(batching=batching())
    url = base_url(server)
    alice = token(settings, "alice")
    watcher, watched = await connect(url, alice)
    start = watched.of("position")[0]["eventId"]
    ids = await burst(db, "alice", 9)
    [digest] = await watched.wait_for("notificationDigest", timeout=5 + WINDOW)
    marker = await status_marker(db, watched)
    await watcher.disconnect()

    fresh, on_connect = await connect(url, alice)  # no lastEventId: the inbox on connect
    await fresh.disconnect()
    sent = [(n, d) for n, d in on_connect.entries if n in ("notification", "notificationDigest")]
    live = [(n, d["eventId"]) for n, d in delivered(watched, start, marker) if n != LIVE_STATUS]
    assert [(n, d["eventId"]) for n, d in sent] == live
    assert [d["id"] for n, d in sent if n == "notification"] == ids[:5]
    assert [d for n, d in sent if n == "notificationDigest"] == [digest]
    assert on_connect.of("unreadCount") == [{"unread": 9}]


async def test_an_offline_user_is_pushed_the_digest_instead_of_each_held_item(
    start_server: StartServer,
    settings: Settings,
    db: asyncpg.Connection,
    vapid: KeyPair,  # noqa: F811
    pushes: PushServiceForTests,  # noqa: F811
) -> None:
    server = await start_server(
        push=push_config(vapid, workers=1),
        batching=batching(),
        limits={"connect_per_ip": "1000/minute"},
    )
    phone = pushes.new_device()
    assert (await call(server, "POST", "alice", pushes.subscription(phone)))[0] == 201
    ids = await burst(db, "alice", 8)
    await until_digests(db, "alice")
    await asyncio.sleep(WINDOW)  # past the window: the rate counts afresh
    marker = await notify(db, "alice", "marker")  # a user's pushes go out in log order
    await pushes.wait_for(phone, 7)
    got = [p.payload for p in pushes.to(phone)]
    assert [p["id"] for p in got[:5]] == ids[:5]
    [summary, last] = got[5:]
    assert last["id"] == marker
    assert summary["type"] == "notificationDigest"
    assert summary["title"] == "3 new notifications"
    assert summary["body"] == "n5, n6, n7"
    assert summary["data"]["count"] == 3


async def test_a_replay_after_the_rate_rows_are_pruned_still_gives_the_digest_not_the_items(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    from tiffin_rt.db.digests import forget_old

    server = await start_server(batching=batching())
    url = base_url(server)
    alice = token(settings, "alice")
    client, log = await connect(url, alice)
    start = log.of("position")[0]["eventId"]
    await burst(db, "alice", 8)
    await log.wait_for("notificationDigest", timeout=5 + WINDOW)
    marker = await status_marker(db, log)
    await client.disconnect()
    await forget_old(db, -3600.0)  # as the pruner does, once the rows are old
    again, replayed = await connect(url, alice, last_event_id=start)
    try:
        await status_marker(db, replayed)
    finally:
        await again.disconnect()
    assert delivered(replayed, start, marker) == delivered(log, start, marker)
