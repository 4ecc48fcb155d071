"""Rider positions across nodes: through cluster.broker (Redis or RabbitMQ), never the log."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest

from tests.brokers import BOTH
from tests.cluster_nodes import StartCluster
from tests.helpers import disconnecting, sio_client, token

NS = "/notifications"
TRACKING = {"destination_lat_column": "delivery_lat", "destination_lng_column": "delivery_lng"}


def position(n: int) -> dict[str, Any]:
    return {
        "orderId": "1",
        "lat": 12.97 - 0.001 * n,
        "lng": 77.59 + 0.001 * n,
        "timestamp": int(time.time() * 1000),
    }


@pytest.mark.parametrize("broker", BOTH)
async def test_a_riders_positions_reach_a_customer_on_another_node(
    cluster_nodes: StartCluster, db: asyncpg.Connection, broker: str
) -> None:
    cluster = await cluster_nodes(
        2, broker=broker, tracking={**TRACKING, "updates_per_rider": "20/second"}
    )
    settings = cluster.settings
    events = ("riderLocation", "orderStatusUpdate")
    async with (
        disconnecting(
            sio_client(cluster[0].url, token(settings, "rita", "rider"), events=events)
        ) as (rita, _),
        disconnecting(sio_client(cluster[1].url, token(settings, "alice"), events=events)) as (
            alice,
            to_alice,
        ),
    ):
        assert (await alice.call("joinRoom", "order-1", namespace=NS))["ok"]
        for n in range(3):
            ack = await rita.call("locationUpdate", position(n), namespace=NS)
            assert ack["ok"], ack
        got = await to_alice.wait_for("riderLocation", 3, timeout=10)
        assert [g["lat"] for g in got] == [position(n)["lat"] for n in range(3)]
        assert got[0]["eta"]["method"] == "straight_line"
        # a late joiner on the other node gets the newest at once, from that node's memory
        async with disconnecting(
            sio_client(cluster[1].url, token(settings, "alice"), events=events)
        ) as (late, to_late):
            assert (await late.call("joinRoom", "order-1", namespace=NS))["ok"]
            [first] = await to_late.wait_for("riderLocation")
            assert first["lat"] == position(2)["lat"]
        # positions never went through the event log
        assert await db.fetchval("SELECT count(*) FROM tiffin_rt.events WHERE payload ? 'lat'") == 0
        # the order is delivered: the node of the customer stops too
        await db.execute("UPDATE orders SET status = 'delivered' WHERE id = 1")
        await to_alice.wait_for("orderStatusUpdate")
        # rita's node hears of it from its own listener, at about the same time
        for n in range(100):
            ack = await rita.call("locationUpdate", position(10 + n), namespace=NS)
            if not ack["ok"]:
                break
            await asyncio.sleep(0.05)
        assert ack["error"]["code"] == "order_closed"
