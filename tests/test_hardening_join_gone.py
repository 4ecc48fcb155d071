"""A client that leaves while its join is being checked enters nothing and logs no traceback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
import socketio
from aiohttp.test_utils import TestServer

from tests.helpers import eventually, leave, sio_client, token
from tiffin_rt.config import Settings
from tiffin_rt.keys import POOL, SOCKETIO


@asynccontextmanager
async def table_locked(db: asyncpg.Connection, table: str) -> AsyncIterator[None]:
    """Every read of `table` waits until the block ends: the slow database of the report."""
    async with db.transaction():
        await db.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        yield


def rooms_of(server: TestServer, namespace: str) -> dict[Any, Any]:
    rooms: dict[Any, Any] = server.app[SOCKETIO].manager.rooms.get(namespace, {})
    return rooms


def pool_idle(server: TestServer) -> bool:
    """Every pooled connection is back: a handler that was waiting on the lock has finished."""
    pool = server.app[POOL]
    return bool(pool.get_idle_size() == pool.get_size())


async def connect(url: str, tok: str, namespace: str, transport: str) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(
        url, namespaces=[namespace], auth={"token": tok}, transports=[transport], wait_timeout=5
    )
    return client


async def leave_during_query(
    server: TestServer,
    client: socketio.AsyncClient,
    namespace: str,
    event: str,
    data: Any,
    monitor: asyncpg.Connection,
) -> None:
    """Send `event`, wait until its query waits on the lock, disconnect, and wait until the
    server has seen the disconnect; the caller then releases the lock."""
    sid = client.get_sid(namespace)
    await client.emit(event, data, namespace=namespace)
    waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'relation'"
    deadline = asyncio.get_running_loop().time() + 5
    while not await monitor.fetchval(waiting):
        assert asyncio.get_running_loop().time() < deadline, "the query never waited"
        await asyncio.sleep(0.01)
    await leave(client)
    await eventually(lambda: sid not in rooms_of(server, namespace).get(None, {}))


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_join_room_of_a_client_that_left_during_the_check_enters_nothing(
    server: TestServer,
    url: str,
    settings: Settings,
    db: asyncpg.Connection,
    dsn: str,
    caplog: pytest.LogCaptureFixture,
    transport: str,
) -> None:
    caplog.set_level(logging.INFO)
    monitor = await asyncpg.connect(dsn)
    leaver = await connect(url, token(settings, "bob"), "/notifications", transport)
    try:
        async with table_locked(db, "public.orders"):
            await leave_during_query(
                server, leaver, "/notifications", "joinRoom", "order-3", monitor
            )
        await eventually(lambda: pool_idle(server))
    finally:
        await monitor.close()
    # The marker: another connection's join of the same order, after the first one's ended.
    watcher, _ = await sio_client(url, token(settings, "ops", "support"))
    try:
        ack = await watcher.call("joinRoom", "order-3", namespace="/notifications")
        assert (ack["ok"], ack["room"]) == (True, "order-3")
        members = rooms_of(server, "/notifications").get("order-3", {})
        assert list(members) == [watcher.get_sid("/notifications")]
    finally:
        await watcher.disconnect()
    await eventually(lambda: "order-3" not in rooms_of(server, "/notifications"))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_join_conversation_of_a_client_that_left_during_the_query_enters_nothing(
    server: TestServer,
    url: str,
    settings: Settings,
    db: asyncpg.Connection,
    dsn: str,
    caplog: pytest.LogCaptureFixture,
    transport: str,
) -> None:
    caplog.set_level(logging.INFO)
    starter = await connect(url, token(settings, "alice"), "/support", transport)
    ack = await starter.call("startConversation", {"subject": "s"}, namespace="/support")
    await starter.disconnect()
    conversation_id = ack["conversation"]["id"]
    room = f"conversation-{conversation_id}"
    monitor = await asyncpg.connect(dsn)
    leaver = await connect(url, token(settings, "alice"), "/support", transport)
    try:
        async with table_locked(db, "tiffin_rt.support_conversations"):
            await leave_during_query(
                server,
                leaver,
                "/support",
                "joinConversation",
                {"conversationId": conversation_id},
                monitor,
            )
        await eventually(lambda: pool_idle(server))
    finally:
        await monitor.close()
    # The marker: a later join by a connected agent is answered; only it is in the room.
    agent, _ = await sio_client(
        url, token(settings, "sam", "support"), namespace="/support", events=()
    )
    try:
        joined = await agent.call(
            "joinConversation", {"conversationId": conversation_id}, namespace="/support"
        )
        assert joined["ok"], joined
        assert list(rooms_of(server, "/support").get(room, {})) == [agent.get_sid("/support")]
    finally:
        await agent.disconnect()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
