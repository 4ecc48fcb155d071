"""Several real `tiffin-rt serve` processes against one database and one broker (issue 14)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import socketio

from tests.brokers import BOTH, REDIS_URL, needs
from tests.cluster_nodes import Cluster, Node, StartCluster
from tests.conftest import StartServer
from tests.helpers import (
    connect_refusal,
    disconnecting,
    eventually,
    marker_arrived,
    sio_client,
    token,
)
from tests.support_clients import Person, connect
from tests.tcp_proxy import FreezableProxy
from tiffin_rt.cluster import CLUSTER_BUS
from tiffin_rt.transports.socketio.notifications import NOTIFICATION_GATEWAY

OFFLINE = {"agentsOnline": 0, "online": False}
ONE_AGENT = {"agentsOnline": 1, "online": True}


def last_presence(person: Person) -> Any:
    seen = person.received.of("presence")
    return seen[-1] if seen else None


@contextlib.asynccontextmanager
async def people(*connecting: Any) -> AsyncIterator[list[Person]]:
    """Connected /support clients, closed on the way out whatever happened."""
    connected: list[Person] = []
    try:
        for person in connecting:
            connected.append(await person)
        yield connected
    finally:
        for person in connected:
            with contextlib.suppress(Exception):
                await person.close()


async def test_a_database_event_reaches_clients_on_every_node(
    cluster_nodes: StartCluster, db: asyncpg.Connection
) -> None:
    cluster = await cluster_nodes(2)
    tok = token(cluster.settings, "ana")
    async with (
        disconnecting(sio_client(cluster[0].url, tok)) as (_, on_a),
        disconnecting(sio_client(cluster[1].url, tok)) as (_, on_b),
    ):
        await db.execute("SELECT tiffin_rt.notify_user('ana', 'promo', 'Lunch deal', 'half off')")
        await marker_arrived(db, "ana", on_a, on_b)
        for received in (on_a, on_b):
            assert [n["title"] for n in received.of("notification")] == ["Lunch deal"]


@pytest.mark.parametrize("broker", BOTH)
async def test_typing_and_presence_cross_nodes(cluster_nodes: StartCluster, broker: str) -> None:
    cluster = await cluster_nodes(2, broker=broker, support={"typing_throttle": 0})
    settings = cluster.settings
    async with people(connect(cluster[0].url, settings, "alice")) as [alice]:
        assert (await alice.received.wait_for("presence"))[0] == OFFLINE
        async with people(connect(cluster[1].url, settings, "sam", "support")) as [sam]:
            await eventually(lambda: last_presence(alice) == ONE_AGENT)
            cid = (await alice.start())["id"]
            assert (await sam.call("joinConversation", {"conversationId": cid}))["ok"]

            await alice.call("typing", {"conversationId": cid, "isTyping": True})
            [typing] = await sam.received.wait_for("typing")
            assert typing == {"conversationId": cid, "userId": "alice", "isTyping": True}
            await sam.call("typing", {"conversationId": cid, "isTyping": True})
            await sam.call("typing", {"conversationId": cid, "isTyping": False})
            # sam's two came after alice's own indicator would have come back to her: it did not.
            on_alice = await alice.received.wait_for("typing", 2)
            assert on_alice == [
                {"conversationId": cid, "userId": "sam", "isTyping": True},
                {"conversationId": cid, "userId": "sam", "isTyping": False},
            ]
        await eventually(lambda: last_presence(alice) == OFFLINE)


@pytest.mark.parametrize("broker", BOTH)
async def test_a_killed_nodes_agents_go_offline_within_seconds(
    cluster_nodes: StartCluster, broker: str
) -> None:
    cluster = await cluster_nodes(2, broker=broker)
    settings = cluster.settings
    async with people(
        connect(cluster[0].url, settings, "alice"),
        connect(cluster[1].url, settings, "sam", "support"),
    ) as [alice, _sam]:
        await eventually(lambda: last_presence(alice) == ONE_AGENT)
        await cluster.kill(cluster[1])  # no goodbye: its heartbeats just stop
        # Gone after cluster.node_timeout (3 s), not after minutes; the bound is generous.
        await eventually(lambda: last_presence(alice) == OFFLINE, timeout=12)


async def rider_locations(url: str, tok: str) -> Any:
    return sio_client(url, tok, events=("riderLocation", "notification"))


@pytest.mark.parametrize("broker", BOTH)
async def test_a_server_side_emit_on_one_node_reaches_clients_on_the_others(
    cluster_nodes: StartCluster, start_server: StartServer, broker: str
) -> None:
    cluster = await cluster_nodes(2, broker=broker)
    # Node C runs in this process, built exactly as `serve` builds it, so its Python API
    # (the cluster bus, the notification gateway) can be called here.
    node_c = (await start_server(cluster.settings)).app
    tok = token(cluster.settings, "ana")
    async with (
        disconnecting(await rider_locations(cluster[0].url, tok)) as (_, on_a),
        disconnecting(await rider_locations(cluster[1].url, tok)) as (_, on_b),
    ):
        bus = node_c[CLUSTER_BUS]
        await eventually(lambda: bus.presence.nodes == 2, timeout=10)
        fixes = [{"riderId": "r1", "lat": 51.5 + i / 1000, "lng": -0.12} for i in range(3)]
        for fix in fixes:
            await bus.emit("riderLocation", fix, to=["user-ana"], namespace="/notifications")
        # Each node gets one publisher's messages in order: the third is the marker that
        # nothing was duplicated before it.
        for received in (on_a, on_b):
            assert await received.wait_for("riderLocation", 3) == fixes

        # The durable path: logged, NOTIFYed, and delivered by every node's listener.
        await node_c[NOTIFICATION_GATEWAY].send_notification(
            "user-ana", {"type": "promo", "title": "From node C"}
        )
        for received in (on_a, on_b):
            [notification] = await received.wait_for("notification")
            assert notification["title"] == "From node C"


async def refused(node: Node, tok: str) -> str:
    return str((await connect_refusal(node.url, {"token": tok}))["code"])


async def connected_client(node: Node, tok: str) -> socketio.AsyncClient:
    client, _ = await sio_client(node.url, tok)
    return client


@needs(REDIS_URL)
async def test_connections_per_user_hold_across_nodes_and_a_dead_nodes_expire(
    cluster_nodes: StartCluster,
) -> None:
    cluster = await cluster_nodes(
        2, broker=REDIS_URL, limits={"connections_per_user": 2, "connect_per_ip": "1000/minute"}
    )
    node_a, node_b = cluster[0], cluster[1]
    tok = token(cluster.settings, "ana")
    clients = [await connected_client(node_a, tok), await connected_client(node_b, tok)]
    try:
        # Each node alone would admit a second connection: the two together refuse a third.
        assert await refused(node_a, tok) == "rate_limited"
        assert await refused(node_b, tok) == "rate_limited"

        await clients.pop(0).disconnect()  # ana's connection on A ends: one more on B is fine
        clients.append(await _eventually_connected(node_b, tok))
        assert await refused(node_a, tok) == "rate_limited"

        # A node that dies takes its connections' counts with it (after cluster.node_timeout).
        await clients.pop(0).disconnect()
        clients.append(await _eventually_connected(node_a, tok))  # one on A, one on B
        assert await refused(node_b, tok) == "rate_limited"
        await cluster.kill(node_a)
        clients.append(await _eventually_connected(node_b, tok, timeout=12))
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.disconnect()


async def _eventually_connected(node: Node, tok: str, timeout: float = 5.0) -> socketio.AsyncClient:
    """Connect once the user's count allows it (a disconnect or a node's expiry frees a slot)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await connected_client(node, tok)
        except socketio.exceptions.ConnectionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


@needs(REDIS_URL)
async def test_the_per_user_event_budget_holds_across_nodes(cluster_nodes: StartCluster) -> None:
    cluster = await cluster_nodes(
        2,
        broker=REDIS_URL,
        limits={"events_per_user": "6/minute", "events_per_connection": "100/second"},
    )
    settings = cluster.settings
    async with people(
        connect(cluster[0].url, settings, "ana"), connect(cluster[1].url, settings, "ana")
    ) as [on_a, on_b]:
        answers = [await on_a.call("presence") for _ in range(4)]
        answers += [await on_b.call("presence") for _ in range(4)]
        codes = [a["error"]["code"] if not a["ok"] else "ok" for a in answers]
        assert codes == ["ok"] * 6 + ["rate_limited"] * 2
        assert (await on_a.call("presence"))["error"]["code"] == "rate_limited"
        # Another user's budget is their own.
        async with people(connect(cluster[0].url, settings, "bo")) as [bo]:
            assert (await bo.call("presence"))["ok"]


async def broker_state(cluster: Cluster) -> list[tuple[bool, int]]:
    states = [(await cluster.health(node))["cluster"] for node in cluster.nodes]
    return [(state["connected"], state["reconnects"]) for state in states]


@pytest.mark.parametrize("broker", BOTH)
async def test_broker_cut_mid_stream_ephemeral_resumes_database_events_lose_nothing(
    cluster_nodes: StartCluster, db: asyncpg.Connection, broker: str
) -> None:
    proxy = FreezableProxy(broker)
    await proxy.start()
    try:
        cluster = await cluster_nodes(2, broker=proxy.dsn, support={"typing_throttle": 0})
        await _cut_mid_stream(cluster, proxy, db)
    finally:
        await proxy.close()


async def _cut_mid_stream(cluster: Cluster, proxy: FreezableProxy, db: asyncpg.Connection) -> None:
    settings = cluster.settings
    node_a, node_b = cluster[0].url, cluster[1].url
    total = 120
    sent: list[str] = []
    halfway = asyncio.Event()

    async def stream() -> None:
        """Notifications to alice throughout, through the log (bounded: `total` of them)."""
        for i in range(total):
            title = f"n{i}"
            await db.execute("SELECT tiffin_rt.notify_user('alice', 'promo', $1, '')", title)
            sent.append(title)
            if i == total // 3:
                halfway.set()
            await asyncio.sleep(0.03)

    async with (
        disconnecting(sio_client(node_a, token(settings, "alice"))) as (_, notifications),
        people(connect(node_a, settings, "alice"), connect(node_b, settings, "sam", "support")) as [
            alice,
            sam,
        ],
    ):
        await eventually(lambda: last_presence(alice) == ONE_AGENT)
        writer = asyncio.create_task(stream())
        try:
            await halfway.wait()
            assert proxy.freeze() >= 2  # both nodes' broker connections now carry nothing
            await _until(cluster, lambda states: not any(up for up, _ in states), timeout=30)
            # Cut off, node A no longer hears node B's agents.
            await eventually(lambda: last_presence(alice) == OFFLINE, timeout=10)
            proxy.thaw()
            await _until(
                cluster, lambda states: all(up and again >= 1 for up, again in states), timeout=30
            )
            await eventually(lambda: last_presence(alice) == ONE_AGENT, timeout=10)
            # Typing crosses again, in a conversation started after the cut.
            cid = (await alice.start())["id"]
            assert (await sam.call("joinConversation", {"conversationId": cid}))["ok"]
            await sam.call("typing", {"conversationId": cid, "isTyping": True})
            await eventually(
                lambda: (
                    {"conversationId": cid, "userId": "sam", "isTyping": True}
                    in alice.received.of("typing")
                ),
                timeout=5,
            )
            await writer
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        await marker_arrived(db, "alice", notifications)
        assert [n["title"] for n in notifications.of("notification")] == sent
        assert len(sent) == total


async def _until(cluster: Cluster, check: Any, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        states = await broker_state(cluster)
        if check(states):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"brokers of the nodes: {states}")
        await asyncio.sleep(0.1)


def test_each_backend_is_imported_only_when_configured() -> None:
    """One node loads no backend module (python-socketio itself imports redis and aio_pika
    when they are installed, for its own managers)."""
    probe = (
        "import sys; from tests.helpers import make_settings; from tiffin_rt.app import create_app;"
        " create_app(make_settings('postgresql://127.0.0.1/none'));"
        " print(sorted(m for m in sys.modules if m.startswith('tiffin_rt.cluster.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    loaded = result.stdout.strip()
    assert "tiffin_rt.cluster.local" in loaded
    assert "redis" not in loaded
    assert "amqp" not in loaded
