"""Rider tracking keeps an order's status and rider in memory, refreshed by the order's events
from the log. A read of the orders table that was on its way when such an event arrived holds
the state before it: it must not replace the newer one.

The read is held mid-way, after PostgreSQL took its snapshot, by a destination column whose
cast to text waits on an advisory lock the test holds.
"""

from __future__ import annotations

import asyncio

import asyncpg

from tests.conftest import StartServer
from tests.helpers import base_url
from tests.test_rider_location import NS, TRACKING, clients, position, send
from tiffin_rt.config import Settings

LOCK = 4215
SLOW_COLUMN = f"""
CREATE TYPE slow_coordinate AS (value double precision);
CREATE FUNCTION slow_coordinate_value(c slow_coordinate) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_lock_shared({LOCK});
    PERFORM pg_advisory_unlock_shared({LOCK});
    RETURN c.value::text;
END $$;
CREATE CAST (slow_coordinate AS text) WITH FUNCTION slow_coordinate_value(slow_coordinate);
ALTER TABLE orders ADD COLUMN slow_lat slow_coordinate;
UPDATE orders SET slow_lat = ROW(delivery_lat);
"""


async def until_counted(db: asyncpg.Connection, query: str, *args: object) -> None:
    """Until `query` counts something (bounded)."""
    async with asyncio.timeout(5):
        while True:
            if await db.fetchval(query, *args):
                return
            await asyncio.sleep(0.02)


async def read_held(db: asyncpg.Connection) -> None:
    """Until the server's read of the orders table waits on the test's lock."""
    await until_counted(
        db,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = $1",
        LOCK,
    )


REASSIGN = "UPDATE orders SET rider_id = 'ravi', status = 'confirmed' WHERE id = 1"


async def test_a_read_older_than_a_reassignment_does_not_undo_it(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    await start_server(tracking=TRACKING)  # creates the demo orders table
    await db.execute(SLOW_COLUMN)
    server = await start_server(tracking={**TRACKING, "destination_lat_column": "slow_lat"})
    async with clients(base_url(server), settings, ("rita", "rider"), ("ravi", "rider")) as [
        (rita, _),
        (ravi, to_ravi),
    ]:
        await db.execute("SELECT pg_advisory_lock($1)", LOCK)
        try:
            # rita's position makes the server read order 1 (assigned to her): held
            first = asyncio.ensure_future(send(rita, position(n=1)))
            await read_held(db)
            # meanwhile the order goes to ravi, and the server hears of it
            await db.execute(REASSIGN)
            [update] = await to_ravi.wait_for("orderStatusUpdate")
            assert update["status"] == "confirmed"
        finally:
            await db.execute("SELECT pg_advisory_unlock($1)", LOCK)
        answer = await first
        # what the read held (rita's) came after the event (ravi's): the event wins
        assert answer["ok"] is False, answer
        assert answer["error"]["code"] == "forbidden"
        ack = await send(ravi, position(n=2))
        assert ack["ok"] is True, ack
        assert ack["eta"]["method"] == "straight_line"  # the destination read is kept
        assert (await send(rita, position(n=3)))["error"]["code"] == "forbidden"


async def test_a_read_older_than_delivery_does_not_reopen_the_order(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    await start_server(tracking=TRACKING)
    await db.execute(SLOW_COLUMN)
    server = await start_server(tracking={**TRACKING, "destination_lat_column": "slow_lat"})
    async with clients(base_url(server), settings, ("rita", "rider"), ("alice", "customer")) as [
        (rita, to_rita),
        (alice, to_alice),
    ]:
        await db.execute("SELECT pg_advisory_lock($1)", LOCK)
        try:
            first = asyncio.ensure_future(send(rita, position(n=1)))
            await read_held(db)
            await db.execute("UPDATE orders SET status = 'delivered' WHERE id = 1")
            [update] = await to_rita.wait_for("orderStatusUpdate")
            assert update["status"] == "delivered"
        finally:
            await db.execute("SELECT pg_advisory_unlock($1)", LOCK)
        answer = await first
        assert answer["error"]["code"] == "order_closed", answer
        # rita's next one is refused, and a customer joining now gets no position (it would
        # come before the ack)
        assert (await send(rita, position(n=2)))["error"]["code"] == "order_closed"
        assert (await alice.call("joinRoom", "order-1", namespace=NS))["ok"]
        assert to_alice.of("riderLocation") == []


async def test_a_late_joiner_whose_read_was_overtaken_by_a_reassignment_gets_no_old_position(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    await start_server(tracking=TRACKING)
    await db.execute(SLOW_COLUMN)
    server = await start_server(
        tracking={**TRACKING, "destination_lat_column": "slow_lat", "order_cache_ttl": 0}
    )
    async with clients(
        base_url(server), settings, ("rita", "rider"), ("ravi", "rider"), ("alice", "customer")
    ) as [(rita, _), (_, to_ravi), (alice, to_alice)]:
        assert (await send(rita, position(n=1)))["ok"]
        # stored: a server without it in memory would read it
        await until_counted(db, "SELECT count(*) FROM tiffin_rt.rider_positions")
        await db.execute("SELECT pg_advisory_lock($1)", LOCK)
        try:
            # alice joins: the server reads the order (for its rider) to pick her a position
            joined = asyncio.ensure_future(alice.call("joinRoom", "order-1", namespace=NS))
            await read_held(db)
            await db.execute(REASSIGN)
            await to_ravi.wait_for("orderStatusUpdate")
        finally:
            await db.execute("SELECT pg_advisory_unlock($1)", LOCK)
        assert (await joined)["ok"]
        # a position would have come before the ack: rita's is not ravi's order's any more
        assert to_alice.of("riderLocation") == []
