"""Draining a node (issue 14): SIGTERM on one of three nodes behind nginx in the middle of a
stream; its clients reconnect through nginx to the others and resume: 0 lost, 0 duplicated."""

from __future__ import annotations

import asyncio

import aiohttp
import asyncpg
from aiohttp.test_utils import TestServer

from tests.cluster_clients import FINAL_STATUS, Follower, SocketIOFollower, SseFollower
from tests.cluster_nodes import StartCluster
from tests.helpers import base_url, eventually, token
from tests.nginx_front import NODE_LIMITS, running_nginx
from tests.test_nginx import follow_orders, order_event_ids
from tiffin_rt.config import Settings
from tiffin_rt.drain import drain_connections

KINDS = ("websocket", "polling", "upgrade", "sse")  # upgrade: polling, then WebSocket
PER_KIND = 2  # clients of each kind on each node
STEPS = 40  # status changes per order before the final one
DRAIN_AT = 10  # SIGTERM once the victim's clients have this many events each
SHUTDOWN_TIMEOUT = 5


async def test_sigterm_mid_stream_loses_and_repeats_nothing(
    cluster_nodes: StartCluster, dsn: str
) -> None:
    cluster = await cluster_nodes(
        3, limits=NODE_LIMITS, server={"shutdown_timeout": SHUTDOWN_TIMEOUT}
    )
    nodes = cluster.nodes
    async with running_nginx([n.port for n in nodes]) as nginx:
        ports = [node.port for node in nodes]
        victim = nodes[1]
        addresses = await nginx.map_addresses(ports, per_node=len(KINDS) * PER_KIND)
        plan = [
            (KINDS[index % len(KINDS)], address, port)
            for port in ports
            for index, address in enumerate(addresses[port])
        ]
        db = await asyncpg.connect(dsn)
        followers: list[Follower] = []
        clients: list[SocketIOFollower | SseFollower] = []
        writer: asyncio.Task[None] | None = None
        try:
            await follow_orders(db, nginx.url, plan, "d", followers, clients)
            order_ids = [f.order_id for f in followers]
            start = await db.fetchval("SELECT coalesce(max(id), 0) FROM tiffin_rt.events")
            on_victim = [
                f for f, (_k, _a, port) in zip(followers, plan, strict=True) if port == victim.port
            ]
            assert {f.kind for f in on_victim} == set(KINDS)

            async def write_stream() -> None:
                """One committed status change per order and step, as a backend makes them."""
                for step in range(1, STEPS + 1):
                    for order_id in order_ids:
                        await db.execute(
                            "UPDATE public.orders SET status = $1 WHERE id::text = $2",
                            f"step-{step}",
                            order_id,
                        )
                    await asyncio.sleep(0.02)  # pacing: the stream spans the drain

            writer = asyncio.create_task(write_stream())
            # SIGTERM mid-stream: the victim's clients are receiving, more is being committed
            sse_first = 1  # an SSE client's first event is the order's status at connect
            await asyncio.gather(
                *(
                    f.wait_received(DRAIN_AT + (sse_first if f.kind == "sse" else 0), 20)
                    for f in on_victim
                )
            )
            assert not writer.done()
            exit_code = await cluster.terminate(victim)  # SIGTERM, and its exit
            assert exit_code == 0, victim.output()
            await writer
            # The final status of every order, committed once the victim has gone: each client
            # receives it from a node that is still up, after everything before it.
            await db.execute(
                "UPDATE public.orders SET status = $1 WHERE id::text = ANY($2::text[])",
                FINAL_STATUS,
                order_ids,
            )
            await asyncio.gather(*(asyncio.wait_for(f.finished.wait(), 20) for f in followers))

            for follower in followers:
                expected = await order_event_ids(db, follower.order_id, start)
                assert len(expected) == STEPS + 1
                received = follower.ids_after(start)
                assert sorted(set(received)) == expected, (
                    follower.kind,
                    "lost",
                    set(expected) - set(received),
                )
                assert received == expected, (follower.kind, "duplicated or out of order", received)
            for follower in on_victim:
                assert follower.connects >= 2, (follower.kind, follower.disconnects)
            for follower in followers:
                if follower not in on_victim:
                    assert follower.connects == 1, (follower.kind, follower.disconnects)
        finally:
            if writer is not None and not writer.done():
                writer.cancel()
            await asyncio.gather(*(client.close() for client in clients))
            await db.close()
        output = victim.output()
        assert "Traceback" not in output, output
        assert "draining: ending" in output, output
        errors = nginx.error_log.read_text()
        for level in ("[crit]", "[alert]", "[emerg]"):
            assert level not in errors, errors


async def test_drain_closes_transports_so_clients_reconnect(
    server: TestServer, settings: Settings
) -> None:
    """python-socketio's client takes Engine.IO's close packet as final (no reconnection): the
    drain closes the transport instead, on WebSocket and long-polling; /readyz says draining."""
    url = base_url(server)
    followers = [
        Follower(transport, "127.0.0.1", "1", token(settings, "alice")) for transport in KINDS[:2]
    ]
    clients = [SocketIOFollower(url, f, [f.kind]) for f in followers]
    try:
        await asyncio.gather(*(client.start() for client in clients))
        await drain_connections(server.app)
        # each client reconnects (here to the same server, which still listens)
        await eventually(lambda: all(f.connects == 2 for f in followers), timeout=10)
        async with aiohttp.ClientSession() as http, http.get(f"{url}/readyz") as response:
            assert response.status == 503
            assert (await response.json())["checks"]["node"] == "draining"
    finally:
        await asyncio.gather(*(client.close() for client in clients))
