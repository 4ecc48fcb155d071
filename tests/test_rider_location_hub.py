"""Rider location streams (SSE) as hub clients: in the hub's rooms while open, positions
published through the hub with latest wins, evicted by the authorizer through `Hub.evict`,
listed by the admin view.

Demo orders: 1 = alice / spice-garden / rider rita; 3 = bob / green-bowl / rider ravi.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import base_url, eventually, sse_events, token
from tests.test_rider_location import TRACKING, bearer, clients, location_url, position, send
from tiffin_rt.config import Settings
from tiffin_rt.core.hub import SSE
from tiffin_rt.drain import drain_connections
from tiffin_rt.keys import HUB
from tiffin_rt.transports.sse_location import LOCATION, LocationStream


@pytest.fixture
async def tracked(start_server: StartServer) -> TestServer:
    # Positions as fast as a test sends them: the slow client below is filled with them.
    return await start_server(
        tracking={**TRACKING, "updates_per_rider": "10000/second"},
        limits={"events_per_connection": "10000/second", "events_per_user": "10000/second"},
    )


def watchers(server: TestServer, order: str = "1") -> list[tuple[str, str]]:
    """Who the hub has in the order's location room: (user, role) of each stream."""
    members = server.app[HUB].members(LOCATION, f"order-{order}")
    assert all(isinstance(m, LocationStream) for m in members)
    return sorted((m.who.user_id, m.who.role) for m in members if m.who is not None)


async def healthz(http: aiohttp.ClientSession, url: str) -> dict[str, int]:
    async with http.get(f"{url}/healthz") as response:
        return dict((await response.json())["tracking"]["sse"])


async def test_a_location_stream_is_in_the_hub_while_open_and_gone_when_its_client_leaves(
    tracked: TestServer, settings: Settings
) -> None:
    url = base_url(tracked)
    admin = bearer(settings, "root", "admin")
    async with (
        clients(url, settings, ("rita", "rider")) as [(rita, _)],
        aiohttp.ClientSession() as http,
    ):
        async with http.get(location_url(url), headers=bearer(settings, "alice")) as response:
            assert response.status == 200
            assert watchers(tracked) == [("alice", "customer")]
            assert len(tracked.app[HUB].members(SSE, "order-1")) == 0  # no status stream
            async with http.get(f"{url}/admin/state", headers=admin) as state_response:
                state: dict[str, Any] = await state_response.json()
            assert state["connections"]["sseLocation"] == 1
            rooms = {r["room"]: r["members"] for r in state["rooms"]}
            assert rooms["order-1"] == [
                {"user": "alice", "role": "customer", "transport": "sse", "namespace": LOCATION}
            ]
            assert (await send(rita, position(n=1)))["ok"]
            got = await asyncio.wait_for(anext(sse_events(response)), 5)
            assert got.json()["lat"] == position(n=1)["lat"]
        # the client left mid-stream: out of the room within about a second (departures timer)
        await eventually(lambda: watchers(tracked) == [])
        assert (await healthz(http, url))["streams"] == 0
        assert (await send(rita, position(n=2)))["ok"]  # nobody watches: nothing to write


async def test_the_authorizer_evicts_location_streams_through_the_hub(
    tracked: TestServer, settings: Settings, db: asyncpg.Connection
) -> None:
    url = base_url(tracked)
    hub = tracked.app[HUB]
    async with (
        aiohttp.ClientSession() as http,
        clients(url, settings, ("ravi", "rider")) as [(ravi, _)],
        http.get(location_url(url), headers=bearer(settings, "rita", "rider")) as old,
        http.get(location_url(url), headers=bearer(settings, "alice")) as customer,
    ):
        assert (old.status, customer.status) == (200, 200)
        assert watchers(tracked) == [("alice", "customer"), ("rita", "rider")]
        to_old, to_customer = sse_events(old), sse_events(customer)
        await db.execute("UPDATE orders SET rider_id = 'ravi' WHERE id = 1")
        end = await asyncio.wait_for(anext(to_old), 5)
        assert (end.event, end.json()) == (
            "end",
            {"code": "forbidden", "message": "you may no longer watch this order"},
        )
        assert [e async for e in to_old] == []  # the stream closed after its end event
        await eventually(lambda: watchers(tracked) == [("alice", "customer")])
        # the new rider's position reaches the customer, and is the next thing it gets
        for n in range(100):
            if (await send(ravi, position(n=n)))["ok"]:
                break
            await asyncio.sleep(0.05)
        got = await asyncio.wait_for(anext(to_customer), 5)
        assert (got.event, got.json()["riderId"]) == (None, "ravi")
        # Hub.evict itself reaches location streams: a policy refusing everyone ends this one
        hub.evict("order-1", lambda who: False)
        end = await asyncio.wait_for(anext(to_customer), 5)
        assert (end.event, end.json()["code"]) == ("end", "forbidden")
        assert [e async for e in to_customer] == []
        await eventually(lambda: watchers(tracked) == [])


class StalledStream:
    """A raw HTTP/1.1 location stream whose client reads only when told to (a tiny receive
    buffer), on a server socket with a small send buffer: a few positions leave it behind."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, server: TestServer, tok: str) -> StalledStream:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        # A small limit: the reader stops taking data from the socket once 4 KiB wait unread.
        reader, writer = await asyncio.open_connection(sock=sock, limit=2048)
        writer.write(
            (
                "GET /api/notifications/orders/1/location HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {tok}\r\n"
                "Accept: text/event-stream\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"transfer-encoding: chunked" in head.lower()
        # The server's side of this connection keeps little in the kernel.
        port = sock.getsockname()[1]
        assert server.runner is not None
        assert server.runner.server is not None
        [transport] = [
            h.transport
            for h in server.runner.server.connections
            if h.transport is not None and h.transport.get_extra_info("peername")[1] == port
        ]
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        return cls(reader, writer)

    async def next_position(self) -> dict[str, Any]:
        """Read on to the next position in the chunked body (pings skipped)."""
        while True:
            size = int((await asyncio.wait_for(self.reader.readuntil(b"\r\n"), 5)).strip(), 16)
            chunk = await asyncio.wait_for(self.reader.readexactly(size + 2), 5)
            found = re.search(rb"^data: (.*)\r$", chunk[:size], re.MULTILINE)
            if found is not None:
                return dict(orjson.loads(found[1]))

    def close(self) -> None:
        self.writer.close()


async def test_a_slow_location_stream_gets_the_newest_position_never_a_backlog(
    tracked: TestServer, settings: Settings
) -> None:
    url = base_url(tracked)
    start = int(time.time() * 1000)

    def lat(n: int) -> float:
        return float(position(n=n)["lat"])

    async with (
        clients(url, settings, ("rita", "rider")) as [(rita, _)],
        aiohttp.ClientSession() as http,
    ):
        stalled = await StalledStream.open(tracked, token(settings, "alice"))
        try:
            assert watchers(tracked) == [("alice", "customer")]
            assert (await send(rita, position(n=0, timestamp=start)))["ok"]
            assert (await stalled.next_position())["lat"] == lat(0)  # live, and keeping up
            before = await healthz(http, url)
            # The client stops reading: positions until it is behind and one was superseded.
            n = 0
            while (await healthz(http, url))["superseded"] < before["superseded"] + 3:
                n += 1
                assert n < 5000, "the stream never fell behind"
                ack = await send(rita, position(n=n, timestamp=start + n))
                assert ack["ok"], (n, ack)
            # It reads again: what was written before it fell behind, in order, then the newest;
            # what was superseded meanwhile never comes.
            got = [(await stalled.next_position())["lat"]]
            while got[-1] != lat(n):
                got.append((await stalled.next_position())["lat"])
            assert got == sorted(set(got), reverse=True)  # in order (lat falls with n)
            assert set(got) <= {lat(i) for i in range(1, n + 1)}
            assert len(got) <= n - 3
            # The next position is the next thing it gets: nothing else was waiting.
            assert (await send(rita, position(n=n + 1, timestamp=start + n + 1)))["ok"]
            assert (await stalled.next_position())["lat"] == lat(n + 1)
            after = await healthz(http, url)
            assert after["sentLate"] >= before["sentLate"] + 1
            assert after["sent"] - before["sent"] == len(got) + 1
        finally:
            stalled.close()
        await eventually(lambda: watchers(tracked) == [])


async def test_a_drain_ends_location_streams_without_an_end_event(
    tracked: TestServer, settings: Settings
) -> None:
    """On SIGTERM the node's location streams close as a dropped connection does, so an
    EventSource reconnects (to another node) and starts from the newest position."""
    url = base_url(tracked)
    async with (
        clients(url, settings, ("rita", "rider")) as [(rita, _)],
        aiohttp.ClientSession() as http,
        http.get(location_url(url), headers=bearer(settings, "alice")) as response,
    ):
        assert response.status == 200
        events = sse_events(response)
        assert (await send(rita, position(n=1)))["ok"]
        assert (await asyncio.wait_for(anext(events), 5)).json()["lat"] == position(n=1)["lat"]
        await drain_connections(tracked.app)
        assert [e async for e in events] == []  # closed, no `end`: the client reconnects
        await eventually(lambda: watchers(tracked) == [])
