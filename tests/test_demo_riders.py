"""`tiffin-rt demo simulate` rides a ready order from the kitchen to the customer's door."""

from __future__ import annotations

import asyncio

import asyncpg
from aiohttp.test_utils import TestServer

from tests.helpers import base_url, marker_arrived, sio_client, token
from tests.test_cli_and_health import run_cli
from tiffin_rt.config import Settings
from tiffin_rt.demo_map import HOMES, KITCHENS, route

NS = "/notifications"


async def test_demo_simulate_rides_the_rider_to_the_door_before_delivery(
    server: TestServer, dsn: str, db: asyncpg.Connection, settings: Settings
) -> None:
    url = base_url(server)
    await db.execute("UPDATE orders SET status = 'ready' WHERE id = 1")
    await db.execute("UPDATE orders SET status = 'delivered' WHERE id IN (2, 3, 4)")
    alice, received = await sio_client(
        url, token(settings, "alice"), events=("riderLocation", "orderStatusUpdate", "notification")
    )
    try:
        assert (await alice.call("joinRoom", "order-1", namespace=NS))["ok"]
        result = await asyncio.to_thread(
            run_cli,
            "demo",
            "simulate",
            "--steps",
            "1",
            "--interval",
            "0.01",
            "--ride-steps",
            "2",
            "--url",
            url,
            env_dsn=dsn,
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        way = route(KITCHENS["spice-garden"], HOMES["alice"], 2)
        assert lines == [
            *(f"order 1: rider rita at {lat:.4f}, {lng:.4f}" for lat, lng in way),
            "order 1: delivered (alice)",
        ]
        await marker_arrived(db, "alice", received)
        positions = received.of("riderLocation")
        assert [(p["lat"], p["lng"], p["riderId"]) for p in positions] == [
            (lat, lng, "rita") for lat, lng in way
        ]
        assert [u["status"] for u in received.of("orderStatusUpdate")] == ["delivered"]
    finally:
        await alice.disconnect()


async def test_demo_simulate_without_a_server_moves_orders_without_riders(
    server: TestServer, dsn: str, db: asyncpg.Connection
) -> None:
    await db.execute("UPDATE orders SET status = 'ready' WHERE id = 1")
    result = await asyncio.to_thread(
        run_cli,
        "demo",
        "simulate",
        "--steps",
        "1",
        "--interval",
        "0.01",
        "--url",
        "http://127.0.0.1:9",  # nothing listens there
        env_dsn=dsn,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["order 1: delivered (alice)"]
    assert "rider rita cannot reach http://127.0.0.1:9" in result.stderr
    assert "orders move on without riders" in result.stderr
