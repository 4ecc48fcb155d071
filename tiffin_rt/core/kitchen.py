"""The kitchen queue of a vendor: its open orders in queue order, positions, counts, averages
and estimates, and the `kitchenQueue` / `queuePosition` payloads built from them."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tiffin_rt.core.events import ORDER_PARTIES, ORDER_STATUS, Event, iso_utc

# The statuses a kitchen's queue holds, as the seed spells them; any other status (delivered,
# cancelled, a backend's own, another spelling) is not in a queue.
QUEUE_STATUSES = ("pending", "confirmed", "preparing", "ready")
# The orders still to be prepared, in the order the kitchen serves them: what is on the stove
# first, then confirmed, then pending (each oldest first).
WAITING_STATUSES = ("preparing", "confirmed", "pending")
_RANK = {status: rank for rank, status in enumerate(WAITING_STATUSES)}
ORDER_KINDS = frozenset({ORDER_STATUS, ORDER_PARTIES})


@dataclass(frozen=True, slots=True)
class QueuedOrder:
    """An open order of a vendor, as read from the orders table and the log."""

    order_id: str
    status: str
    since: datetime | None  # when it took its status (its latest order_status event)
    placed_at: datetime | None  # its first order_status event (none: it predates the log)


@dataclass(frozen=True, slots=True)
class Averages:
    """A vendor's rolling averages over its latest orders that became ready."""

    prep_seconds: float | None  # preparing -> ready
    wait_seconds: float | None  # placed -> preparing
    samples: int


@dataclass(frozen=True, slots=True)
class Position:
    """Where a customer's order stands: `position` 1 is next to be ready; None once it is no
    longer waiting (ready, gone from the queue)."""

    order_id: str
    position: int | None
    ahead: int | None
    estimated_ready_at: datetime | None

    @property
    def key(self) -> tuple[int | None, int | None]:
        """What a customer is told again only when it changes (the estimate moves with it)."""
        return (self.position, self.ahead)


@dataclass(frozen=True, slots=True)
class VendorQueue:
    vendor_id: str
    waiting: tuple[QueuedOrder, ...]  # in queue order: position 1 first
    ready: tuple[QueuedOrder, ...]
    positions: Mapping[str, Position]  # the waiting orders' positions
    averages: Averages
    at: datetime

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(QUEUE_STATUSES, 0)
        for order in (*self.waiting, *self.ready):
            counts[order.status] += 1
        return counts

    def order_ids(self) -> list[str]:
        return [o.order_id for o in (*self.waiting, *self.ready)]


def _queue_key(order: QueuedOrder) -> tuple[int, int, float, int, str]:
    """Stage first, then oldest first; an order without a time predates the log (placed
    first); numeric ids in number order."""
    placed = order.placed_at or order.since
    return (
        _RANK[order.status],
        0 if placed is None else 1,
        0.0 if placed is None else placed.timestamp(),
        len(order.order_id),
        order.order_id,
    )


def build_queue(
    vendor_id: str,
    orders: Iterable[QueuedOrder],
    averages: Averages,
    *,
    now: datetime,
    parallel: int = 1,
) -> VendorQueue:
    """Positions in queue order and an estimate for each waiting order: the kitchen prepares
    `parallel` orders at once, each taking the rolling average preparation time (no average
    yet: no estimate)."""
    waiting = sorted((o for o in orders if o.status in _RANK), key=_queue_key)
    ready = sorted(
        (o for o in orders if o.status == "ready"),
        key=lambda o: (o.since or now, len(o.order_id), o.order_id),
    )
    estimates = _estimates(waiting, averages.prep_seconds, now, parallel)
    positions = {
        o.order_id: Position(o.order_id, index + 1, index, estimates[index])
        for index, o in enumerate(waiting)
    }
    return VendorQueue(vendor_id, tuple(waiting), tuple(ready), positions, averages, now)


def _estimates(
    waiting: Sequence[QueuedOrder], prep_seconds: float | None, now: datetime, parallel: int
) -> list[datetime | None]:
    if prep_seconds is None:
        return [None] * len(waiting)
    prep = timedelta(seconds=prep_seconds)
    estimates: list[datetime | None] = []
    stations: list[datetime] = []  # when each busy station is free again
    for order in waiting:
        if order.status == "preparing":
            done = max(now, (order.since or now) + prep)
            heapq.heappush(stations, done)
            estimates.append(done)
    while len(stations) < parallel:
        heapq.heappush(stations, now)
    for order in waiting:
        if order.status != "preparing":
            done = max(now, heapq.heappop(stations)) + prep
            heapq.heappush(stations, done)
            estimates.append(done)
    return estimates


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else iso_utc(moment)


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def kitchen_queue_message(queue: VendorQueue, max_listed: int | None = None) -> dict[str, Any]:
    """The `kitchenQueue` payload (README: Kitchen queue); at most `max_listed` orders of each
    status are listed, so a backend that never finishes its orders cannot swell every message."""
    orders: dict[str, list[dict[str, Any]]] = {status: [] for status in QUEUE_STATUSES}
    for order in (*queue.waiting, *queue.ready):
        if max_listed is not None and len(orders[order.status]) >= max_listed:
            continue
        position = queue.positions.get(order.order_id)
        orders[order.status].append(
            {
                "orderId": order.order_id,
                "status": order.status,
                "position": position.position if position else None,
                "since": _iso(order.since),
                "estimatedReadyAt": _iso(position.estimated_ready_at) if position else None,
            }
        )
    averages = queue.averages
    return {
        "vendorId": queue.vendor_id,
        "counts": queue.counts(),
        "waiting": len(queue.waiting),
        "orders": orders,
        "averagePrepSeconds": _seconds(averages.prep_seconds),
        "averageWaitSeconds": _seconds(averages.wait_seconds),
        "averageSamples": averages.samples,
        "updatedAt": iso_utc(queue.at),
    }


def queue_position_message(position: Position) -> dict[str, Any]:
    """The `queuePosition` payload a customer's order room gets."""
    return {
        "orderId": position.order_id,
        "position": position.position,
        "ahead": position.ahead,
        "estimatedReadyAt": _iso(position.estimated_ready_at),
    }


def left_queue(order_id: str) -> Position:
    """An order that stopped waiting (ready, delivered, cancelled, moved to no vendor)."""
    return Position(order_id, None, None, None)


def vendors_made_ready(events: Sequence[Event]) -> set[str]:
    """Vendors with an order that became ready in the batch: their averages moved."""
    return {
        vendor
        for event in events
        if event.kind == ORDER_STATUS
        and event.payload.get("status") == "ready"
        and isinstance(vendor := event.payload.get("vendorId"), str)
        and vendor
    }


def vendors_touched(events: Sequence[Event], known: Mapping[str, str]) -> set[str]:
    """The vendors whose queue a batch of log events may have changed: the vendor each order
    event names, and the one the order was last seen queued at (it may have moved away)."""
    vendors: set[str] = set()
    for event in events:
        if event.kind not in ORDER_KINDS:
            continue
        order_id = event.order_id
        if order_id is not None and order_id in known:
            vendors.add(known[order_id])
        vendor = event.payload.get("vendorId")
        if isinstance(vendor, str) and vendor:
            vendors.add(vendor)
    return vendors
