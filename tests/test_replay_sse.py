"""SSE: Last-Event-ID (or ?lastEventId=) replays what the order's stream missed, then live."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from tests.helpers import SseEvent, sse_events, token
from tests.replay_helpers import FIVE, set_statuses
from tiffin_rt.config import Settings

ORDER_1 = "/api/notifications/orders/1/status"


async def _first_event(url: str, headers: dict[str, str]) -> SseEvent:
    async with (
        aiohttp.ClientSession() as http,
        http.get(url + ORDER_1, headers=headers) as response,
    ):
        return await anext(sse_events(response))


@asynccontextmanager
async def _resumed(
    url: str, tok: str, last_event_id: object, query: str = ""
) -> AsyncIterator[aiohttp.ClientResponse]:
    """Order 1's stream as an EventSource reopens it, sending the Last-Event-ID it kept."""
    headers = {"Authorization": f"Bearer {tok}", "Last-Event-ID": str(last_event_id)}
    async with (
        aiohttp.ClientSession() as http,
        http.get(url + ORDER_1 + query, headers=headers) as response,
    ):
        yield response


@pytest.mark.parametrize("how", ["header", "query"])
async def test_resume_gets_exactly_the_five_missed_in_order_then_live(
    how: str, server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    auth = {"Authorization": f"Bearer {token(settings, 'alice')}"}
    [seen] = await set_statuses(db, 1, ["confirmed"])
    first = await _first_event(url, auth)
    assert first.id == str(seen)  # what an EventSource keeps as its lastEventId
    missed = await set_statuses(db, 1, [*FIVE[1:], "preparing"])

    headers, query = dict(auth), ""
    if how == "header":
        headers["Last-Event-ID"] = first.id
    else:
        query = f"?lastEventId={first.id}"
    async with (
        aiohttp.ClientSession() as http,
        http.get(url + ORDER_1 + query, headers=headers) as response,
    ):
        assert response.status == 200
        stream = sse_events(response)
        replayed = [await asyncio.wait_for(anext(stream), 5) for _ in range(5)]
        assert [int(e.id or 0) for e in replayed] == missed
        assert [e.json()["eventId"] for e in replayed] == missed
        assert [e.json()["status"] for e in replayed] == [*FIVE[1:], "preparing"]
        assert replayed[0].retry is not None
        [live] = await set_statuses(db, 1, ["delivered"])
        last = await asyncio.wait_for(anext(stream), 5)
        assert (last.id, last.json()["status"]) == (str(live), "delivered")
        assert [event async for event in stream] == []  # terminal: the stream ends


async def test_header_wins_over_a_stale_query_parameter(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    [stale, newer] = await set_statuses(db, 1, ["confirmed", "preparing"])
    [missed] = await set_statuses(db, 1, ["ready"])
    async with _resumed(url, token(settings, "alice"), newer, f"?lastEventId={stale}") as response:
        event = await asyncio.wait_for(anext(sse_events(response)), 5)
        assert event.id == str(missed)


async def test_nothing_missed_sends_nothing_until_the_next_change(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    [seen] = await set_statuses(db, 1, ["confirmed"])
    async with _resumed(url, token(settings, "alice"), seen) as response:
        stream = sse_events(response)
        # The next change is the marker: the first event on the stream must be that change.
        [live] = await set_statuses(db, 1, ["preparing"])
        event = await asyncio.wait_for(anext(stream), 5)
        assert event.id == str(live)


async def test_a_finished_order_seen_to_the_end_answers_204_so_eventsource_stops(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    [done] = await set_statuses(db, 1, ["delivered"])
    async with _resumed(url, token(settings, "alice"), done) as resp:
        assert resp.status == 204


async def test_an_id_older_than_retention_gets_resync_then_the_current_status(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    [old, *_] = await set_statuses(db, 1, ["confirmed", "preparing", "ready"])
    await db.execute("DELETE FROM tiffin_rt.events WHERE id <= $1 + 1", old)  # as pruning does
    async with _resumed(url, token(settings, "alice"), old) as response:
        stream = sse_events(response)
        resync = await asyncio.wait_for(anext(stream), 5)
        assert resync.event == "resync"
        assert resync.json()["reason"] == "expired"
        current = await asyncio.wait_for(anext(stream), 5)
        assert current.event is None
        assert current.json()["status"] == "ready"


@pytest.mark.parametrize("bad", ["abc", "-1", "1.5", "99999999999999999999"])
async def test_a_malformed_last_event_id_is_a_400(
    bad: str, server: TestServer, url: str, settings: Settings
) -> None:
    async with _resumed(url, token(settings, "alice"), bad) as resp:
        assert resp.status == 400
        body = await resp.json()
        assert body["error"]["code"] == "bad_request"
        assert "lastEventId" in body["error"]["message"]


async def test_resuming_is_still_authorized(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    [seen] = await set_statuses(db, 1, ["confirmed"])
    async with _resumed(url, token(settings, "bob"), seen - 1) as resp:
        assert resp.status == 403
