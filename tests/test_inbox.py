"""The inbox: notifications kept with read state, REST, markRead, and read sync across devices."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from tests.helpers import base_url, eventually, marker_arrived, token
from tests.replay_helpers import NAMESPACE, connect, connected, delivered_live
from tiffin_rt.config import Settings
from tiffin_rt.db import inbox
from tiffin_rt.keys import ROUTER

StartServer = Callable[..., Awaitable[TestServer]]


async def _notify(db: asyncpg.Connection, user: str, title: str) -> int:
    return int(
        await db.fetchval(
            "SELECT tiffin_rt.notify_user($1, 'promo', $2, 'body', '{\"k\": 1}'::jsonb)",
            user,
            title,
        )
    )


def _auth(settings: Settings, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(settings, user)}"}


async def _get(url: str, headers: dict[str, str], path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url + path, headers=headers) as resp:
        return resp.status, await resp.json()


async def _post(url: str, headers: dict[str, str], path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(url + path, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_list_pages_newest_first_and_filters_unread(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    ids = [await _notify(db, "alice", f"n{i}") for i in range(5)]
    await _notify(db, "bob", "for bob")
    alice = _auth(settings, "alice")

    status, page = await _get(url, alice, "/api/notifications?limit=2")
    assert status == 200
    assert [n["id"] for n in page["notifications"]] == [ids[4], ids[3]]
    assert page["unread"] == 5
    assert page["nextBefore"] == ids[3]
    first = page["notifications"][0]
    assert first == {
        "id": ids[4],
        "type": "promo",
        "title": "n4",
        "body": "body",
        "data": {"k": 1},
        "createdAt": first["createdAt"],
        "eventId": ids[4],
        "read": False,
        "readAt": None,
    }
    status, page = await _get(url, alice, f"/api/notifications?limit=2&before={ids[3]}")
    assert [n["id"] for n in page["notifications"]] == [ids[2], ids[1]]
    status, page = await _get(url, alice, f"/api/notifications?limit=2&before={ids[1]}")
    assert [n["id"] for n in page["notifications"]] == [ids[0]]
    assert page["nextBefore"] is None

    status, body = await _post(url, alice, f"/api/notifications/{ids[1]}/read")
    assert (status, body) == (200, {"id": ids[1], "read": True, "marked": 1, "unread": 4})
    status, body = await _post(url, alice, f"/api/notifications/{ids[1]}/read")
    assert (status, body["marked"], body["unread"]) == (200, 0, 4)  # idempotent
    status, page = await _get(url, alice, "/api/notifications?unread=true")
    assert [n["id"] for n in page["notifications"]] == [ids[4], ids[3], ids[2], ids[0]]
    status, page = await _get(url, alice, "/api/notifications")
    assert [n["read"] for n in page["notifications"]] == [False, False, False, True, False]

    status, body = await _post(url, alice, "/api/notifications/read-all")
    assert (status, body) == (200, {"marked": 4, "unread": 0})
    status, page = await _get(url, alice, "/api/notifications?unread=1")
    assert (page["notifications"], page["unread"]) == ([], 0)


async def test_rest_errors_are_clear_and_change_nothing(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    bobs = await _notify(db, "bob", "private")
    alice = _auth(settings, "alice")
    status, body = await _post(url, alice, f"/api/notifications/{bobs}/read")
    assert (status, body["error"]["code"]) == (404, "not_found")
    for query in ("limit=0", "limit=1000", "limit=x", "before=-1", "unread=maybe"):
        status, body = await _get(url, alice, f"/api/notifications?{query}")
        assert (status, body["error"]["code"]) == (400, "bad_request"), query
    status, body = await _get(url, {}, "/api/notifications")
    assert status == 401
    _, page = await _get(url, _auth(settings, "bob"), "/api/notifications")
    assert page["unread"] == 1


async def test_inbox_and_read_state_survive_a_restart_and_log_pruning(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    server = await start_server(settings)
    url = base_url(server)
    ids = [await _notify(db, "alice", f"n{i}") for i in range(3)]
    await _post(url, _auth(settings, "alice"), f"/api/notifications/{ids[0]}/read")
    await server.close()
    await db.execute("DELETE FROM tiffin_rt.events")  # the event log's retention has passed

    server = await start_server(settings)
    url = base_url(server)
    _, page = await _get(url, _auth(settings, "alice"), "/api/notifications")
    assert [(n["id"], n["read"]) for n in page["notifications"]] == [
        (ids[2], False),
        (ids[1], False),
        (ids[0], True),
    ]
    assert page["unread"] == 2
    async with connected(url, token(settings, "alice")) as (_, log):
        notes = await log.wait_for("notification", 2)
        assert [n["id"] for n in notes] == [ids[1], ids[2]]
        [count] = await log.wait_for("unreadCount")
        assert count == {"unread": 2}


async def test_on_connect_a_device_gets_its_unread_notifications_once(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    ids = [await _notify(db, "alice", f"n{i}") for i in range(3)]
    await db.execute("SELECT tiffin_rt.notify_room('order-1', 'x', 'room note', '')")
    async with connected(url, token(settings, "alice")) as (_, log):
        notes = await log.wait_for("notification", 3)
        assert [n["id"] for n in notes] == ids
        assert all(n["read"] is False for n in notes)
        [count] = await log.wait_for("unreadCount")
        assert count == {"unread": 3}
        live = await _notify(db, "alice", "live")
        notes = await log.settled("notification", 4, db, "alice")
        assert [n["id"] for n in notes] == [*ids, live]


async def test_a_notification_committed_during_the_inbox_read_arrives_once(
    monkeypatch: pytest.MonkeyPatch,
    server: TestServer,
    url: str,
    settings: Settings,
    db: asyncpg.Connection,
) -> None:

    first = await _notify(db, "alice", "before")
    router = server.app[ROUTER]
    real = inbox.newest_unread
    committed: list[int] = []

    async def slow(*args: Any, **kwargs: Any) -> Any:
        before = router.delivered
        committed.append(await _notify(db, "alice", "during"))
        await eventually(lambda: router.delivered > before)
        return await real(*args, **kwargs)

    monkeypatch.setattr(inbox, "newest_unread", slow)
    async with connected(url, token(settings, "alice")) as (_, log):
        notes = await log.settled("notification", 2, db, "alice")
        assert [n["id"] for n in notes] == [first, *committed]


async def test_a_read_on_one_device_reaches_the_other_live(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    ids = [await _notify(db, "alice", f"n{i}") for i in range(3)]
    phone, on_phone = await connect(url, token(settings, "alice"))
    laptop, on_laptop = await connect(url, token(settings, "alice"))
    bob, on_bob = await connect(url, token(settings, "bob"))
    try:
        await on_laptop.wait_for("unreadCount")
        ack = await phone.call("markRead", {"ids": [ids[0], ids[2]]}, namespace=NAMESPACE)
        assert ack == {"ok": True, "marked": [ids[0], ids[2]], "unread": 1}
        [read] = await on_laptop.wait_for("notificationRead")
        assert read["ids"] == [ids[0], ids[2]]
        assert read["unread"] == 1
        assert isinstance(read["eventId"], int)
        assert read["readAt"].endswith("Z")

        status, _ = await _post(url, _auth(settings, "alice"), "/api/notifications/read-all")
        assert status == 200
        reads = await on_phone.wait_for("notificationRead", 2)
        assert (reads[1]["ids"], reads[1]["unread"]) == ([ids[1]], 0)
        await marker_arrived(db, "bob", on_bob)
        assert on_bob.of("notificationRead") == []
    finally:
        for client in (phone, laptop, bob):
            await client.disconnect()


async def test_a_read_reaches_a_device_on_another_server_process(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    first, second = await start_server(settings), await start_server(settings)
    note = await _notify(db, "alice", "hello")
    alice = token(settings, "alice")
    phone, _ = await connect(base_url(first), alice)
    laptop, on_laptop = await connect(base_url(second), alice)
    try:
        ack = await phone.call("markRead", note, namespace=NAMESPACE)
        assert ack["ok"] is True
        [read] = await on_laptop.wait_for("notificationRead")
        assert read["ids"] == [note]
    finally:
        await phone.disconnect()
        await laptop.disconnect()


async def test_a_reconnecting_device_gets_the_reads_it_missed(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    note = await _notify(db, "alice", "hello")
    laptop, on_laptop = await connect(url, token(settings, "alice"))
    [seen] = await on_laptop.wait_for("notification")
    await laptop.disconnect()
    await _post(url, _auth(settings, "alice"), f"/api/notifications/{note}/read")
    laptop, on_laptop = await connect(url, token(settings, "alice"), last_event_id=seen["eventId"])
    try:
        [read] = await on_laptop.wait_for("notificationRead")
        assert read["ids"] == [note]
        [count] = await on_laptop.wait_for("unreadCount")
        assert count == {"unread": 0}
        assert on_laptop.of("notification") == []
    finally:
        await laptop.disconnect()


@pytest.mark.parametrize(
    "argument", [None, "7", [], {"ids": "1"}, {"ids": [0]}, {"ids": [True]}, {"all": "yes"}]
)
async def test_mark_read_rejects_malformed_arguments(
    argument: Any, server: TestServer, url: str, settings: Settings
) -> None:
    async with connected(url, token(settings, "alice")) as (client, _):
        ack = await client.call("markRead", argument, namespace=NAMESPACE)
        assert ack["ok"] is False
        assert ack["error"]["code"] == "invalid_payload"
        assert "markRead" in ack["error"]["message"] or "id" in ack["error"]["message"]


async def test_latest_mode_sends_the_unread_count_and_latest_n(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    server = await start_server(inbox={"on_connect": "latest", "on_connect_limit": 2})
    url = base_url(server)
    ids = [await _notify(db, "alice", f"n{i}") for i in range(3)]
    await _post(url, _auth(settings, "alice"), f"/api/notifications/{ids[2]}/read")
    async with connected(url, token(settings, "alice")) as (_, log):
        [summary] = await log.wait_for("inbox")
        assert summary["unread"] == 2
        assert [(n["id"], n["read"]) for n in summary["notifications"]] == [
            (ids[2], True),
            (ids[1], False),
        ]
        await marker_arrived(db, "alice", log)
        assert log.of("notification") == []


async def test_off_mode_sends_nothing_on_connect(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    server = await start_server(inbox={"on_connect": "off"})
    url = base_url(server)
    await delivered_live(server.app, await _notify(db, "alice", "n"))
    async with connected(url, token(settings, "alice")) as (_, log):
        await marker_arrived(db, "alice", log)
        assert log.entries == []


async def test_a_lost_database_is_answered_and_the_inbox_works_again_after(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection, dsn: str
) -> None:
    note = await _notify(db, "alice", "hello")
    client, log = await connect(url, token(settings, "alice"))
    alice = _auth(settings, "alice")
    name = await db.fetchval("SELECT current_database()")
    base, _, query = dsn.partition("?")
    admin_dsn = base.rsplit("/", 1)[0] + "/postgres" + (f"?{query}" if query else "")
    admin = await asyncpg.connect(admin_dsn)
    try:
        await log.wait_for("unreadCount")
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'tiffin_rt'"
        )
        status, body = await _get(url, alice, "/api/notifications")
        assert (status, body["error"]["code"]) == (503, "unavailable")
        ack = await client.call("markRead", note, namespace=NAMESPACE)
        assert ack["ok"] is False
        assert ack["error"]["code"] == "unavailable"
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
    try:
        status, body = await _post(url, alice, f"/api/notifications/{note}/read")
        assert (status, body["unread"]) == (200, 0)
    finally:
        await client.disconnect()


async def test_a_read_then_a_new_notification_in_one_commit_arrive_in_that_order(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    """The badge a client shows is the last unread count plus what arrived after it: a
    notificationRead must not come after a notification that was committed later."""
    await db.execute("SELECT tiffin_rt.notify_user('alice', 'promo', 'Old', 'read soon')")
    async with connected(url, token(settings, "alice")) as (_, log):
        await log.wait_for("unreadCount")
        async with db.transaction():
            await db.execute("SELECT * FROM tiffin_rt.mark_notifications_read('alice')")
            await db.execute("SELECT tiffin_rt.notify_user('alice', 'promo', 'New', 'unread')")
        await log.wait_for("notification", count=2)
        await log.wait_for("notificationRead")
        live = [(name, data) for name, data in log.entries if name.startswith("notification")]
        assert [name for name, _ in live][-2:] == ["notificationRead", "notification"]
        assert live[-2][1]["unread"] == 0
        assert live[-1][1]["title"] == "New"
