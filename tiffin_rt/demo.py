"""The demo's order flow, shared by the page's endpoints and `tiffin-rt demo simulate`.

Orders move by UPDATEing the configured orders table, exactly as an order backend would, so
the trigger, the event log and every transport run for real. The customer is told through
`tiffin_rt.notify_user` in the same transaction.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from tiffin_rt.config import OrdersSettings
from tiffin_rt.db.orders import OrderQueries, OrderSnapshot
from tiffin_rt.db.triggers import qualified_table, quote_ident
from tiffin_rt.demo_map import DEFAULT_KITCHEN, HOMES, KITCHENS, Point

log = logging.getLogger(__name__)

# The path an order takes; `cancelled` may replace any step before `delivered`.
STATUS_FLOW = ("pending", "confirmed", "preparing", "ready", "delivered")
CANCELLED = "cancelled"
ALL_STATUSES = (*STATUS_FLOW, CANCELLED)

VENDOR_NAMES = {"spice-garden": "Spice Garden", "green-bowl": "Green Bowl"}
MENU = (
    ("alice", "spice-garden", "Paneer tikka thali", 1450),
    ("alice", "green-bowl", "Falafel bowl", 1050),
    ("bob", "spice-garden", "Chicken biryani", 1290),
    ("bob", "green-bowl", "Quinoa salad", 1120),
)

_MESSAGES = {
    "confirmed": ("Order confirmed", "{vendor} accepted your {item}."),
    "preparing": ("Being prepared", "{vendor} is cooking your {item}."),
    "ready": ("Ready for pickup", "Your {item} is packed and waiting for the rider."),
    "delivered": ("Delivered", "Your {item} has arrived. Enjoy!"),
    "cancelled": ("Order cancelled", "{vendor} cancelled your {item}."),
}

class TransitionError(Exception):
    """The order cannot take that status now."""


def next_status(status: str) -> str | None:
    """The step after `status`, or None at the end of the flow (or off it)."""
    if status not in STATUS_FLOW or status == STATUS_FLOW[-1]:
        return None
    return STATUS_FLOW[STATUS_FLOW.index(status) + 1]


def may_move_to(current: str, target: str) -> bool:
    if target == CANCELLED:
        return current not in ("delivered", CANCELLED)
    return target == next_status(current)


def vendor_name(vendor_id: str | None) -> str:
    return VENDOR_NAMES.get(vendor_id or "", vendor_id or "The kitchen")


async def move_order(
    conn: asyncpg.Connection,
    queries: OrderQueries,
    snapshot: OrderSnapshot,
    target: str,
    item: str | None = None,
) -> None:
    """UPDATE the status and notify the customer; run it inside the caller's transaction."""
    if not may_move_to(snapshot.status, target):
        raise TransitionError(
            f"order {snapshot.order_id} is {snapshot.status}; it cannot become {target}"
        )
    await queries.set_status(conn, snapshot.order_id, target)
    customer = snapshot.parties.customer_id
    if customer and target in _MESSAGES:
        title, text = _MESSAGES[target]
        body = text.format(
            vendor=vendor_name(snapshot.parties.vendor_id),
            item=item or f"order #{snapshot.order_id}",
        )
        await conn.execute(
            "SELECT tiffin_rt.notify_user($1, 'order_status', $2, $3, $4::jsonb)",
            customer,
            title,
            body,
            json.dumps({"orderId": snapshot.order_id, "status": target}),
        )


@dataclass(frozen=True, slots=True)
class Step:
    """One thing the simulator did, for its output."""

    order_id: str
    status: str
    customer_id: str | None


@dataclass(frozen=True, slots=True)
class Ride:
    """An order that is ready: its rider rides from the kitchen to the door before delivery."""

    order_id: str
    rider_id: str
    start: Point
    end: Point


# Riders the simulator assigns to a ready order that has none, as a dispatcher would.
DEMO_RIDERS = ("rita", "ravi")
# Seconds between a demo rider's positions: just over tracking.updates_per_rider's default.
RIDE_PACE = 1.05


class Simulator:
    """Each tick advances the oldest unfinished order one step; with none left it places one."""

    def __init__(self, orders: OrdersSettings, queries: OrderQueries) -> None:
        q = quote_ident
        self._orders = orders
        self._queries = queries
        self._active = (
            f"SELECT {q(orders.id_column)}::text FROM {qualified_table(orders)}"
            f" WHERE {q(orders.status_column)}::text NOT IN ('delivered', 'cancelled')"
            f" ORDER BY {q(orders.id_column)} LIMIT 1"
        )
        self._insert = (
            f"INSERT INTO {qualified_table(orders)}"
            f" ({q(orders.customer_column)}, {q(orders.vendor_column)}, {q(orders.status_column)})"
            f" VALUES ($1, $2, 'pending') RETURNING {q(orders.id_column)}::text"
        )
        self._rng = random.Random()
        self._ready = (
            f"SELECT o.{q(orders.id_column)}::text AS id,"
            f" o.{q(orders.status_column)}::text AS status,"
            f" o.{q(orders.customer_column)}::text AS customer, o.{q(orders.vendor_column)}::text"
            f" AS vendor, o.{q(orders.rider_column)}::text AS rider,"
            " to_jsonb(o)->>'delivery_lat' AS lat, to_jsonb(o)->>'delivery_lng' AS lng"
            f" FROM {qualified_table(orders)} o"
            f" WHERE o.{q(orders.status_column)}::text NOT IN ('delivered', 'cancelled')"
            f" ORDER BY o.{q(orders.id_column)} LIMIT 1"
        )
        self._assign = (
            f"UPDATE {qualified_table(orders)} SET {q(orders.rider_column)} = $2"
            f" WHERE {q(orders.id_column)}::text = $1"
        )

    async def ride_due(self, conn: asyncpg.Connection) -> Ride | None:
        """The next order to move, when it is ready and goes somewhere: its ride (a rider is
        assigned first when it has none)."""
        row = await conn.fetchrow(self._ready)
        if row is None or row["status"] != "ready":
            return None
        end: Point | None = None
        if row["lat"] is not None and row["lng"] is not None:
            end = (float(row["lat"]), float(row["lng"]))
        else:
            end = HOMES.get(row["customer"] or "")
        if end is None:
            return None
        rider = row["rider"]
        if rider is None:
            rider = DEMO_RIDERS[sum(map(ord, row["id"])) % len(DEMO_RIDERS)]
            await conn.execute(self._assign, row["id"], rider)
        start = KITCHENS.get(row["vendor"] or "", DEFAULT_KITCHEN)
        return Ride(row["id"], rider, start, end)

    async def tick(self, conn: asyncpg.Connection) -> Step:
        async with conn.transaction():
            order_id = await conn.fetchval(self._active)
            if order_id is None:
                customer, vendor, item, cents = self._rng.choice(MENU)
                new_id: str = await conn.fetchval(self._insert, customer, vendor)
                await self._describe(conn, new_id, item, cents, customer)
                return Step(new_id, "pending", customer)
            snapshot = await self._queries.fetch(conn, order_id)
            if snapshot is None:  # deleted in between
                return Step(order_id, "gone", None)
            target = next_status(snapshot.status) or CANCELLED
            described = await self._item(conn, order_id)
            await move_order(conn, self._queries, snapshot, target, described)
            return Step(order_id, target, snapshot.parties.customer_id)

    async def _describe(
        self, conn: asyncpg.Connection, order_id: str, item: str, cents: int, customer: str
    ) -> None:
        """Fill the demo table's item, price and destination, when it has those columns."""
        has = await conn.fetch(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1)"
            " AND attname IN ('item', 'total_cents', 'delivery_lat', 'delivery_lng')"
            " AND NOT attisdropped",
            qualified_table(self._orders),
        )
        q = quote_ident
        home = HOMES.get(customer)
        values: dict[str, str | int | float | None] = {
            "item": item,
            "total_cents": cents,
            "delivery_lat": home[0] if home else None,
            "delivery_lng": home[1] if home else None,
        }
        for row in has:
            value = values[row["attname"]]
            await conn.execute(
                f"UPDATE {qualified_table(self._orders)} SET {q(row['attname'])} = $2"
                f" WHERE {q(self._orders.id_column)}::text = $1",
                order_id,
                value,
            )

    async def _item(self, conn: asyncpg.Connection, order_id: str) -> str | None:
        try:
            row = await conn.fetchrow(
                f"SELECT to_jsonb(o)->>'item' AS item FROM {qualified_table(self._orders)} o"
                f" WHERE {quote_ident(self._orders.id_column)}::text = $1",
                order_id,
            )
        except asyncpg.PostgresError:
            return None
        return row["item"] if row else None


async def simulate(
    conn: asyncpg.Connection,
    orders: OrdersSettings,
    *,
    interval: float,
    steps: int | None,
    report: Callable[[Step], None],
    ride: Callable[[Ride], Awaitable[None]] | None = None,
) -> int:
    """Tick every `interval` seconds, `steps` times (None: until cancelled); return the count.
    With `ride`, an order that is ready is ridden to its door before it is delivered."""
    simulator = Simulator(orders, await OrderQueries.create(conn, orders))
    done = 0
    while steps is None or done < steps:
        if done:
            await asyncio.sleep(interval)
        if ride is not None:
            due = await simulator.ride_due(conn)
            if due is not None:
                await ride(due)
        report(await simulator.tick(conn))
        done += 1
    return done
