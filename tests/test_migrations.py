"""Schema migrations and triggers on the configured orders table."""

from __future__ import annotations

import asyncpg
import pytest

from tests import orders_tables
from tiffin_rt.config import OrdersSettings
from tiffin_rt.db import migrate

CUSTOM = orders_tables.CUSTOM.settings


async def create_custom_table(db: asyncpg.Connection) -> None:
    await db.execute("CREATE SCHEMA shop")
    await db.execute(
        "CREATE TABLE shop.purchases (purchase_no text PRIMARY KEY, state text, buyer text,"
        ' restaurant text, courier text, "Note" text)'
    )
    await db.execute("INSERT INTO shop.purchases VALUES ('P-1', 'pending', 'u1', 'v1', NULL, '')")


async def test_upgrade_twice_is_a_noop(db: asyncpg.Connection) -> None:
    first = await migrate.upgrade(db, OrdersSettings())
    assert "0001_event_log" in first
    assert "demo table public.orders" in first
    second = await migrate.upgrade(db, OrdersSettings())
    assert second == []
    state = await migrate.status(db)
    assert state.pending == []
    assert state.trigger_tables == ["public.orders"]


async def test_downgrade_keeps_orders_then_upgrade_works(db: asyncpg.Connection) -> None:
    await migrate.upgrade(db, OrdersSettings())
    rows_before = await db.fetchval("SELECT count(*) FROM orders")
    removed = await migrate.downgrade(db)
    assert removed == ["triggers on public.orders", "schema tiffin_rt"]
    assert await db.fetchval("SELECT to_regnamespace('tiffin_rt')") is None
    assert await db.fetchval("SELECT count(*) FROM orders") == rows_before
    await db.execute("UPDATE orders SET status = 'ready' WHERE id = 1")  # no trigger left
    await migrate.upgrade(db, OrdersSettings())
    await db.execute("UPDATE orders SET status = 'delivered' WHERE id = 1")
    assert await db.fetchval("SELECT count(*) FROM tiffin_rt.events") == 1


async def test_triggers_on_table_with_custom_columns(db: asyncpg.Connection) -> None:
    await create_custom_table(db)
    await migrate.upgrade(db, CUSTOM)
    await db.execute("UPDATE shop.purchases SET state = 'confirmed' WHERE purchase_no = 'P-1'")
    await db.execute("UPDATE shop.purchases SET courier = 'r9' WHERE purchase_no = 'P-1'")
    await db.execute("INSERT INTO shop.purchases VALUES ('P-2', 'pending', 'u2', 'v1', NULL, '')")
    rows = await db.fetch(
        "SELECT order_id, customer_id, rooms, payload FROM tiffin_rt.events"
        " WHERE kind = 'order_status' ORDER BY id"
    )
    assert [r["order_id"] for r in rows] == ["P-1", "P-2"]
    # The courier change is no status change: logged as 'order_parties' for room membership.
    moved = await db.fetchrow(
        "SELECT order_id, payload FROM tiffin_rt.events WHERE kind = 'order_parties'"
    )
    assert moved["order_id"] == "P-1"
    assert '"riderId": "r9"' in moved["payload"]
    assert rows[0]["rooms"] == ["order-P-1", "user-u1", "vendor-v1"]
    assert '"previousStatus": "pending"' in rows[0]["payload"]


async def test_missing_table_and_column_are_clear_errors(db: asyncpg.Connection) -> None:
    with pytest.raises(
        migrate.SchemaError, match=r"orders.table: table shop.purchases does not exist"
    ):
        await migrate.upgrade(db, CUSTOM)
    await create_custom_table(db)
    wrong = CUSTOM.model_copy(update={"rider_column": "driver"})
    with pytest.raises(migrate.SchemaError, match=r"orders.rider_column: .* no column 'driver'"):
        await migrate.upgrade(db, wrong)


async def test_notify_functions_write_to_the_log(db: asyncpg.Connection) -> None:
    await migrate.upgrade(db, OrdersSettings())
    await db.execute("SELECT tiffin_rt.notify_user('alice', 'promo', 'Hi', 'Body', '{\"x\": 1}')")
    await db.execute("SELECT tiffin_rt.notify_room('order-1', 'info', 'T', 'B')")
    rows = await db.fetch("SELECT kind, rooms FROM tiffin_rt.events ORDER BY id")
    assert [(r["kind"], r["rooms"]) for r in rows] == [
        ("notification", ["user-alice"]),
        ("notification", ["order-1"]),
    ]
