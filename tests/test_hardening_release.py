"""A client that leaves frees what it held (stream, user's connection count, rooms) within
seconds, on every transport, with the server run as `tiffin-rt serve` runs it."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.conftest import StartServer
from tests.helpers import (
    connect_refusal,
    eventually,
    make_settings,
    sio_client,
    sse_events,
    token,
)
from tests.orders_tables import DEMO
from tiffin_rt.keys import SOCKETIO

NS = "/notifications"
ORDER_1 = "/api/notifications/orders/1/status"


async def _health(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as response:
        body: dict[str, Any] = await response.json()
        return body


async def _open_connections(url: str) -> dict[str, int]:
    counts: dict[str, int] = (await _health(url))["connections"]
    return counts


async def _wait_until_none_open(url: str, seconds: float = 10.0) -> None:
    """Poll /healthz until no connection of either transport is counted as open."""
    for _ in range(int(seconds / 0.1)):
        if await _open_connections(url) == {"socketio": 0, "sse": 0}:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"connections still open: {await _open_connections(url)}")


async def test_a_user_who_reloads_the_stream_page_many_times_is_not_locked_out(
    start_server: StartServer, dsn: str, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(dsn, limits={"connections_per_user": 3})
    server = await start_server(settings)
    url = str(server.make_url("")).rstrip("/")
    tok = token(settings, "alice")
    # Each reload: the browser opens the stream, gets the current status, and goes away.
    for _ in range(3 * settings.limits.connections_per_user):
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{url}{ORDER_1}?access_token={tok}") as response,
        ):
            assert response.status == 200, await response.text()
            first = await anext(sse_events(response))
            assert first.json()["orderId"] == "1"
        await _wait_until_none_open(url)

    # Everything the streams held is free: all of alice's connections may be opened again.
    caplog.set_level(logging.WARNING)
    clients = [await sio_client(url, tok) for _ in range(settings.limits.connections_per_user)]
    assert (await connect_refusal(url, {"token": tok}))["code"] == "rate_limited"
    for client, _ in clients:
        await client.disconnect()
    # An event for the order the streams watched goes to nobody, and is no error.
    marker, to_marker = await sio_client(url, tok)
    await marker.call("joinRoom", "order-1", namespace=NS)
    await DEMO.set_status(db, "1", "confirmed")
    await to_marker.wait_for("orderStatusUpdate")
    await marker.disconnect()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []



def cut_network(transport: Any) -> None:
    """The client's network goes: its socket is shut down both ways, with nothing sent first.
    Through a duplicate descriptor: uvloop's transports hand out sockets refusing shutdown()."""
    sock = transport.get_extra_info("socket")
    with socket.socket(fileno=os.dup(sock.fileno())) as same_connection:
        same_connection.shutdown(socket.SHUT_RDWR)

async def test_a_stream_whose_client_vanishes_is_released_without_any_event(
    start_server: StartServer, dsn: str
) -> None:
    settings = make_settings(dsn, limits={"connections_per_user": 1})
    server = await start_server(settings)
    url = str(server.make_url("")).rstrip("/")
    tok = token(settings, "alice")
    http = aiohttp.ClientSession()
    response = await http.get(f"{url}{ORDER_1}?access_token={tok}")
    assert response.status == 200
    await anext(sse_events(response))
    assert (await _open_connections(url))["sse"] == 1
    # The client's network goes mid-stream, without closing the request first.
    assert response.connection is not None
    assert response.connection.transport is not None
    cut_network(response.connection.transport)
    response.close()
    await http.close()
    await _wait_until_none_open(url)
    client, _ = await sio_client(url, tok)  # the one allowed connection is free again
    await client.disconnect()


async def _raw_socketio(
    http: aiohttp.ClientSession, url: str, tok: str
) -> aiohttp.ClientWebSocketResponse:
    """A WebSocket-first Engine.IO session with /notifications joined and order-1 entered."""
    ws = await http.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket")
    assert (await ws.receive_str()).startswith("0{")
    await ws.send_str(f"40{NS}," + json.dumps({"token": tok}))
    assert (await ws.receive_str()).startswith(f"40{NS},")
    await ws.send_str(f'42{NS},1["joinRoom","order-1"]')
    while True:
        reply = await ws.receive_str()
        if reply.startswith(f"43{NS},1"):
            assert json.loads(reply.removeprefix(f"43{NS},1"))[0]["ok"] is True
            return ws


async def test_a_websocket_client_that_vanishes_frees_its_slot_and_rooms(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(dsn, limits={"connections_per_user": 1})
    server = await start_server(settings)
    url = str(server.make_url("")).rstrip("/")
    tok = token(settings, "alice")
    http = aiohttp.ClientSession()
    ws = await _raw_socketio(http, url, tok)
    assert (await _open_connections(url))["socketio"] == 1
    # The client's network goes: its socket ends with no WebSocket close frame.
    cut_network(ws)
    await http.close()
    await _wait_until_none_open(url)
    # The slot is free, and the vanished socket is in no room: an event for order 1 reaches
    # the new client (and the server raises nothing writing to the gone one).
    client, received = await sio_client(url, tok)
    await client.call("joinRoom", "order-1", namespace=NS)
    await DEMO.set_status(db, "1", "confirmed")
    [update] = await received.wait_for("orderStatusUpdate")
    assert update["status"] == "confirmed"
    await client.disconnect()


async def _raw_polling_session(http: aiohttp.ClientSession, url: str, tok: str) -> str:
    """A long-polling Engine.IO session that has asked to join /notifications; its poll URL."""
    async with http.get(f"{url}/socket.io/?EIO=4&transport=polling") as response:
        sid = json.loads((await response.text())[1:])["sid"]
    poll = f"{url}/socket.io/?EIO=4&transport=polling&sid={sid}"
    async with http.post(poll, data=f"40{NS}," + json.dumps({"token": tok})) as response:
        assert response.status == 200
    return poll


async def test_a_polling_client_that_stops_polling_is_released_after_the_ping_timeout(
    start_server: StartServer, dsn: str
) -> None:
    settings = make_settings(
        dsn,
        limits={"connections_per_user": 1},
        delivery={"ping_interval": 1, "ping_timeout": 1},
    )
    server = await start_server(settings)
    url = str(server.make_url("")).rstrip("/")
    tok = token(settings, "alice")
    async with aiohttp.ClientSession() as http:
        poll = await _raw_polling_session(http, url, tok)
        async with http.get(poll) as response:
            assert (await response.text()).startswith(f"40{NS},")
        assert (await _open_connections(url))["socketio"] == 1
        # The client goes silent: no more GETs, no pong.
        await _wait_until_none_open(url)
    client, _ = await sio_client(url, tok)
    await client.disconnect()


async def test_a_polling_client_that_vanishes_mid_poll_is_released_within_seconds(
    start_server: StartServer, dsn: str
) -> None:
    # The default pings (25 s + 20 s): the release must not wait for a ping timeout.
    settings = make_settings(dsn, limits={"connections_per_user": 1})
    server = await start_server(settings)
    url = str(server.make_url("")).rstrip("/")
    tok = token(settings, "alice")
    async with aiohttp.ClientSession() as http:
        poll = await _raw_polling_session(http, url, tok)
        received = ""
        while '"position"' not in received:  # the last thing the server sends on connect
            async with http.get(poll) as response:
                received += await response.text()
    # The next poll waits for something to send; the client's network goes while it waits.
    waiting = aiohttp.ClientSession()
    pending = asyncio.ensure_future(waiting.get(poll))
    departures = server.app[SOCKETIO].eio.departures
    await eventually(lambda: len(departures) == 1)  # the GET waits on the server
    pending.cancel()
    await waiting.close()  # closes the GET's TCP connection mid-poll
    await _wait_until_none_open(url)
    client, _ = await sio_client(url, tok)  # the one allowed connection is free again
    await client.disconnect()
