"""Several real `tiffin-rt serve` processes against one database (issue 14)."""

from __future__ import annotations

import asyncpg

from tests.cluster_nodes import StartCluster
from tests.helpers import disconnecting, marker_arrived, sio_client, token


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
