"""Rider positions in PostgreSQL: each order's last position (and the optional trail), and
what the orders table says about an order being tracked (status, rider, destination)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from tiffin_rt.config import OrdersSettings, TrackingSettings
from tiffin_rt.core.location import Destination, LocationUpdate
from tiffin_rt.db.triggers import qualified_table, quote_ident

log = logging.getLogger(__name__)

Executor = asyncpg.Pool | asyncpg.Connection
# A large first prune may take longer than database.command_timeout allows a request.
PRUNE_TIMEOUT = 600.0


@dataclass(frozen=True, slots=True)
class TrackedOrder:
    """What decides whether an order takes positions, and from whom."""

    status: str
    rider_id: str | None
    destination: Destination | None


@dataclass(frozen=True, slots=True)
class StoredPosition:
    update: LocationUpdate
    rider_id: str


class PositionQueries:
    """Built once per process, after the orders table's columns have been looked at."""

    def __init__(
        self, orders: OrdersSettings, tracking: TrackingSettings, *, id_type: str, destination: bool
    ) -> None:
        q = quote_ident
        key = f"{q(orders.id_column)} = $1::text::{id_type}"
        dest = "NULL::text, NULL::text"
        if destination:
            # As text, read in Python: a value that is no number (a text column holding '' or
            # 'n/a', a numeric too big for float8) is no destination, not a failed read.
            dest = (
                f"{q(tracking.destination_lat_column or '')}::text,"
                f" {q(tracking.destination_lng_column or '')}::text"
            )
        self._order = (
            f"SELECT {q(orders.id_column)}::text AS id, {q(orders.status_column)}::text AS status,"
            f" {q(orders.rider_column)}::text AS rider_id, {dest}"
            f" FROM {qualified_table(orders)} WHERE {key}"
        )

    @classmethod
    async def create(
        cls, conn: Executor, orders: OrdersSettings, tracking: TrackingSettings
    ) -> PositionQueries:
        """Looks up the id column's type and whether the destination columns exist: without
        them riderLocation carries no ETA (one WARNING names the missing key)."""
        rows = await conn.fetch(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute a"
            " WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
            qualified_table(orders),
        )
        columns = {r["attname"]: r["type"] for r in rows}
        wanted = {
            "tracking.destination_lat_column": tracking.destination_lat_column,
            "tracking.destination_lng_column": tracking.destination_lng_column,
        }
        destination = all(wanted.values())
        for key, column in wanted.items():
            if column and column not in columns:
                log.warning(
                    "%s: table %s has no column %r; riderLocation carries no ETA",
                    key,
                    orders.table,
                    column,
                )
                destination = False
        return cls(
            orders,
            tracking,
            id_type=columns.get(orders.id_column, "text"),
            destination=destination,
        )

    async def order(self, conn: Executor, order_id: str) -> TrackedOrder | None:
        try:
            row = await conn.fetchrow(self._order, order_id)
        except (asyncpg.DataError, asyncpg.InvalidTextRepresentationError):
            return None
        if row is None or row["id"] != order_id:
            return None
        lat, lng = _coordinate(row[3]), _coordinate(row[4])
        destination = None
        if lat is not None and lng is not None and -90 <= lat <= 90 and -180 <= lng <= 180:
            destination = Destination(lat, lng)
        return TrackedOrder(row["status"], row["rider_id"], destination)


def _coordinate(text: str | None) -> float | None:
    """A destination column's value as PostgreSQL prints it; None unless a finite number."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


async def save_positions(conn: Executor, positions: Sequence[StoredPosition], trail: bool) -> None:
    """Each order's last position, in one statement (and the trail in a second)."""
    if not positions:
        return
    columns: list[list[object]] = [[] for _ in range(8)]
    for p in positions:
        u = p.update
        for column, value in zip(
            columns,
            (
                u.order_id,
                p.rider_id,
                u.lat,
                u.lng,
                u.heading,
                u.speed,
                u.accuracy,
                datetime.fromtimestamp(u.recorded_at, UTC),
            ),
            strict=True,
        ):
            column.append(value)
    await conn.execute(
        "INSERT INTO tiffin_rt.rider_positions AS p"
        " (order_id, rider_id, lat, lng, heading, speed, accuracy, recorded_at)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::float8[],"
        "   $5::float8[], $6::float8[], $7::float8[], $8::timestamptz[])"
        " ON CONFLICT (order_id) DO UPDATE SET rider_id = EXCLUDED.rider_id,"
        "   lat = EXCLUDED.lat, lng = EXCLUDED.lng, heading = EXCLUDED.heading,"
        "   speed = EXCLUDED.speed, accuracy = EXCLUDED.accuracy,"
        "   recorded_at = EXCLUDED.recorded_at, updated_at = now()",
        *columns,
    )
    if trail:
        await conn.execute(
            "INSERT INTO tiffin_rt.rider_trail (order_id, rider_id, lat, lng, recorded_at)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::float8[],"
            "   $5::timestamptz[])",
            columns[0],
            columns[1],
            columns[2],
            columns[3],
            columns[7],
        )


async def last_position(conn: Executor, order_id: str, rider_id: str) -> StoredPosition | None:
    """The order's last stored position, if it was its current rider's."""
    row = await conn.fetchrow(
        "SELECT lat, lng, heading, speed, accuracy, extract(epoch FROM recorded_at) AS at"
        " FROM tiffin_rt.rider_positions WHERE order_id = $1 AND rider_id = $2",
        order_id,
        rider_id,
    )
    if row is None:
        return None
    update = LocationUpdate(
        order_id=order_id,
        lat=row["lat"],
        lng=row["lng"],
        heading=row["heading"],
        speed=row["speed"],
        accuracy=row["accuracy"],
        recorded_at=float(row["at"]),
    )
    return StoredPosition(update, rider_id)


async def prune_positions(conn: Executor, trail_hours: float, last_hours: float) -> int:
    """Trail rows past their retention, and last positions nobody updated for `last_hours`."""
    removed = 0
    for table, column, hours in (
        ("tiffin_rt.rider_trail", "created_at", trail_hours),
        ("tiffin_rt.rider_positions", "updated_at", last_hours),
    ):
        result: str = await conn.execute(
            f"DELETE FROM {table} WHERE {column} < now() - make_interval(secs => $1)",
            hours * 3600.0,
            timeout=PRUNE_TIMEOUT,
        )
        removed += int(result.split()[-1])
    return removed
