"""Queries on the backend's orders table, through the configured column names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from tiffin_rt.config import OrdersSettings
from tiffin_rt.core.parse import OrderIdFormat
from tiffin_rt.core.policy import OrderParties
from tiffin_rt.db.triggers import qualified_table, quote_ident


@dataclass(frozen=True, slots=True)
class OrderSnapshot:
    order_id: str
    status: str
    parties: OrderParties
    last_event_id: int | None
    changed_at: datetime | None
    # the status before the latest event, when that event is what set the current status
    previous_status: str | None = None
    # The newest event in the log that names the order's parties (the orders triggers' status
    # change or change of hands), read in the same snapshot as the row: the parties are as of
    # it. A change to the row takes the row's lock, so those events commit in id order; an
    # order event that names no parties (the gateway's, a hand-written row) takes no lock and
    # may commit before a change of hands with an older id, so it says nothing here.
    parties_event_id: int | None = None
    # With `fetch(seen_after=...)`: the ids above it of the order's status and payment events
    # committed in this snapshot (an SSE stream's first event covers those, and only those).
    seen: frozenset[int] | None = None


class OrderQueries:
    """Built once per process: the id column's type is read so lookups use its index."""

    def __init__(self, orders: OrdersSettings, id_type: str = "text") -> None:
        self.id_format = OrderIdFormat(id_type)
        q = quote_ident
        key = f"{q(orders.id_column)} = $1::text::{id_type}"
        columns = (
            f"SELECT o.{q(orders.id_column)}::text AS id,"
            f" o.{q(orders.status_column)}::text AS status,"
            f" o.{q(orders.customer_column)}::text AS customer_id,"
            f" o.{q(orders.vendor_column)}::text AS vendor_id,"
            f" o.{q(orders.rider_column)}::text AS rider_id,"
            " last.id AS last_event_id, last.created_at AS changed_at,"
            " last.status AS event_status, last.previous_status,"
            " (SELECT max(p.id) FROM tiffin_rt.events p"
            f"   WHERE p.order_id = o.{q(orders.id_column)}::text"
            "   AND p.kind IN ('order_status', 'order_parties')"
            "   AND p.payload ?& array['customerId', 'vendorId', 'riderId']) AS parties_event_id"
        )
        rest = (
            f" FROM {qualified_table(orders)} o LEFT JOIN LATERAL ("
            "   SELECT e.id, e.created_at, e.payload->>'status' AS status,"
            "   e.payload->>'previousStatus' AS previous_status FROM tiffin_rt.events e"
            f"   WHERE e.order_id = o.{q(orders.id_column)}::text AND e.kind = 'order_status'"
            "   ORDER BY e.id DESC LIMIT 1) last ON true"
            f" WHERE o.{key}"
        )
        self._select = columns + rest
        self._select_seen = (
            columns + ", ARRAY(SELECT s.id FROM tiffin_rt.events s"
            f" WHERE s.order_id = o.{q(orders.id_column)}::text"
            " AND s.kind IN ('order_status', 'payment_status') AND s.id > $2) AS seen" + rest
        )
        self._update_status = (
            f"UPDATE {qualified_table(orders)} SET {q(orders.status_column)} = $2 WHERE {key}"
        )

    @classmethod
    async def create(
        cls, conn: asyncpg.Pool | asyncpg.Connection, orders: OrdersSettings
    ) -> OrderQueries:
        id_type = await conn.fetchval(
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
            " WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped",
            qualified_table(orders),
            orders.id_column,
        )
        return cls(orders, id_type or "text")

    async def fetch(
        self,
        conn: asyncpg.Pool | asyncpg.Connection,
        order_id: str,
        *,
        seen_after: int | None = None,
    ) -> OrderSnapshot | None:
        """The order's row; with `seen_after`, also which of its status and payment events
        above that id the row's snapshot holds (OrderSnapshot.seen)."""
        try:
            if seen_after is None:
                row = await conn.fetchrow(self._select, order_id)
            else:
                row = await conn.fetchrow(self._select_seen, order_id, seen_after)
        except (asyncpg.DataError, asyncpg.InvalidTextRepresentationError):
            return None  # not a valid id for the column's type, so no such order
        if row is None or row["id"] != order_id:
            return None  # another spelling of an id ('1.0' for 1) names no room: no order
        return OrderSnapshot(
            order_id=row["id"],
            status=row["status"],
            parties=OrderParties(row["customer_id"], row["vendor_id"], row["rider_id"]),
            last_event_id=row["last_event_id"],
            changed_at=row["changed_at"],
            previous_status=(
                row["previous_status"] if row["event_status"] == row["status"] else None
            ),
            parties_event_id=row["parties_event_id"],
            seen=frozenset(row["seen"]) if seen_after is not None else None,
        )

    async def set_status(
        self, conn: asyncpg.Pool | asyncpg.Connection, order_id: str, status: str
    ) -> bool:
        try:
            result: str = await conn.execute(self._update_status, order_id, status)
        except (asyncpg.DataError, asyncpg.InvalidTextRepresentationError):
            return False
        return result.endswith(" 1")
