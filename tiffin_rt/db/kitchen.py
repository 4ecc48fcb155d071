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
    averages: Averages | None  # None: not read this time (the vendor was not asked for them)
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
        statuses = ", ".join(f"'{status}'" for status in QUEUE_STATUSES)
        # $1 vendors, $2 average window (seconds), $3 samples per vendor, $4 the vendors whose
        # averages are read (the others' are kept by the caller). The orders table is
        # read once for every vendor (an index on its vendor column is used when there is one,
        # the statuses are literals so a partial index on them applies); each sample comes
        # from migration 0007's index.
        self._sql = f"""
WITH wanted AS MATERIALIZED (SELECT DISTINCT unnest($1::text[]) AS vendor),
queued AS MATERIALIZED (
    SELECT o.{vendor}::text AS vendor, o.{oid}::text AS order_id, o.{status}::text AS status
    FROM {table} o
    WHERE o.{vendor}::text = ANY($1::text[]) AND o.{status}::text IN ({statuses})
),
timed AS (
    SELECT q.vendor,
           array_agg(q.order_id ORDER BY q.order_id) AS order_ids,
           array_agg(q.status ORDER BY q.order_id) AS statuses,
           array_agg(last.created_at ORDER BY q.order_id) AS since,
           array_agg(first.created_at ORDER BY q.order_id) AS placed
    FROM queued q
    LEFT JOIN LATERAL (
        SELECT e.created_at FROM tiffin_rt.events e
        WHERE e.order_id = q.order_id AND e.kind = 'order_status'
        ORDER BY e.id DESC LIMIT 1) last ON true
    LEFT JOIN LATERAL (
        SELECT e.created_at FROM tiffin_rt.events e
        WHERE e.order_id = q.order_id AND e.kind = 'order_status'
        ORDER BY e.id LIMIT 1) first ON true
    GROUP BY q.vendor
),
samples AS (
    SELECT w.vendor,
           GREATEST(0, extract(epoch FROM r.created_at - p.created_at)) AS prep,
           GREATEST(0, extract(epoch FROM p.created_at - f.created_at)) AS wait
    FROM wanted w
    CROSS JOIN LATERAL (
        SELECT e.id, e.order_id, e.created_at FROM tiffin_rt.events e
        WHERE w.vendor = ANY($4::text[]) AND (e.payload->>'vendorId') = w.vendor
          AND e.kind = 'order_status' AND e.payload->>'status' = 'ready'
          AND e.created_at > now() - make_interval(secs => $2::float8)
        ORDER BY e.id DESC LIMIT $3) r
    CROSS JOIN LATERAL (
        SELECT e.id, e.created_at FROM tiffin_rt.events e
        WHERE e.order_id = r.order_id AND e.id < r.id AND e.kind = 'order_status'
          AND e.payload->>'status' = 'preparing'
        ORDER BY e.id DESC LIMIT 1) p
    LEFT JOIN LATERAL (
        SELECT e.created_at FROM tiffin_rt.events e
        WHERE e.order_id = r.order_id AND e.id < p.id AND e.kind = 'order_status'
        ORDER BY e.id LIMIT 1) f ON true
),
averages AS (
    SELECT s.vendor, avg(s.prep)::float8 AS prep, avg(s.wait)::float8 AS wait, count(*) AS samples
    FROM samples s GROUP BY s.vendor
)
SELECT w.vendor,
       coalesce(t.order_ids, '{{}}') AS order_ids, coalesce(t.statuses, '{{}}') AS statuses,
       coalesce(t.since, '{{}}') AS since, coalesce(t.placed, '{{}}') AS placed,
       a.prep, a.wait, coalesce(a.samples, 0) AS samples, w.vendor = ANY($4::text[]) AS averaged,
       now() AS at
FROM wanted w
LEFT JOIN timed t ON t.vendor = w.vendor
LEFT JOIN averages a ON a.vendor = w.vendor
"""

    async def read(
        self,
        conn: asyncpg.Pool | asyncpg.Connection,
        vendors: Collection[str],
        averaged: Collection[str],
    ) -> list[VendorRows]:
        """Every vendor asked for, with an empty queue when it has no open order; the rolling
        averages of those in `averaged` (the costlier part: read them only when they moved)."""
        rows = await conn.fetch(
            self._sql, sorted(vendors), self._max_age, self._samples, sorted(averaged)
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
                averages=(
                    Averages(row["prep"], row["wait"], int(row["samples"]))
                    if row["averaged"]
                    else None
                ),
                at=row["at"],
            )
            for row in rows
        ]
