"""docs/nginx.conf in front of three real nodes: WebSocket upgrade, sticky long-polling, SSE
unbuffered, each client on its own node, every event exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg

from tests.cluster_clients import FINAL_STATUS, Follower, SocketIOFollower, SseFollower
from tests.cluster_nodes import StartCluster
from tests.helpers import TEST_SECRET
from tests.nginx_front import NODE_LIMITS, running_nginx
from tiffin_rt.auth import mint_token
from tiffin_rt.config import AuthSettings

KINDS = ("websocket", "polling", "upgrade", "sse")
STEPS = ("confirmed", "preparing", "ready", FINAL_STATUS)


def customer_token(user: str) -> str:
    return mint_token(AuthSettings(jwt_secret=TEST_SECRET), sub=user, role="customer", ttl=600)


async def place_orders(db: asyncpg.Connection, users: list[str]) -> list[str]:
    rows = await db.fetch(
        "INSERT INTO public.orders (user_id, vendor_id, status)"
        " SELECT u, 'spice-garden', 'pending' FROM unnest($1::text[]) AS u RETURNING id::text",
        users,
    )
    return [row["id"] for row in rows]


async def order_event_ids(db: asyncpg.Connection, order_id: str, after: int) -> list[int]:
    rows = await db.fetch(
        "SELECT id FROM tiffin_rt.events WHERE order_id = $1 AND id > $2 ORDER BY id",
        order_id,
        after,
    )
    return [row["id"] for row in rows]


async def follow_orders(
    db: asyncpg.Connection,
    url: str,
    plan: list[tuple[str, str, int]],
    user_prefix: str,
    followers: list[Follower],
    clients: list[SocketIOFollower | SseFollower],
) -> None:
    """One customer and order per (transport, source address, node) of `plan`, each followed
    through nginx at `url` until it has its first event; `followers` and `clients` are filled
    as they are made, so the caller's cleanup stops every client that started."""
    users = [f"{user_prefix}{index}" for index in range(len(plan))]
    order_ids = await place_orders(db, users)
    for (kind, address, _port), user, order_id in zip(plan, users, order_ids, strict=True):
        follower = Follower(kind, address, order_id, customer_token(user))
        followers.append(follower)
        if kind == "sse":
            clients.append(SseFollower(url, follower))
        else:
            # upgrade: the official clients' default, polling then WebSocket
            transports = None if kind == "upgrade" else [kind]
            clients.append(SocketIOFollower(url, follower, transports))
    await asyncio.gather(*(client.start() for client in clients))
    await asyncio.gather(*(asyncio.wait_for(f.started.wait(), 10) for f in followers))


async def test_three_nodes_behind_nginx_serve_every_transport(
    cluster_nodes: StartCluster, dsn: str
) -> None:
    nodes = (await cluster_nodes(3, limits=NODE_LIMITS)).nodes
    async with running_nginx([n.port for n in nodes]) as nginx:
        ports = [node.port for node in nodes]
        addresses = await nginx.map_addresses(ports, per_node=len(KINDS))
        db = await asyncpg.connect(dsn)
        followers: list[Follower] = []
        clients: list[SocketIOFollower | SseFollower] = []
        try:
            plan = [
                (kind, address, port)
                for port in ports
                for kind, address in zip(KINDS, addresses[port], strict=True)
            ]
            await follow_orders(db, nginx.url, plan, "u", followers, clients)
            order_ids = [f.order_id for f in followers]
            start = await db.fetchval("SELECT coalesce(max(id), 0) FROM tiffin_rt.events")

            for status in STEPS:
                await db.execute(
                    "UPDATE public.orders SET status = $1 WHERE id::text = ANY($2::text[])",
                    status,
                    order_ids,
                )
            await asyncio.gather(*(asyncio.wait_for(f.finished.wait(), 20) for f in followers))

            for follower in followers:
                expected = await order_event_ids(db, follower.order_id, start)
                assert len(expected) == len(STEPS)
                assert follower.ids_after(start) == expected, follower
                # no session lost to a poll that reached another node: one connection each
                assert follower.connects == 1, (
                    follower.kind,
                    follower.disconnects,
                    follower.received,
                )
                assert follower.disconnects == [], follower
            upgraded = [c for c in clients if isinstance(c, SocketIOFollower) and not c.transports]
            assert all(c.client.transport() == "websocket" for c in upgraded)
            # every node served Socket.IO and SSE requests through nginx
            served = Counter(upstream for _addr, upstream in nginx.log_lines())
            assert {f"127.0.0.1:{port}" for port in ports} <= set(served), served
        finally:
            await asyncio.gather(*(client.close() for client in clients))
            await db.close()
        errors = nginx.error_log.read_text()
        assert "[error]" not in errors, errors
        assert "[crit]" not in errors, errors
