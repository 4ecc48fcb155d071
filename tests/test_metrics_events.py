"""Each delivery metric moves when its event happens, on WebSocket, long-polling (stock and
upgraded) and SSE: deliveries, the listener's sources and gaps, replays, resyncs, slow
consumers cut off."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import asyncpg
import pytest
import socketio

from tests.conftest import StartServer
from tests.helpers import (
    Received,
    base_url,
    eventually,
    make_settings,
    sio_client,
    sse_events,
    token,
)
from tests.metrics_helpers import METRICS_ON, Scrape, scrape
from tests.replay_helpers import connected, delivered_live, set_statuses
from tests.test_hardening_slow import (
    SECTIONS,
    RawEventStream,
    RawPolling,
    RawWebSocket,
    event_stream,
    flood_until_cut,
    keeping_up,
    set_status,
)
from tests.test_rider_location import TRACKING, position, send
from tests.test_rider_location import client as location_client

ORDER_1 = "/api/notifications/orders/1/status"
NS = "/notifications"
DELIVERED = "tiffin_rt_events_delivered_total"


def moved(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


async def _client(
    url: str, tok: str, transports: list[str]
) -> tuple[socketio.AsyncClient, Received]:
    received = Received()
    client = socketio.AsyncClient(reconnection=False)
    client.on("orderStatusUpdate", lambda data: received.add("orderStatusUpdate", data), NS)
    await client.connect(url, namespaces=[NS], auth={"token": tok}, transports=transports)
    if "websocket" in transports:
        await eventually(lambda: client.transport() == "websocket")
    return client, received


async def test_each_delivery_counts_once_per_recipient_by_transport(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(dsn, metrics=METRICS_ON)
    url = base_url(await start_server(settings))
    tok = token(settings, "alice")
    clients = [
        await _client(url, tok, ["websocket"]),
        await _client(url, tok, ["polling"]),
        await _client(url, tok, ["polling", "websocket"]),  # upgraded: a stock socket
    ]
    try:
        async with aiohttp.ClientSession() as http, event_stream(http, url, tok) as on_sse:
            before = await scrape(url)
            [event_id] = await set_statuses(db, 1, ["preparing"])
            for _, received in clients:
                await received.wait_for("orderStatusUpdate")
            await on_sse.until(lambda: any(u["eventId"] == event_id for u in on_sse.updates))
            after = await scrape(url)
    finally:
        for client, _ in clients:
            await client.disconnect()
    kind = "orderStatusUpdate"
    assert moved(before, after, DELIVERED, kind=kind, transport="websocket") == 2
    assert moved(before, after, DELIVERED, kind=kind, transport="polling") == 1
    assert moved(before, after, DELIVERED, kind=kind, transport="sse") == 1
    assert moved(before, after, "tiffin_rt_events_routed_total") == 1


async def test_notify_carried_events_and_log_reads_are_told_apart(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(dsn, metrics=METRICS_ON)
    url = base_url(await start_server(settings))
    client, received = await sio_client(url, token(settings, "alice"))
    try:
        await client.call("joinRoom", "order-1", namespace=NS)
        before = await scrape(url)
        await db.execute("SELECT tiffin_rt.notify_room('order-1', 'small', 'fits', 'in a NOTIFY')")
        await received.wait_for("notification")
        carried = await scrape(url)
        # Past 7900 bytes the NOTIFY carries only the id: the listener reads the log.
        await db.execute(
            "SELECT tiffin_rt.notify_room('order-1', 'big', 'too big', $1)", "x" * 20_000
        )
        await received.wait_for("notification", 2)
        read = await scrape(url)
    finally:
        await client.disconnect()
    events = "tiffin_rt_listener_events_total"
    assert moved(before, carried, events, source="notify") == 1
    assert moved(before, carried, events, source="log") == 0
    assert moved(carried, read, events, source="log") == 1
    assert moved(carried, read, events, source="notify") == 0
    assert moved(carried, read, "tiffin_rt_listener_log_reads_total") >= 1
    assert moved(before, read, DELIVERED, kind="notification", transport="websocket") == 2


async def test_a_gap_is_counted_when_seen_and_when_rolled_back(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(dsn, metrics=METRICS_ON, database={"gap_timeout": 30})
    server = await start_server(settings)
    url = base_url(server)
    client, received = await sio_client(url, token(settings, "alice"))
    holder = await asyncpg.connect(dsn)
    try:
        before = await scrape(url)
        tx = holder.transaction()
        await tx.start()
        await holder.execute("SELECT tiffin_rt.notify_user('alice', 'held', 'held', '')")
        await db.execute("SELECT tiffin_rt.notify_user('alice', 'after', 'after', '')")
        gaps = "tiffin_rt_listener_gaps_total"

        async def waiting() -> bool:
            s = await scrape(url)
            return s.value("tiffin_rt_listener_waiting_for_gap") == 1 and (
                moved(before, s, gaps, outcome="seen") >= 1
            )

        await _until(waiting)
        assert received.of("notification") == []  # held back behind the open transaction
        await tx.rollback()
        [note] = await received.wait_for("notification")
        assert note["type"] == "after"
        after = await scrape(url)
    finally:
        await holder.close()
        await client.disconnect()
    assert moved(before, after, gaps, outcome="rolled_back") == 1
    assert moved(before, after, gaps, outcome="timed_out") == 0
    assert after.value("tiffin_rt_listener_waiting_for_gap") == 0


async def _until(check: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_replays_and_resyncs_on_socketio_and_sse(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(dsn, metrics=METRICS_ON, replay={"max_events": 3})
    server = await start_server(settings)
    url = base_url(server)
    tok = token(settings, "alice")
    [start] = await set_statuses(db, 1, ["confirmed"])
    missed = await set_statuses(db, 1, ["preparing", "ready"])
    await delivered_live(server.app, missed[-1])
    before = await scrape(url)
    async with connected(url, tok, last_event_id=start) as (_, log):
        await log.wait_for("orderStatusUpdate", 2)
    too_many = await set_statuses(db, 1, ["preparing", "ready", "preparing", "ready"])
    await delivered_live(server.app, too_many[-1])
    async with connected(url, tok, last_event_id=start) as (_, log):
        [resync] = await log.wait_for("resync")
        assert resync["reason"] == "too_many"
    headers = {"Authorization": f"Bearer {tok}"}
    async with aiohttp.ClientSession() as http:
        for last, status in ((too_many[0], "ready"), (start, "resync")):
            resumed = {**headers, "Last-Event-ID": str(last)}
            async with http.get(url + ORDER_1, headers=resumed) as response:
                first = (await response.content.readuntil(b"\r\n\r\n")).decode()
                assert status in first
    after = await scrape(url)
    assert moved(before, after, "tiffin_rt_replays_total", transport="socketio") == 1
    assert moved(before, after, "tiffin_rt_replayed_events_total", transport="socketio") == 2
    resyncs = "tiffin_rt_resyncs_total"
    assert moved(before, after, resyncs, transport="socketio", reason="too_many") == 1
    assert moved(before, after, "tiffin_rt_replays_total", transport="sse") == 1
    assert moved(before, after, "tiffin_rt_replayed_events_total", transport="sse") == 3
    assert moved(before, after, resyncs, transport="sse", reason="too_many") == 1


@pytest.mark.parametrize("transport", ["websocket", "polling", "sse"])
async def test_a_slow_consumer_cut_off_is_counted_by_transport(
    transport: str,
    start_server: StartServer,
    dsn: str,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sections: dict[str, Any] = {**SECTIONS, "metrics": METRICS_ON}
    if transport == "polling":  # its disconnect waits for its pending GET: a short ping cycle
        sections["delivery"] = {**SECTIONS["delivery"], "ping_interval": 1, "ping_timeout": 1}
    settings = make_settings(dsn, **sections)
    server = await start_server(settings)
    url = base_url(server)
    tok = token(settings, "alice")
    caplog.set_level(logging.WARNING)
    before = await scrape(url)
    async with (
        aiohttp.ClientSession() as http,
        keeping_up(url, settings, ["websocket"]) as (
            _,
            healthy,
        ),
    ):
        stalled: RawWebSocket | RawPolling | RawEventStream
        if transport == "websocket":
            stalled = await RawWebSocket.open(server, tok)
        elif transport == "polling":
            stalled = await RawPolling.open(http, url, tok)
        else:
            stalled = await RawEventStream.open(server, tok)
        try:
            await set_status(db, "start")
            await stalled.until_status("start")
            await healthy.until_status("start")
            await flood_until_cut(db, healthy, caplog)
        finally:
            if not isinstance(stalled, RawPolling):
                stalled.close()
    after = await scrape(url)
    dropped = "tiffin_rt_slow_consumers_dropped_total"
    assert moved(before, after, dropped, transport=transport) == 1
    others = {"websocket", "polling", "sse"} - {transport}
    assert all(moved(before, after, dropped, transport=other) == 0 for other in others)


async def test_rider_positions_count_on_socketio_and_sse_location_streams(
    start_server: StartServer, dsn: str
) -> None:
    settings = make_settings(dsn, metrics=METRICS_ON, tracking=TRACKING)
    url = base_url(await start_server(settings))
    alice = token(settings, "alice")
    watcher, received = await location_client(url, alice)
    rider, _ = await location_client(url, token(settings, "rita", "rider"))
    headers = {"Authorization": f"Bearer {alice}"}
    try:
        assert (await watcher.call("joinRoom", "order-1", namespace=NS))["ok"]
        async with (
            aiohttp.ClientSession() as http,
            http.get(url + "/api/notifications/orders/1/location", headers=headers) as stream,
        ):
            assert stream.status == 200

            async def open_stream() -> bool:
                s = await scrape(url)
                return (
                    s.value("tiffin_rt_connections", transport="sse", namespace="sse_location") == 1
                )

            await _until(open_stream)
            before = await scrape(url)
            sent = position(n=1)
            assert (await send(rider, sent))["ok"] is True
            async for event in sse_events(stream):
                if event.data and json.loads(event.data).get("lat") == sent["lat"]:
                    break
            await eventually(lambda: received.of("riderLocation"))
            after = await scrape(url)
    finally:
        await watcher.disconnect()
        await rider.disconnect()
    kind = "riderLocation"
    assert moved(before, after, DELIVERED, kind=kind, transport="websocket") == 1
    assert moved(before, after, DELIVERED, kind=kind, transport="sse") == 1
