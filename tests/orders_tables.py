"""Two shapes of orders table the pipeline tests run against: the demo one and a custom one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from tiffin_rt.config import OrdersSettings
from tiffin_rt.db.triggers import qualified_table, quote_ident


@dataclass(frozen=True)
class OrdersTable:
    """The backend's view: how to change an order's status in this table."""

    settings: OrdersSettings

    def section(self) -> dict[str, Any]:
        return self.settings.model_dump()

    async def set_status(self, db: asyncpg.Connection, order_id: str, status: str) -> None:
        s, q = self.settings, quote_ident
        await db.execute(
            f"UPDATE {qualified_table(s)} SET {q(s.status_column)} = $2"
            f" WHERE {q(s.id_column)}::text = $1",
            order_id,
            status,
        )

    async def create(self, db: asyncpg.Connection) -> None:
        if self.settings.create_demo_table:
            return
        await db.execute("CREATE SCHEMA IF NOT EXISTS shop")
        await db.execute(
            "CREATE TABLE shop.purchases (purchase_no text PRIMARY KEY, state text NOT NULL,"
            " buyer text, restaurant text, courier text)"
        )
        await db.execute(
            "INSERT INTO shop.purchases VALUES"
            " ('1', 'pending', 'alice', 'spice-garden', 'rita'),"
            " ('2', 'confirmed', 'alice', 'spice-garden', NULL),"
            " ('3', 'preparing', 'bob', 'green-bowl', 'ravi')"
        )


DEMO = OrdersTable(OrdersSettings())
CUSTOM = OrdersTable(
    OrdersSettings(
        table="shop.purchases",
        id_column="purchase_no",
        status_column="state",
        customer_column="buyer",
        vendor_column="restaurant",
        rider_column="courier",
        create_demo_table=False,
    )
)
