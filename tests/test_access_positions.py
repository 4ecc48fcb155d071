"""The authorizer acts on an order's newest known parties: an order event the listener delivers
late (it waited behind a transaction still running) that is older than what a join read from
the order's row must not evict whom that read admitted, on any transport.

Demo orders: 1 = alice / spice-garden / rider rita.
"""

from __future__ import annotations

import asyncio

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from tests.conftest import StartServer
from tests.helpers import (
    RunningTransaction,
    eventually,
    make_settings,
    marker_arrived,
    running_transaction,
    sse_events,
    token,
)
from tests.test_hub_departures import TRANSPORTS, agrees, client_on, gone
from tiffin_rt.core.hub import SSE
from tiffin_rt.keys import HUB, LISTENER
from tiffin_rt.transports.sse_location import LOCATION

NS = "/notifications"


async def away_and_back(
    db: asyncpg.Connection, hold: RunningTransaction, app: web.Application
) -> int:
    """Take an id in `hold` (every later event waits behind it), then give order 1 to ravi and
    back to rita; the id of the event giving it back (held back too)."""
    held_id = await hold.conn.fetchval("SELECT tiffin_rt.notify_user('nobody', 't', 'x', '')")
    await db.execute("UPDATE orders SET rider_id = 'ravi' WHERE id = 1")
    await db.execute("UPDATE orders SET rider_id = 'rita' WHERE id = 1")
    rows = await db.fetch(
        "SELECT id FROM tiffin_rt.events WHERE order_id = '1' AND kind = 'order_parties'"
        " ORDER BY id"
    )
    away, back = (r["id"] for r in rows[-2:])
    assert held_id < away < back
    assert (app[LISTENER].cursor or 0) < held_id  # held back
    return int(back)


@pytest.mark.parametrize("gap_ends", ["commit", "rollback"])
async def test_a_late_event_older_than_the_join_evicts_nobody_it_read_as_admitted(
    start_server: StartServer, dsn: str, db: asyncpg.Connection, gap_ends: str
) -> None:
    """The order goes to ravi and back to rita while a transaction holds an earlier id open, so
    the listener holds both events back; rita joins on every transport, admitted by the row as
    it is now. When the listener delivers the two events, the first (ravi's) is older than
    rita's read: she stays in the room and gets the next update everywhere."""
    settings = make_settings(dsn, database={"gap_timeout": 30.0})
    server = await start_server(settings)
    hub = server.app[HUB]
    url = str(server.make_url("")).rstrip("/")
    rita_tok = token(settings, "rita", "rider")
    riders = []
    try:
        async with running_transaction(dsn) as hold:
            back = await away_and_back(db, hold, server.app)
            riders = [await client_on(url, rita_tok, path) for path in TRANSPORTS]
            for client, _ in riders:
                assert (await client.call("joinRoom", "order-1", namespace=NS))["ok"] is True
            async with (
                aiohttp.ClientSession(headers={"Authorization": f"Bearer {rita_tok}"}) as http,
                http.get(f"{url}/api/notifications/orders/1/status") as response,
            ):
                assert response.status == 200
                stream = sse_events(response)
                assert (await asyncio.wait_for(anext(stream), 5)).json()["status"] == "pending"
                assert len(hub.members(SSE, "order-1")) == 1

                # The listener goes on: ravi's event, then rita's, reach the authorizer now.
                await hold.end(commit=gap_ends == "commit")
                await eventually(lambda: (server.app[LISTENER].cursor or 0) >= back, timeout=10)
                assert agrees(server, NS, "order-1") == {c.get_sid(NS) for c, _ in riders}
                assert len(hub.members(SSE, "order-1")) == 1

                await db.execute("UPDATE orders SET status = 'ready' WHERE id = 1")
                update = await asyncio.wait_for(anext(stream), 5)  # not an `end`
                assert (update.event, update.json()["status"]) == (None, "ready")
        await marker_arrived(db, "rita", *(r for _, r in riders))
        for _, received in riders:
            assert [u["status"] for u in received.of("orderStatusUpdate")] == ["ready"]
    finally:
        for client, _ in riders:
            await gone(client)


@pytest.mark.parametrize("path", ["status", "location"])
async def test_an_sse_stream_alone_is_not_evicted_by_a_late_event_older_than_its_read(
    start_server: StartServer, dsn: str, db: asyncpg.Connection, path: str
) -> None:
    """As above with only an SSE stream (no Socket.IO join reads the order first): the stream's
    own read of the row is what the late events are older than, so it stays open."""
    settings = make_settings(dsn, database={"gap_timeout": 30.0})
    server = await start_server(settings)
    hub = server.app[HUB]
    namespace = SSE if path == "status" else LOCATION
    url = str(server.make_url("")).rstrip("/")
    rita_tok = token(settings, "rita", "rider")
    async with running_transaction(dsn) as hold:
        back = await away_and_back(db, hold, server.app)
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {rita_tok}"}) as http,
            http.get(f"{url}/api/notifications/orders/1/{path}") as response,
        ):
            assert response.status == 200
            stream = sse_events(response)
            if path == "status":
                assert (await asyncio.wait_for(anext(stream), 5)).json()["status"] == "pending"
            await eventually(lambda: len(hub.members(namespace, "order-1")) == 1)

            await hold.end()
            await eventually(lambda: (server.app[LISTENER].cursor or 0) >= back, timeout=10)
            assert len(hub.members(namespace, "order-1")) == 1

            # The next event of the order is what the stream gets, not an `end` `forbidden`.
            await db.execute("UPDATE orders SET status = 'cancelled' WHERE id = 1")
            after = await asyncio.wait_for(anext(stream), 5)
            if path == "status":
                assert (after.event, after.json()["status"]) == (None, "cancelled")
            else:
                assert (after.event, after.json()["code"]) == ("end", "order_closed")
