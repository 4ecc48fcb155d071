"""What the issue 15 and 17 reviews found missing from /metrics and /healthz: the first message
of a new SSE stream, bad Engine.IO requests and connects to unknown namespaces as refusals,
superseded rider positions, and the kitchen queue's counters."""

from __future__ import annotations

import json

import aiohttp
import asyncpg
import pytest
import socketio

from tests.conftest import StartServer
from tests.helpers import base_url, make_settings, token
from tests.metrics_helpers import METRICS_ON, scrape
from tests.test_hardening_slow import event_stream
from tests.test_kitchen_queue import FAST, latest_queue
from tests.test_kitchen_queue import client as kitchen_client
from tests.test_metrics_events import DELIVERED, moved
from tests.test_rider_location import TRACKING, StalledPolling, clients, position, send
from tiffin_rt.config import Settings

REFUSALS = "tiffin_rt_refusals_total"
NS = "/notifications"


async def test_the_first_message_of_a_new_sse_stream_is_counted_as_delivered(
    start_server: StartServer, dsn: str
) -> None:
    settings = make_settings(dsn, metrics=METRICS_ON)
    url = base_url(await start_server(settings))
    before = await scrape(url)
    async with (
        aiohttp.ClientSession() as http,
        event_stream(http, url, token(settings, "alice")) as s,
    ):
        await s.until(lambda: bool(s.updates))  # the order's current status, sent first
        after = await scrape(url)
    assert moved(before, after, DELIVERED, kind="orderStatusUpdate", transport="sse") == 1


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("EIO=4&transport=polling&sid=closed-or-never-opened", "bad_sid"),
        ("EIO=4&transport=carrier-pigeon", "bad_transport"),
        ("EIO=3&transport=polling", "bad_version"),
    ],
)
async def test_a_bad_engineio_request_is_counted_as_a_refusal(
    start_server: StartServer, dsn: str, query: str, reason: str
) -> None:
    url = base_url(await start_server(make_settings(dsn, metrics=METRICS_ON)))
    before = await scrape(url)
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            async with http.get(f"{url}/socket.io/?{query}") as response:
                assert response.status == 400
    after = await scrape(url)
    assert moved(before, after, REFUSALS, namespace="engineio", reason=reason) == 3


async def test_a_connect_to_an_unknown_namespace_is_counted_as_a_refusal(
    start_server: StartServer, dsn: str
) -> None:
    settings = make_settings(dsn, metrics=METRICS_ON)
    url = base_url(await start_server(settings))
    before = await scrape(url)
    for namespace in ("/nope", "/"):
        client = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(
                url,
                namespaces=[namespace],
                auth={"token": token(settings, "alice")},
                transports=["websocket"],
                wait_timeout=5,
            )
        await client.disconnect()
    after = await scrape(url)
    assert moved(before, after, REFUSALS, namespace="socketio", reason="invalid_namespace") == 2
    assert not [k for k in after.samples if k[0] == REFUSALS and ("namespace", "/nope") in k[1]]


async def test_superseded_rider_positions_are_exported(start_server: StartServer, dsn: str) -> None:
    settings: Settings = make_settings(dsn, metrics=METRICS_ON, tracking=TRACKING)
    url = base_url(await start_server(settings))
    before = await scrape(url)
    assert "tiffin_rt_rider_positions_superseded_total" in before.names()
    async with (
        aiohttp.ClientSession() as http,
        clients(url, settings, ("rita", "rider")) as [(rita, _)],
    ):
        slow = await StalledPolling.open(http, url, token(settings, "alice"))
        assert (await slow.call(1, "joinRoom", "order-1"))["ok"]
        for n in range(10):  # the slow client does not poll meanwhile
            assert (await send(rita, position(n=n)))["ok"]
        after = await scrape(url)
    superseded = "tiffin_rt_rider_positions_superseded_total"
    assert moved(before, after, superseded, transport="socketio") == 8
    assert moved(before, after, superseded, transport="sse") == 0
    positions = "tiffin_rt_rider_positions_total"
    assert moved(before, after, positions, outcome="accepted") == 10
    assert after.value("tiffin_rt_rider_positions_waiting") == 1


async def test_kitchen_queue_counters_are_in_metrics_and_healthz(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(dsn, metrics=METRICS_ON, kitchen=FAST)
    url = base_url(await start_server(settings))
    before = await scrape(url)
    kitchen = token(settings, "chef", "kitchen", vendor_id="spice-garden")
    async with kitchen_client(url, kitchen) as (_, got):
        await latest_queue(got, 1)  # the queue on connect: to the newcomer alone
        await db.execute("UPDATE orders SET status = 'preparing' WHERE id = 2")
        await latest_queue(got, 2)  # to the vendor's room
        after = await scrape(url)
        async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as response:
            health = (await response.json())["kitchen"]
    messages = "tiffin_rt_kitchen_queue_messages_total"
    assert moved(before, after, messages, kind="snapshot") == 1
    assert moved(before, after, messages, kind="queue") == 1
    assert moved(before, after, "tiffin_rt_kitchen_queue_reads_total") >= 2
    assert moved(before, after, "tiffin_rt_kitchen_queue_failures_total") == 0
    assert health["snapshotsSent"] == 1
    assert health["queuesSent"] == 1
    assert health["reads"] >= 2
    assert health["failures"] == 0


@pytest.mark.parametrize(
    ("packet", "namespace"),
    [("abc", "engineio"), ("4" + '2/notifications,{"not": "an event"}', "socketio")],
)
async def test_a_malformed_packet_is_counted_as_a_refusal(
    start_server: StartServer, dsn: str, packet: str, namespace: str
) -> None:
    settings = make_settings(dsn, metrics=METRICS_ON)
    url = base_url(await start_server(settings))
    before = await scrape(url)
    ws_url = url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url) as ws:
        assert (await ws.receive_str(timeout=5)).startswith("0")
        auth = json.dumps({"token": token(settings, "alice")})
        await ws.send_str("40/notifications," + auth)
        assert (await ws.receive_str(timeout=5)).startswith("40/notifications,")
        await ws.send_str(packet)
        while (await ws.receive(timeout=5)).type not in CLOSED:
            pass  # what was on its way, then the end of the session
    after = await scrape(url)
    assert moved(before, after, REFUSALS, namespace=namespace, reason="malformed_packet") == 1


CLOSED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)


async def test_a_refused_rider_location_stream_is_counted(
    start_server: StartServer, dsn: str
) -> None:
    settings = make_settings(dsn, metrics=METRICS_ON, tracking=TRACKING)
    url = base_url(await start_server(settings))
    headers = {"Authorization": f"Bearer {token(settings, 'alice')}"}
    before = await scrape(url)
    async with aiohttp.ClientSession() as http:
        for order, status in (("not an id!", 400), ("3", 404), ("999999", 404)):
            async with http.get(
                f"{url}/api/notifications/orders/{order}/location", headers=headers
            ) as response:
                assert response.status in (status, 403), (order, response.status)
    after = await scrape(url)
    refused = sum(
        value - before.samples.get(key, 0.0)
        for key, value in after.samples.items()
        if key[0] == REFUSALS and ("namespace", "sse_location") in key[1]
    )
    assert refused == 3
