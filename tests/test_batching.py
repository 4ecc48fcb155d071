"""Batching for busy periods: past the rate, a user's live channel gets one notificationDigest
per window instead of each; the inbox keeps every item, unread counts stay exact, and a replay
after a reconnect gives exactly what live delivery gave."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime
from typing import Any

import aiohttp
import asyncpg
import pytest
import socketio

from tests.conftest import StartServer
from tests.helpers import base_url, eventually, marker_arrived, sse_events, token
from tests.replay_helpers import Log
from tiffin_rt.config import Settings

NS = "/notifications"
EVENTS = (
    "notification",
    "notificationDigest",
    "orderStatusUpdate",
    "paymentStatusUpdate",
    "unreadCount",
    "position",
    "resync",
)
LIVE = ("notification", "notificationDigest", "orderStatusUpdate")
WINDOW = 1.0


def batching(**overrides: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "max_per_window": 5,
        "window_seconds": WINDOW,
        "digest_items": 3,
    } | overrides


async def connect(
    url: str, tok: str, *, transport: str = "websocket", last_event_id: int | None = None
) -> tuple[socketio.AsyncClient, Log]:
    auth: dict[str, Any] = {"token": tok}
    if last_event_id is not None:
        auth["lastEventId"] = last_event_id
    client = socketio.AsyncClient(reconnection=False)
    log = Log()
    for name in EVENTS:
        client.on(name, (lambda n: lambda data=None: log.record(n, data))(name), namespace=NS)
    await client.connect(url, namespaces=[NS], auth=auth, transports=[transport], wait_timeout=5)
    await log.wait_for("position")
    return client, log


async def burst(db: asyncpg.Connection, user: str, count: int, prefix: str = "n") -> list[int]:
    """`count` notifications committed together (so the rate is passed whatever the load)."""
    async with db.transaction():
        return [
            int(
                await db.fetchval(
                    "SELECT tiffin_rt.notify_user($1, 'promo', $2, '')", user, f"{prefix}{i}"
                )
            )
            for i in range(count)
        ]


_statuses = itertools.cycle(["confirmed", "preparing"])


async def status_marker(db: asyncpg.Connection, *logs: Log, order_id: int = 1) -> int:
    """An order status change of alice's order 1 (never batched by default), awaited on each
    client: it was logged after everything under test, so they have all of that."""
    await db.execute("UPDATE orders SET status = $2 WHERE id = $1", order_id, next(_statuses))
    marker = int(
        await db.fetchval("SELECT max(id) FROM tiffin_rt.events WHERE kind = 'order_status'")
    )
    for log in logs:
        await eventually(
            lambda log=log: any(u["eventId"] == marker for u in log.of("orderStatusUpdate"))
        )
    return marker


def delivered(log: Log, after: int, until: int) -> list[tuple[str, Any]]:
    """What a client was delivered of the log after `after`, up to `until`, in order."""
    return [
        (name, data)
        for name, data in log.entries
        if name in LIVE and isinstance(data, dict) and after < (data.get("eventId") or 0) <= until
    ]


async def inbox(url: str, settings: Settings, user: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token(settings, user)}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(url + "/api/notifications?limit=100", headers=headers) as response,
    ):
        body: dict[str, Any] = await response.json()
        return body


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_a_burst_reaches_the_live_channel_as_the_first_five_and_one_digest(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection, transport: str
) -> None:
    server = await start_server(batching=batching())
    url = base_url(server)
    client, log = await connect(url, token(settings, "alice"), transport=transport)
    bob, bobs = await connect(url, token(settings, "bob"))
    try:
        ids = await burst(db, "alice", 12)
        await burst(db, "bob", 2, "b")
        [digest] = await log.wait_for("notificationDigest", timeout=5 + WINDOW)
        await status_marker(db, log)
        await marker_arrived(db, "bob", bobs)
    finally:
        await client.disconnect()
        await bob.disconnect()
    assert [n["id"] for n in log.of("notification")] == ids[:5]
    assert log.of("notificationDigest") == [digest]
    assert digest["count"] == 7
    assert [i["event"] for i in digest["items"]] == ["notification"] * 3
    assert [i["data"]["id"] for i in digest["items"]] == ids[5:8]
    assert [i["data"]["title"] for i in digest["items"]] == ["n5", "n6", "n7"]
    assert digest["unread"] == 12
    since = datetime.fromisoformat(digest["since"])
    until = datetime.fromisoformat(digest["until"])
    assert (until - since).total_seconds() == pytest.approx(WINDOW, abs=0.002)
    assert digest["eventId"] > ids[-1]
    assert [n["title"] for n in bobs.of("notification")] == ["b0", "b1"]  # per user
    assert bobs.of("notificationDigest") == []

    kept = await inbox(url, settings, "alice")
    assert sorted(n["id"] for n in kept["notifications"]) == ids  # every item, once
    assert kept["unread"] == 12


async def test_unread_counts_stay_exact_through_digests_and_reads(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    server = await start_server(batching=batching())
    url = base_url(server)
    client, log = await connect(url, token(settings, "alice"))
    try:
        ids = await burst(db, "alice", 9)
        await log.wait_for("notificationDigest", timeout=5 + WINDOW)
        ack = await client.call("markRead", {"ids": ids[6:9]}, namespace=NS, timeout=5)
        assert ack == {"ok": True, "marked": ids[6:9], "unread": 6}
        await asyncio.sleep(WINDOW)  # past the window: the rate counts afresh
        more = await burst(db, "alice", 9, "m")
        digests = await log.wait_for("notificationDigest", 2, timeout=5 + 2 * WINDOW)
        await status_marker(db, log)
    finally:
        await client.disconnect()
    # 9 unread, 3 read, 9 more: the first 5 of them went out live, the other 4 in a digest.
    assert [d["count"] for d in digests] == [4, 4]
    assert digests[1]["unread"] == 6 + 9
    assert [n["id"] for n in log.of("notification")] == ids[:5] + more[:5]
    assert (await inbox(url, settings, "alice"))["unread"] == 15


async def test_a_replay_after_a_reconnect_gives_what_live_delivery_gave(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    server = await start_server(batching=batching(window_seconds=3.0))
    url = base_url(server)
    alice = token(settings, "alice")
    live, on_live = await connect(url, alice)
    start = on_live.of("position")[0]["eventId"]
    ids = await burst(db, "alice", 11)
    # One client reconnects within the window, before any digest is written: the replay
    # gives the first five, the digest reaches it live.
    early, on_early = await connect(url, alice, last_event_id=start)
    assert (
        await db.fetchval(
            "SELECT count(*) FROM tiffin_rt.events WHERE kind = 'notification_digest'"
        )
        == 0
    ), "the window ended before the client reconnected: raise window_seconds"
    try:
        await on_live.wait_for("notificationDigest", timeout=10)
        marker = await status_marker(db, on_live, on_early)
        # Another reconnects after it all: everything comes from the replay.
        late, on_late = await connect(url, alice, last_event_id=start)
        try:
            await status_marker(db, on_late)
        finally:
            await late.disconnect()
    finally:
        await live.disconnect()
        await early.disconnect()
    expected = delivered(on_live, start, marker)
    assert [d["eventId"] for n, d in expected if n == "notification"] == ids[:5]
    assert [n for n, _ in expected].count("notificationDigest") == 1
    assert delivered(on_early, start, marker) == expected
    assert delivered(on_late, start, marker) == expected
    assert on_early.of("resync") == on_late.of("resync") == []


async def test_order_status_is_never_batched_by_default(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    server = await start_server(batching=batching())
    client, log = await connect(base_url(server), token(settings, "alice"))
    try:
        async with db.transaction():
            for status in ["confirmed", "preparing"] * 4:
                await db.execute("UPDATE orders SET status = $1 WHERE id = 1", status)
        await marker_arrived(db, "alice", log)
    finally:
        await client.disconnect()
    assert len(log.of("orderStatusUpdate")) == 8
    assert log.of("notificationDigest") == []


async def test_batched_order_status_holds_per_user_and_never_touches_sse_or_the_kitchen(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    server = await start_server(batching=batching(kinds=["orderStatusUpdate"]))
    url = base_url(server)
    alice = token(settings, "alice")
    customer, on_customer = await connect(url, alice)
    kitchen, on_kitchen = await connect(
        url, token(settings, "k1", "kitchen", vendor_id="spice-garden")
    )
    statuses = ["confirmed", "preparing"] * 4
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                url + "/api/notifications/orders/1/status",
                headers={"Authorization": f"Bearer {alice}"},
            ) as response,
        ):
            stream = sse_events(response)
            await asyncio.wait_for(anext(stream), 5)  # the current status
            async with db.transaction():
                for status in statuses:
                    await db.execute("UPDATE orders SET status = $1 WHERE id = 1", status)
            on_sse = [await asyncio.wait_for(anext(stream), 5) for _ in statuses]
        [digest] = await on_customer.wait_for("notificationDigest", timeout=5 + WINDOW)
        await marker_arrived(db, "alice", on_customer)
        await eventually(lambda: len(on_kitchen.of("orderStatusUpdate")) >= 8)
    finally:
        await customer.disconnect()
        await kitchen.disconnect()
    assert [e.json()["status"] for e in on_sse] == statuses
    assert [u["status"] for u in on_customer.of("orderStatusUpdate")] == statuses[:5]
    assert digest["count"] == 3
    assert [i["event"] for i in digest["items"]] == ["orderStatusUpdate"] * 3
    assert [i["data"]["status"] for i in digest["items"]] == statuses[5:8]
    assert [u["status"] for u in on_kitchen.of("orderStatusUpdate")] == statuses
    assert on_kitchen.of("notificationDigest") == []


async def test_several_nodes_write_one_digest(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    first = await start_server(batching=batching())
    second = await start_server(batching=batching())
    alice = token(settings, "alice")
    one, on_one = await connect(base_url(first), alice)
    two, on_two = await connect(base_url(second), alice)
    try:
        await burst(db, "alice", 8)
        await on_one.wait_for("notificationDigest", timeout=5 + WINDOW)
        await on_two.wait_for("notificationDigest", timeout=5 + WINDOW)
        await status_marker(db, on_one, on_two)
    finally:
        await one.disconnect()
        await two.disconnect()
    assert len(on_one.of("notificationDigest")) == len(on_two.of("notificationDigest")) == 1
    assert (
        await db.fetchval(
            "SELECT count(*) FROM tiffin_rt.events WHERE kind = 'notification_digest'"
        )
        == 1
    )


async def _digest_counts(db: asyncpg.Connection) -> list[int]:
    rows = await db.fetch(
        "SELECT (payload->>'count')::int AS n FROM tiffin_rt.events"
        " WHERE kind = 'notification_digest' ORDER BY id"
    )
    return [int(r["n"]) for r in rows]


async def test_a_digest_due_while_no_node_ran_is_written_after_a_restart(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    window = 3.0
    server = await start_server(batching=batching(window_seconds=window))
    await burst(db, "alice", 7)
    await server.close()
    assert await _digest_counts(db) == [], "the window ended before the server stopped"
    await asyncio.sleep(window)  # the window ends while no node runs
    assert await _digest_counts(db) == []
    await start_server(batching=batching(window_seconds=window))
    for _ in range(200):
        if await _digest_counts(db):
            break
        await asyncio.sleep(0.025)
    assert await _digest_counts(db) == [2]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("kinds", "[notification, typing]", "batching.kinds.1"),
        ("kinds", "[]", "batching.kinds"),
        ("window_seconds", "0", "batching.window_seconds"),
        ("max_per_window", "0", "batching.max_per_window"),
        ("max_per_window", "five", "batching.max_per_window"),
    ],
)
def test_batching_config_errors_name_the_key(key: str, value: str, message: str) -> None:
    from tiffin_rt.config import ConfigError, load_settings

    environ = {
        "TIFFIN_RT__AUTH__JWT_SECRET": "x" * 40,
        f"TIFFIN_RT__BATCHING__{key.upper()}": value,
    }
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_settings(None, environ)
