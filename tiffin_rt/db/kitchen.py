"""The kitchen queues of several vendors in one query: open orders from the orders table, when
each took its status and rolling preparation averages from the event log."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from tiffin_rt.config import KitchenSettings, OrdersSettings
from tiffin_rt.core.kitchen import QUEUE_STATUSES, Averages, QueuedOrder
from tiffin_rt.db.triggers import qualified_table, quote_ident


@dataclass(frozen=True, slots=True)
class VendorRows:
    vendor_id: str
    orders: list[QueuedOrder]
    averages: Averages
    at: datetime  # the database's clock when it was read


class KitchenQueries:
    """Built once per process for the configured orders table."""

    def __init__(self, orders: OrdersSettings, kitchen: KitchenSettings) -> None:
        q = quote_ident
        table = qualified_table(orders)
        oid, status, vendor = (
            q(orders.id_column),
            q(orders.status_column),
            q(orders.vendor_column),
        )
        self._samples = kitchen.average_samples
        self._max_age = kitchen.average_max_age
        # $1 vendors, $2 queue statuses, $3 average window (seconds), $4 samples per vendor.
        self._sql = f"""
WITH wanted AS (SELECT DISTINCT unnest($1::text[]) AS vendor),
queued AS (
    SELECT o.{vendor}::text AS vendor, o.{oid}::text AS order_id, o.{status}::text AS status,
           last.created_at AS since, first.created_at AS placed_at
    FROM {table} o
    LEFT JOIN LATERAL (
        SELECT e.created_at FROM tiffin_rt.events e
        WHERE e.order_id = o.{oid}::text AND e.kind = 'order_status'
        ORDER BY e.id DESC LIMIT 1) last ON true
    LEFT JOIN LATERAL (
        SELECT e.created_at FROM tiffin_rt.events e
        WHERE e.order_id = o.{oid}::text AND e.kind = 'order_status'
        ORDER BY e.id LIMIT 1) first ON true
    WHERE o.{vendor}::text = ANY($1::text[]) AND o.{status}::text = ANY($2::text[])
),
samples AS (
    SELECT w.vendor,
           GREATEST(0, extract(epoch FROM r.created_at - p.created_at)) AS prep,
           GREATEST(0, extract(epoch FROM p.created_at - f.created_at)) AS wait
    FROM wanted w
    CROSS JOIN LATERAL (
        SELECT e.id, e.order_id, e.created_at FROM tiffin_rt.events e
        WHERE e.rooms @> ARRAY['vendor-' || w.vendor] AND e.kind = 'order_status'
          AND e.payload->>'status' = 'ready'
          AND e.created_at > now() - make_interval(secs => $3::float8)
        ORDER BY e.id DESC LIMIT $4) r
    CROSS JOIN LATERAL (
        SELECT e.id, e.created_at FROM tiffin_rt.events e
        WHERE e.order_id = r.order_id AND e.id < r.id AND e.kind = 'order_status'
          AND e.payload->>'status' = 'preparing'
        ORDER BY e.id DESC LIMIT 1) p
    LEFT JOIN LATERAL (
        SELECT e.created_at FROM tiffin_rt.events e
        WHERE e.order_id = r.order_id AND e.id < p.id AND e.kind = 'order_status'
        ORDER BY e.id LIMIT 1) f ON true
)
SELECT w.vendor, a.order_ids, a.statuses, a.since, a.placed,
       (SELECT avg(s.prep)::float8 FROM samples s WHERE s.vendor = w.vendor) AS prep,
       (SELECT avg(s.wait)::float8 FROM samples s WHERE s.vendor = w.vendor) AS wait,
       (SELECT count(*) FROM samples s WHERE s.vendor = w.vendor) AS samples,
       now() AS at
FROM wanted w
CROSS JOIN LATERAL (
    SELECT coalesce(array_agg(q.order_id ORDER BY q.order_id), '{{}}') AS order_ids,
           coalesce(array_agg(q.status ORDER BY q.order_id), '{{}}') AS statuses,
           coalesce(array_agg(q.since ORDER BY q.order_id), '{{}}') AS since,
           coalesce(array_agg(q.placed_at ORDER BY q.order_id), '{{}}') AS placed
    FROM queued q WHERE q.vendor = w.vendor) a
"""

    async def read(
        self, conn: asyncpg.Pool | asyncpg.Connection, vendors: Collection[str]
    ) -> list[VendorRows]:
        """Every vendor asked for, with an empty queue when it has no open order."""
        rows = await conn.fetch(
            self._sql, sorted(vendors), list(QUEUE_STATUSES), self._max_age, self._samples
        )
        return [
            VendorRows(
                vendor_id=row["vendor"],
                orders=[
                    QueuedOrder(order_id, status, since, placed)
                    for order_id, status, since, placed in zip(
                        row["order_ids"], row["statuses"], row["since"], row["placed"], strict=True
                    )
                ],
                averages=Averages(row["prep"], row["wait"], int(row["samples"])),
                at=row["at"],
            )
            for row in rows
        ]
