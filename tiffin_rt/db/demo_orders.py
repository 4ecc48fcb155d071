"""Queries behind the demo page: list orders with their status history, place and move orders."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from tiffin_rt.config import OrdersSettings
from tiffin_rt.core.events import iso_utc
from tiffin_rt.db.triggers import qualified_table, quote_ident
from tiffin_rt.demo_map import HOMES

# Demo-table columns shown on the page when the configured table has them.
EXTRA_COLUMNS = ("item", "total_cents", "created_at", "delivery_lat", "delivery_lng")

Executor = asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy


@dataclass(frozen=True, slots=True)
class OrderFilter:
    """Whose orders to list: one column compared with one value, or every order."""

    column: str | None = None
    value: str | None = None


@dataclass(slots=True)
class OrderView:
    order_id: str
    status: str
    customer_id: str | None
    vendor_id: str | None
    rider_id: str | None
    extra: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.order_id,
            "status": self.status,
            "customerId": self.customer_id,
            "vendorId": self.vendor_id,
            "riderId": self.rider_id,
            "item": self.extra.get("item"),
            "totalCents": self.extra.get("total_cents"),
            "createdAt": self.extra.get("created_at"),
            "destination": self._destination(),
            "history": self.history,
        }

    def _destination(self) -> dict[str, float] | None:
        """Where the order goes (the demo table's delivery_lat/lng): the page's map marks it."""
        lat, lng = self.extra.get("delivery_lat"), self.extra.get("delivery_lng")
        if isinstance(lat, int | float) and isinstance(lng, int | float):
            return {"lat": float(lat), "lng": float(lng)}
        return None


class DemoOrders:
    """SQL built once from the configured column names (quoted), like db.orders.OrderQueries."""

    LIMIT = 50

    def __init__(self, orders: OrdersSettings, columns: frozenset[str]) -> None:
        q = quote_ident
        self._orders = orders
        self._columns = columns
        self._table = qualified_table(orders)
        self._select = (
            f"SELECT o.{q(orders.id_column)}::text AS id,"
            f" o.{q(orders.status_column)}::text AS status,"
            f" o.{q(orders.customer_column)}::text AS customer_id,"
            f" o.{q(orders.vendor_column)}::text AS vendor_id,"
            f" o.{q(orders.rider_column)}::text AS rider_id,"
            f" to_jsonb(o) AS row FROM {self._table} o"
        )
        self._order_by = f" ORDER BY o.{q(orders.id_column)} DESC LIMIT {self.LIMIT}"

    @classmethod
    async def create(cls, pool: asyncpg.Pool, orders: OrdersSettings) -> DemoOrders:
        rows = await pool.fetch(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1)"
            " AND attnum > 0 AND NOT attisdropped",
            qualified_table(orders),
        )
        return cls(orders, frozenset(r["attname"] for r in rows))

    def column_for(self, role: str) -> str | None:
        """The column a role's own orders are found by; None for staff who see every order."""
        return {
            "customer": self._orders.customer_column,
            "kitchen": self._orders.vendor_column,
            "rider": self._orders.rider_column,
        }.get(role)

    async def visible(self, pool: asyncpg.Pool, where: OrderFilter) -> list[OrderView]:
        if where.column is None:
            rows = await pool.fetch(self._select + self._order_by)
        else:
            sql = f"{self._select} WHERE o.{quote_ident(where.column)}::text = $1{self._order_by}"
            rows = await pool.fetch(sql, where.value)
        views = [self._view(row) for row in rows]
        await self._add_history(pool, views)
        return views

    async def get(self, conn: Executor, order_id: str) -> OrderView | None:
        sql = f"{self._select} WHERE o.{quote_ident(self._orders.id_column)}::text = $1"
        row = await conn.fetchrow(sql, order_id)
        if row is None:
            return None
        view = self._view(row)
        await self._add_history(conn, [view])
        return view

    async def item_of(self, conn: Executor, order_id: str) -> str | None:
        if "item" not in self._columns:
            return None
        item: str | None = await conn.fetchval(
            f"SELECT item::text FROM {self._table}"
            f" WHERE {quote_ident(self._orders.id_column)}::text = $1",
            order_id,
        )
        return item

    async def place(
        self, conn: Executor, *, customer_id: str, vendor_id: str, item: str, cents: int
    ) -> str:
        """INSERT a pending order; the table's trigger logs it like any backend insert."""
        o, q = self._orders, quote_ident
        names = [o.customer_column, o.vendor_column, o.status_column]
        values: list[Any] = [customer_id, vendor_id, "pending"]
        if "item" in self._columns:
            names.append("item")
            values.append(item)
        if "total_cents" in self._columns:
            names.append("total_cents")
            values.append(cents)
        home = HOMES.get(customer_id)
        if home is not None and {"delivery_lat", "delivery_lng"} <= self._columns:
            names.extend(("delivery_lat", "delivery_lng"))
            values.extend(home)
        placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
        order_id: str = await conn.fetchval(
            f"INSERT INTO {self._table} ({', '.join(q(n) for n in names)})"
            f" VALUES ({placeholders}) RETURNING {q(o.id_column)}::text",
            *values,
        )
        return order_id

    @staticmethod
    def _view(row: asyncpg.Record) -> OrderView:
        raw = row["row"]
        extra = json.loads(raw) if isinstance(raw, str) else dict(raw or {})
        return OrderView(
            order_id=row["id"],
            status=row["status"],
            customer_id=row["customer_id"],
            vendor_id=row["vendor_id"],
            rider_id=row["rider_id"],
            extra={k: extra.get(k) for k in EXTRA_COLUMNS},
        )

    @staticmethod
    async def _add_history(conn: Executor, views: list[OrderView]) -> None:
        """Each order's status changes still in the event log, oldest first."""
        if not views:
            return
        by_id = {v.order_id: v for v in views}
        rows = await conn.fetch(
            "SELECT id, order_id, payload->>'status' AS status, created_at FROM tiffin_rt.events"
            " WHERE kind = 'order_status' AND order_id = ANY($1::text[]) ORDER BY id",
            list(by_id),
        )
        for row in rows:
            by_id[row["order_id"]].history.append(
                {
                    "status": row["status"],
                    "timestamp": iso_utc(row["created_at"]),
                    "eventId": row["id"],
                }
            )
