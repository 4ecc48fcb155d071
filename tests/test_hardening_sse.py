"""SSE edges: a client that leaves while its stream is being set up, and the first event."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from tests.helpers import SseEvent, eventually, sio_client, sse_events, token
from tiffin_rt.config import Settings

NS = "/notifications"
ORDER_1 = "/api/notifications/orders/1/status"


async def _wait_for_lock_waiter(db: asyncpg.Connection) -> None:
    """Until the server's order lookup is blocked behind the test's table lock."""
    for _ in range(200):
        waiting = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'tiffin_rt' AND wait_event_type = 'Lock'"
        )
        if waiting:
            return
        await asyncio.sleep(0.025)
    raise AssertionError("the order lookup never waited for the lock")


async def test_a_client_leaving_during_the_order_lookup_is_no_error(
    server: TestServer,
    url: str,
    settings: Settings,
    dsn: str,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    tok = token(settings, "alice")
    locker = await asyncpg.connect(dsn)
    try:
        transaction = locker.transaction()
        await transaction.start()
        await locker.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        async with aiohttp.ClientSession() as http:
            request = asyncio.create_task(http.get(f"{url}{ORDER_1}?access_token={tok}"))
            await _wait_for_lock_waiter(db)
            request.cancel()  # the browser tab closes while the server reads the order
            with pytest.raises(asyncio.CancelledError):
                await request
        # The server has seen the socket close (the lookup still waits for the lock).
        web_server = server.runner.server if server.runner is not None else None
        assert web_server is not None
        await eventually(lambda: all(h.transport is None for h in web_server.connections))
        await transaction.rollback()
    finally:
        await locker.close()

    # The server goes on: the same user streams the order, and the next change arrives.
    marker, to_marker = await sio_client(url, tok)
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{url}{ORDER_1}?access_token={tok}") as response,
        ):
            events = sse_events(response)
            assert (await anext(events)).json()["status"] == "pending"
            assert (await marker.call("joinRoom", "order-1", namespace=NS))["ok"]
            await db.execute("UPDATE orders SET status = 'confirmed' WHERE id = 1")
            assert (await anext(events)).json()["status"] == "confirmed"
            await to_marker.wait_for("orderStatusUpdate")
    finally:
        await marker.disconnect()
    problems = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert [r.getMessage() for r in problems] == []


async def _stream_first_two(
    url: str, tok: str, db: asyncpg.Connection, then: str
) -> tuple[SseEvent, SseEvent]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}{ORDER_1}?access_token={tok}") as response,
    ):
        events = sse_events(response)
        first = await anext(events)
        await db.execute("UPDATE orders SET status = $1 WHERE id = 1", then)
        return first, await anext(events)


async def test_the_first_event_has_every_field_of_the_later_ones(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    tok = token(settings, "alice")
    # An order with no event in the log yet: position 0, no previous status.
    first, later = await _stream_first_two(url, tok, db, "confirmed")
    assert first.json().keys() == later.json().keys()
    assert first.json()["previousStatus"] is None
    assert (first.id, first.json()["eventId"]) == ("0", 0)
    # Resuming from that position replays the change.
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{url}{ORDER_1}?access_token={tok}", headers={"Last-Event-ID": first.id or ""}
        ) as response,
    ):
        replayed = await anext(sse_events(response))
        assert replayed.json() == later.json()
    # An order whose status came from an event: that event's id and previous status.
    first, later = await _stream_first_two(url, tok, db, "preparing")
    assert first.json().keys() == later.json().keys()
    assert first.json()["previousStatus"] == "pending"
    assert first.json()["status"] == "confirmed"
    assert int(first.id or 0) == first.json()["eventId"] < later.json()["eventId"]
