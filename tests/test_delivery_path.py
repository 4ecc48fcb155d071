"""The path from the NOTIFY to the sockets: handed over in the NOTIFY callback, no task between
(docs/architecture.md, Event flow), and in order when a sink has to await."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import asyncpg
import pytest
import socketio
from aiohttp.test_utils import TestServer

from tests.cluster_nodes import StartCluster
from tests.helpers import Received, eventually, sio_client, sse_events, token
from tests.replay_helpers import set_statuses
from tests.support_clients import EVENTS as SUPPORT_EVENTS
from tests.support_clients import NAMESPACE as SUPPORT
from tests.support_clients import Person, connected
from tiffin_rt.config import Settings
from tiffin_rt.keys import LISTENER, ROUTER

NS = "/notifications"
STATUSES = ["confirmed", "preparing", "ready"]


async def _stock_client(
    url: str, tok: str, transports: list[str]
) -> tuple[socketio.AsyncClient, Received]:
    received = Received()
    client = socketio.AsyncClient(reconnection=False)
    client.on(
        "orderStatusUpdate", lambda data=None: received.add("orderStatusUpdate", data), namespace=NS
    )
    await client.connect(
        url, namespaces=[NS], auth={"token": tok}, transports=transports, wait_timeout=5
    )
    return client, received


async def _polling_agent(url: str, settings: Settings, user_id: str) -> Person:
    received = Received()
    client = socketio.AsyncClient(reconnection=False)
    for name in SUPPORT_EVENTS:
        client.on(
            name,
            (lambda n: lambda data=None: received.add(n, data))(name),
            namespace=SUPPORT,
        )
    await client.connect(
        url,
        namespaces=[SUPPORT],
        auth={"token": token(settings, user_id, "support")},
        transports=["polling"],
        wait_timeout=5,
    )
    return Person(user_id, client, received)


async def test_status_changes_reach_websocket_and_sse_from_the_notify_callback(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    alice = token(settings, "alice")
    client, received = await sio_client(url, alice)
    try:
        assert (await client.call("joinRoom", "order-1", namespace=NS))["ok"] is True
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                url + "/api/notifications/orders/1/status",
                headers={"Authorization": f"Bearer {alice}"},
            ) as response,
        ):
            stream = sse_events(response)
            await anext(stream)  # the current status
            listener, router = server.app[LISTENER], server.app[ROUTER]
            from_callback, deferred = listener.delivered_from_callback, router.deferred
            ids = await set_statuses(db, 1, STATUSES)
            updates = await received.wait_for("orderStatusUpdate", len(STATUSES))
            on_sse = [await asyncio.wait_for(anext(stream), 5) for _ in STATUSES]
        assert [u["eventId"] for u in updates] == ids
        assert [int(e.id or 0) for e in on_sse] == ids
        # Handed over in the NOTIFY callback, and no sink had to go through the router's task.
        assert listener.delivered_from_callback > from_callback
        assert router.deferred == deferred
    finally:
        await client.disconnect()


@pytest.mark.parametrize(
    "transports", [["polling"], ["polling", "websocket"]], ids=["polling", "upgraded"]
)
async def test_stock_socket_members_are_sent_in_order_without_the_router_task(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection, transports: list[str]
) -> None:
    """A long-polling connection, or one upgraded from it, in the room with a WebSocket one:
    its packets are on its queue before the router returns, so no batch waits in a task."""
    alice = token(settings, "alice")
    websocket, on_websocket = await sio_client(url, alice)
    stock, on_stock = await _stock_client(url, alice, transports)
    try:
        if len(transports) > 1:
            await eventually(lambda: stock.transport() == "websocket")
        for client in (websocket, stock):
            assert (await client.call("joinRoom", "order-1", namespace=NS))["ok"] is True
        listener, router = server.app[LISTENER], server.app[ROUTER]
        from_callback, deferred = listener.delivered_from_callback, router.deferred
        ids = await set_statuses(db, 1, STATUSES * 3)
        for received in (on_websocket, on_stock):
            updates = await received.wait_for("orderStatusUpdate", len(ids))
            assert [u["eventId"] for u in updates] == ids
        assert stock.transport() == transports[-1]
        assert listener.delivered_from_callback > from_callback
        assert router.deferred == deferred  # nothing was awaited
    finally:
        for client in (websocket, stock):
            await client.disconnect()


async def test_live_updates_reach_sse_and_socketio_on_a_served_node(
    cluster_nodes: StartCluster, db: asyncpg.Connection
) -> None:
    """`tiffin-rt serve` runs on uvloop, whose transports are not asyncio's classes."""
    cluster = await cluster_nodes(1)
    node = cluster[0]
    alice = token(cluster.settings, "alice")
    client, received = await sio_client(node.url, alice)
    try:
        assert (await client.call("joinRoom", "order-1", namespace=NS))["ok"] is True
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                node.url + "/api/notifications/orders/1/status",
                headers={"Authorization": f"Bearer {alice}"},
            ) as response,
        ):
            stream = sse_events(response)
            await asyncio.wait_for(anext(stream), 5)  # the current status
            ids = await set_statuses(db, 1, [*STATUSES, "delivered"])
            on_sse = [await asyncio.wait_for(anext(stream), 5) for _ in ids]
            assert [int(e.id or 0) for e in on_sse] == ids
            assert [e async for e in stream] == []  # delivered is terminal: the stream ends
        updates = await received.wait_for("orderStatusUpdate", len(ids))
        assert [u["eventId"] for u in updates] == ids
    finally:
        await client.disconnect()


async def test_support_messages_take_the_same_path(
    server: TestServer, url: str, settings: Settings
) -> None:
    """/support events are queued for every connection before the router returns, on
    WebSocket and long-polling alike: no batch waits in the router's task."""
    async with connected(url, settings, "alice", support=["sam"]) as (alice, sam):
        polling = await _polling_agent(url, settings, "kim")
        try:
            cid = (await alice.start())["id"]
            for agent in (sam, polling):
                assert (await agent.call("joinConversation", {"conversationId": cid}))["ok"]
            router = server.app[ROUTER]
            deferred = router.deferred
            texts = ["one", "two", "three"]
            for text in texts:
                assert (await alice.send(cid, text))["ok"] is True
            for agent in (sam, polling):
                delivered = await agent.received.wait_for("message", len(texts))
                assert [m["text"] for m in delivered] == texts
            assert router.deferred == deferred
        finally:
            await polling.close()


# Characters JSON must escape (quote, backslash, a control character), text beyond ASCII and
# beyond the BMP, and U+2028, which JSON allows unescaped and an SSE line still carries whole.
AWKWARD_STATUS = 'plated "fresh" \\ \x01 é 寿司 🍱 \u2028 end'


async def test_one_update_carries_the_same_payload_on_every_transport(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    """The payload is serialised once and framed for each transport: an SSE stream, a
    WebSocket, a long-polling and an upgraded connection all decode the same update."""
    alice = token(settings, "alice")
    websocket, on_websocket = await sio_client(url, alice)
    polling, on_polling = await _stock_client(url, alice, ["polling"])
    upgraded, on_upgraded = await _stock_client(url, alice, ["polling", "websocket"])
    clients = (websocket, polling, upgraded)
    try:
        await eventually(lambda: upgraded.transport() == "websocket")
        for client in clients:
            assert (await client.call("joinRoom", "order-1", namespace=NS))["ok"] is True
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                url + "/api/notifications/orders/1/status",
                headers={"Authorization": f"Bearer {alice}"},
            ) as response,
        ):
            stream = sse_events(response)
            await asyncio.wait_for(anext(stream), 5)  # the current status
            [awkward, marker] = await set_statuses(db, 1, [AWKWARD_STATUS, "ready"])
            on_sse = [json.loads((await asyncio.wait_for(anext(stream), 5)).data) for _ in "ab"]
        assert [u["eventId"] for u in on_sse] == [awkward, marker]
        assert on_sse[0]["status"] == AWKWARD_STATUS
        assert on_sse[1]["previousStatus"] == AWKWARD_STATUS
        for received in (on_websocket, on_polling, on_upgraded):
            assert await received.wait_for("orderStatusUpdate", 2) == on_sse
    finally:
        for client in clients:
            await client.disconnect()
