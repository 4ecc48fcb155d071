"""RiderTracking: a rider's position checked, kept as the order's latest, and handed to every
transport of this node and, through the cluster bus, of every other node (never the log).

An order takes positions from its assigned rider only, and only until it is delivered or
cancelled; the order's status and rider are read once and then kept up to date by the order's
own events from the log (this object is a router sink), so a rider sending once a second
costs no query. A finished order's streams end; a reassigned order's position is forgotten, so
its watchers see the new rider's positions only.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from tiffin_rt.auth import Identity
from tiffin_rt.cluster.bus import ClusterBus
from tiffin_rt.config import TrackingSettings
from tiffin_rt.core.errors import ClientError
from tiffin_rt.core.events import ORDER_PARTIES, ORDER_STATUS, Event
from tiffin_rt.core.location import (
    LocationUpdate,
    eta_estimate,
    parse_location_update,
    rider_location_message,
)
from tiffin_rt.core.parse import OrderIdFormat
from tiffin_rt.db.errors import DB_ERRORS
from tiffin_rt.db.rider_positions import (
    PositionQueries,
    StoredPosition,
    TrackedOrder,
    last_position,
)
from tiffin_rt.ratelimit import MovingWindows, rate_windows
from tiffin_rt.tracking.store import PositionWriter

log = logging.getLogger(__name__)

BUS_TOPIC = "riderLocation"
RATE_JITTER = 0.2
RIDER_ROLE = "rider"


@dataclass(frozen=True, slots=True)
class Position:
    """One accepted position; `seq` orders the positions this node has seen."""

    seq: int
    order_id: str
    rider_id: str
    recorded_at: float
    message: dict[str, Any]  # the riderLocation payload


class Watchers(Protocol):
    """A transport's connections watching orders (Socket.IO rooms, SSE location streams)."""

    def publish(self, position: Position) -> None:
        """Send now, or, to a connection that is behind, instead of what it has not been sent."""

    def send_to(self, sid: str, position: Position) -> None:
        """One connection that just joined (Socket.IO only; others ignore it)."""

    def close_order(self, order_id: str, status: str) -> None:
        """The order finished: nothing more is sent for it."""

    def forget(self, order_id: str) -> None:
        """Positions not yet sent for the order are dropped (it changed rider)."""


class RiderTracking:
    MAX_ORDERS = 100_000

    def __init__(
        self,
        *,
        settings: TrackingSettings,
        terminal_statuses: Collection[str],
        order_ids: OrderIdFormat,
        pool: asyncpg.Pool,
        queries: PositionQueries,
        bus: ClusterBus,
        writer: PositionWriter,
    ) -> None:
        self._settings = settings
        self._terminal = frozenset(terminal_statuses)
        self._order_ids = order_ids
        self._pool = pool
        self._queries = queries
        self._bus = bus
        self.writer = writer
        # A phone's GPS sends at 1 Hz, but its messages arrive a little early or late: each
        # window is shortened by RATE_JITTER, so "1/second" refuses a position only when it
        # comes within 0.8 s of the one before.
        self._rate = [
            (amount, seconds * (1 - RATE_JITTER))
            for amount, seconds in rate_windows(settings.updates_per_rider)
        ]
        self._windows = MovingWindows()
        self._orders: dict[str, tuple[float, TrackedOrder]] = {}
        self._latest: dict[str, Position] = {}
        self._seq = itertools.count(1)
        self._watchers: list[Watchers] = []
        self.accepted = 0
        self.refused = 0
        self.from_other_nodes = 0
        bus.on_message(BUS_TOPIC, self._received)

    def add_watchers(self, watchers: Watchers) -> None:
        self._watchers.append(watchers)

    def describe(self) -> dict[str, Any]:
        """For /healthz."""
        return {
            "accepted": self.accepted,
            "refused": self.refused,
            "fromOtherNodes": self.from_other_nodes,
            "ordersTracked": len(self._latest),
            "rowsWritten": self.writer.rows_written,
        }

    # -- a rider's update ----------------------------------------------------------------

    async def accept(self, who: Identity, data: object) -> Position:
        """Check and publish a `locationUpdate`; ClientError says why it was refused."""
        try:
            return await self._accept(who, data)
        except ClientError:
            self.refused += 1
            raise

    async def _accept(self, who: Identity, data: object) -> Position:
        if who.role != RIDER_ROLE:
            raise ClientError("forbidden", "only riders send locationUpdate")
        s = self._settings
        update = parse_location_update(
            data,
            self._order_ids,
            now=time.time(),
            max_skew=s.max_clock_skew,
            max_age=s.max_age,
        )
        order_id = update.order_id
        order = await self._order(order_id)
        order = self._cached(order_id) or order  # an event may have changed it meanwhile
        if order is None or order.rider_id != who.user_id:
            raise ClientError("forbidden", f"order {order_id} is not assigned to you")
        if order.status in self._terminal:
            raise ClientError(
                "order_closed", f"order {order_id} is {order.status}; it takes no more positions"
            )
        latest = self._latest.get(order_id)
        if latest is not None and update.recorded_at < latest.recorded_at:
            raise ClientError(
                "stale_position", f"timestamp: older than the last position of order {order_id}"
            )
        if not self._windows.hit(self._rate, ("rider", who.user_id)):
            raise ClientError(
                "rate_limited",
                f"at most {s.updates_per_rider} positions per rider; this one was not sent",
            )
        position = self._position(update, who.user_id, order)
        self._publish(position)
        self.writer.offer(StoredPosition(update, who.user_id))
        self.accepted += 1
        if self._bus.kind != "none":  # one node: nobody else to tell
            await self._bus.send(
                BUS_TOPIC,
                {"r": position.rider_id, "m": position.message, "at": position.recorded_at},
            )
        return position

    def _position(self, update: LocationUpdate, rider_id: str, order: TrackedOrder) -> Position:
        eta = eta_estimate(update, order.destination, self._settings.eta_speed_kmh)
        return Position(
            seq=next(self._seq),
            order_id=update.order_id,
            rider_id=rider_id,
            recorded_at=update.recorded_at,
            message=rider_location_message(update, rider_id, eta),
        )

    def _publish(self, position: Position) -> None:
        latest = self._latest
        if position.order_id not in latest and len(latest) >= self.MAX_ORDERS:
            del latest[next(iter(latest))]  # the longest-untouched order
        latest.pop(position.order_id, None)
        latest[position.order_id] = position
        for watchers in self._watchers:
            try:
                watchers.publish(position)
            except Exception:
                log.exception("publishing a rider position to %s failed", type(watchers).__name__)

    def _received(self, data: Any) -> None:
        """A position another node accepted (it checked it); dropped if this node already
        knows the order finished, changed rider, or has a newer one."""
        try:
            message = dict(data["m"])
            rider_id, at, order_id = str(data["r"]), float(data["at"]), str(message["orderId"])
        except (KeyError, TypeError, ValueError):
            log.warning("cluster: a malformed rider position was ignored")
            return
        order = self._cached(order_id)
        if order is not None and (order.status in self._terminal or order.rider_id != rider_id):
            return
        latest = self._latest.get(order_id)
        if latest is not None and latest.rider_id == rider_id and at < latest.recorded_at:
            return
        self.from_other_nodes += 1
        self._publish(Position(next(self._seq), order_id, rider_id, at, message))

    # -- late joiners ----------------------------------------------------------------------

    async def latest(self, order_id: str) -> Position | None:
        """The order's last position now (this node's, else the stored one), None once the
        order has finished or when its current rider has sent none."""
        try:
            order = await self._order(order_id)
        except ClientError:
            return None
        order = self._cached(order_id) or order
        if order is None or order.rider_id is None or order.status in self._terminal:
            return None
        known = self._latest.get(order_id)
        if known is not None and known.rider_id == order.rider_id:
            return known
        try:
            stored = await last_position(self._pool, order_id, order.rider_id)
        except DB_ERRORS as exc:
            log.warning("last rider position of order %s not read: %r", order_id, exc)
            return None
        known = self._latest.get(order_id)
        if known is not None and known.rider_id == order.rider_id:
            return known  # one arrived while the stored one was read
        now = self._cached(order_id)  # the order's events meanwhile: finished, or reassigned
        if stored is None or now is None or now.status in self._terminal:
            return None
        if now.rider_id != stored.rider_id:
            return None
        position = self._position(stored.update, stored.rider_id, order)
        self._latest[order_id] = position
        return position

    # -- the order's state -----------------------------------------------------------------

    def _cached(self, order_id: str) -> TrackedOrder | None:
        entry = self._orders.get(order_id)
        return entry[1] if entry is not None else None

    async def _order(self, order_id: str) -> TrackedOrder | None:
        entry = self._orders.get(order_id)
        if entry is not None and entry[0] >= time.monotonic():
            return entry[1]
        try:
            order = await self._queries.order(self._pool, order_id)
        except DB_ERRORS:
            raise ClientError("unavailable", "the database is unavailable; try again") from None
        newer = self._orders.get(order_id)
        if newer is not None and newer is not entry:
            # An order event (or another read) came while this read was on its way: the read
            # may hold the state before it (a rider taken off, an order delivered) and must
            # not replace it. Only the destination, which events do not carry, is taken.
            status, rider, destination = newer[1].status, newer[1].rider_id, newer[1].destination
            if destination is None and order is not None and order.destination is not None:
                self._orders[order_id] = (newer[0], TrackedOrder(status, rider, order.destination))
            return self._cached(order_id)
        if order is None:
            self._orders.pop(order_id, None)
        else:
            self._remember(order_id, order)
        return order

    def _remember(self, order_id: str, order: TrackedOrder) -> None:
        orders = self._orders
        orders.pop(order_id, None)
        if len(orders) >= self.MAX_ORDERS:
            del orders[next(iter(orders))]
        orders[order_id] = (time.monotonic() + self._settings.order_cache_ttl, order)

    def deliver(self, events: Sequence[Event]) -> None:
        """Order events from the log: a finished order stops, a reassigned one starts over."""
        for event in events:
            if event.kind not in (ORDER_STATUS, ORDER_PARTIES) or event.order_id is None:
                continue
            payload = event.payload
            status = payload.get("status")
            if not isinstance(status, str):
                continue
            order_id = event.order_id
            cached = self._cached(order_id)
            rider = (
                payload.get("riderId")
                if "riderId" in payload
                else (cached.rider_id if cached is not None else None)
            )
            rider = None if rider is None else str(rider)
            if cached is not None or "riderId" in payload:
                destination = cached.destination if cached is not None else None
                order = TrackedOrder(status, rider, destination)
                if cached is None:
                    # the destination is not in the event: read it again when next needed
                    self._orders[order_id] = (0.0, order)
                else:
                    self._remember(order_id, order)
            if status in self._terminal:
                self._finish(order_id, status)
                continue
            latest = self._latest.get(order_id)
            if latest is not None and "riderId" in payload and latest.rider_id != rider:
                del self._latest[order_id]
                self.writer.forget(order_id)
                for watchers in self._watchers:
                    watchers.forget(order_id)

    def _finish(self, order_id: str, status: str) -> None:
        self._latest.pop(order_id, None)
        for watchers in self._watchers:
            watchers.close_order(order_id, status)
