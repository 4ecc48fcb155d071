"""The live kitchen queue on /notifications: `kitchenQueue` to `vendor-<id>`, `queuePosition`
to `order-<id>`, and the current state for each connection entering one of those rooms.

The router hands over each batch of order events; the vendors they touch are marked and, one
`kitchen.coalesce_interval` after the first mark, read in one query (orders table and log) and
sent: a burst of changes becomes one message per vendor with the state after the last of them.
Everything is read and sent by one task, in order, so a newcomer's snapshot can never arrive
after, and contradict, a newer room message. Each node sends only to its own connections (the
manager's emits are local, never through the cluster bus), so with several nodes every client
gets each message from exactly one node, the one it is connected to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import socketio

from tiffin_rt.background import BackgroundTasks
from tiffin_rt.config import KitchenSettings
from tiffin_rt.core.events import Event
from tiffin_rt.core.kitchen import (
    Averages,
    Position,
    VendorQueue,
    build_queue,
    kitchen_queue_message,
    left_queue,
    queue_position_message,
    vendors_made_ready,
    vendors_touched,
)
from tiffin_rt.core.policy import OrderParties
from tiffin_rt.core.rooms import Room, room_for_order, room_for_vendor
from tiffin_rt.db.errors import DB_ERRORS
from tiffin_rt.db.kitchen import KitchenQueries, VendorRows
from tiffin_rt.transports.socketio.notifications import NAMESPACE

log = logging.getLogger(__name__)

KITCHEN_QUEUE = "kitchenQueue"
QUEUE_POSITION = "queuePosition"
# How long a connection entering its vendor room while it connects may take to be connected.
CONNECT_WAIT_SECONDS = 5.0
RETRY_MAX_SECONDS = 5.0
# A vendor's averages are read again when one of its orders became ready, else after this
# long (samples age out of kitchen.average_max_age); at most this many vendors' are kept.
AVERAGES_REFRESH_SECONDS = 60.0
MAX_AVERAGES_KEPT = 10_000


@dataclass(frozen=True, slots=True)
class Newcomer:
    """A connection that entered `vendor-<id>` (order_id None) or an order's room."""

    sid: str
    order_id: str | None = None


@dataclass(slots=True)
class Counters:
    reads: int = 0  # queries run
    queues_sent: int = 0  # kitchenQueue room messages
    positions_sent: int = 0  # queuePosition room messages
    snapshots_sent: int = 0  # messages to one newcomer
    failures: int = 0


class KitchenQueues:
    """The router sink (`deliver`), the room hook (`entered`) and the task (`run`)."""

    def __init__(
        self,
        *,
        sio: socketio.AsyncServer,
        pool: asyncpg.Pool,
        queries: KitchenQueries,
        settings: KitchenSettings,
    ) -> None:
        self._sio = sio
        self._pool = pool
        self._queries = queries
        self._interval = settings.coalesce_interval
        self._parallel = settings.parallel_orders
        self._max_listed = settings.max_listed
        self._dirty: set[str] = set()
        self._due: float | None = None  # when the dirty vendors are read and sent
        self._newcomers: dict[str, set[Newcomer]] = {}
        self._wake = asyncio.Event()
        # What each order room was last told, per vendor: (position, ahead).
        self._told: dict[str, dict[str, tuple[int | None, int | None]]] = {}
        # Orders last seen in a vendor's queue, to notice one moving to another vendor.
        self._queued: dict[str, set[str]] = {}
        self._vendor_of: dict[str, str] = {}
        # Each vendor's rolling averages and when they are read again.
        self._averages: dict[str, tuple[float, Averages]] = {}
        self._failing = 0
        self._waiters = BackgroundTasks("kitchen queue")
        self.counters = Counters()

    def describe(self) -> dict[str, int]:
        """For /healthz (the same counts are in /metrics)."""
        c = self.counters
        return {
            "reads": c.reads,
            "queuesSent": c.queues_sent,
            "positionsSent": c.positions_sent,
            "snapshotsSent": c.snapshots_sent,
            "failures": c.failures,
            "vendorsPending": len(self._dirty),
        }

    # -- inputs ------------------------------------------------------------------------------

    def deliver(self, events: Sequence[Event]) -> None:
        """Router sink: mark the vendors whose queue the batch may have changed."""
        for vendor in vendors_made_ready(events):
            kept = self._averages.get(vendor)
            if kept is not None:
                self._averages[vendor] = (0.0, kept[1])  # read again at the next read
        vendors = vendors_touched(events, self._vendor_of)
        if vendors:
            self._mark(vendors)

    def _mark(self, vendors: Iterable[str], delay: float | None = None) -> None:
        self._dirty.update(vendors)
        if self._due is None:
            self._due = asyncio.get_running_loop().time() + (
                self._interval if delay is None else delay
            )
        self._wake.set()

    def entered(self, sid: str, room: Room, parties: OrderParties | None) -> None:
        """A connection entered a room (namespace hook): send it the current state."""
        if room.kind == "vendor":
            vendor, newcomer = room.key, Newcomer(sid)
        elif room.kind == "order" and parties is not None and parties.vendor_id:
            vendor, newcomer = parties.vendor_id, Newcomer(sid, room.key)
        else:
            return
        if self._sio.manager.is_connected(sid, NAMESPACE):
            self._welcome(vendor, newcomer)
        else:  # entered while connecting: its CONNECT packet must go out first
            self._waiters.spawn(self._when_connected(vendor, newcomer, room.name))

    async def _when_connected(self, vendor: str, newcomer: Newcomer, room: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONNECT_WAIT_SECONDS
        while not self._sio.manager.is_connected(newcomer.sid, NAMESPACE):
            if not self._member(newcomer.sid, room) or loop.time() > deadline:
                return
            await asyncio.sleep(0.01)
        self._welcome(vendor, newcomer)

    def _welcome(self, vendor: str, newcomer: Newcomer) -> None:
        self._newcomers.setdefault(vendor, set()).add(newcomer)
        self._wake.set()

    # -- the task ----------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            due = self._due is not None and self._due <= now
            if not due and not self._newcomers:
                self._wake.clear()
                timeout = None if self._due is None else self._due - now
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                continue
            flushing: set[str] = set()
            if due:
                flushing, self._dirty, self._due = self._dirty, set(), None
            newcomers, self._newcomers = self._newcomers, {}
            try:
                await self._serve(flushing, newcomers)
            except DB_ERRORS as exc:
                self._retry(flushing, newcomers, exc)
            except Exception as exc:  # a fault of ours must not end the queue for good
                if not self._failing:
                    log.exception("kitchen queue: serving %s failed", sorted(flushing)[:5])
                self._retry(flushing, newcomers, exc)
            else:
                self._failing = 0

    async def close(self) -> None:
        await self._waiters.cancel_all()

    def _retry(
        self, flushing: set[str], newcomers: dict[str, set[Newcomer]], exc: BaseException
    ) -> None:
        """Nothing is dropped: the same vendors are read again, later each time."""
        self.counters.failures += 1
        self._failing += 1
        delay = min(RETRY_MAX_SECONDS, max(self._interval, 0.1) * 2**self._failing)
        (log.warning if self._failing == 1 else log.debug)(
            "kitchen queue: reading %d vendor(s) failed (%r); retrying in %.1f s",
            len(flushing | newcomers.keys()),
            exc,
            delay,
        )
        for vendor, waiting in newcomers.items():
            self._newcomers.setdefault(vendor, set()).update(waiting)
        self._mark(flushing | newcomers.keys(), delay=delay)
        self._due = asyncio.get_running_loop().time() + delay

    async def _serve(self, flushing: set[str], newcomers: dict[str, set[Newcomer]]) -> None:
        vendors = flushing | newcomers.keys()
        now = asyncio.get_running_loop().time()
        stale = {v for v in vendors if self._averages.get(v, (0.0,))[0] <= now}
        self.counters.reads += 1
        rows = await self._queries.read(self._pool, vendors, stale)
        queues = [
            build_queue(
                r.vendor_id, r.orders, self._averages_of(r, now), now=r.at, parallel=self._parallel
            )
            for r in rows
        ]
        positions: dict[str, Position] = {}
        for queue in queues:
            if queue.vendor_id in flushing:
                room = room_for_vendor(queue.vendor_id)
                await self._emit(KITCHEN_QUEUE, self._queue_message(queue), room)
                self.counters.queues_sent += 1
                self._changed_positions(queue, positions)
        # Orders that left one queue first: one that moved to another vendor ends positioned.
        ordered = sorted(positions.values(), key=lambda p: p.position is not None)
        for position in ordered:
            await self._emit(
                QUEUE_POSITION, queue_position_message(position), room_for_order(position.order_id)
            )
            self.counters.positions_sent += 1
        for queue in queues:
            arriving = newcomers.get(queue.vendor_id, set())
            if queue.vendor_id not in self._told and queue.vendor_id not in flushing:
                # Nobody here was told a position of this vendor's orders yet: what the
                # newcomers get now is what later changes are measured against.
                self._changed_positions(queue, {})
            for newcomer in arriving:
                told = queue.vendor_id in flushing and (
                    newcomer.order_id is None or newcomer.order_id in positions
                )
                if not told:
                    await self._snapshot(queue, newcomer)

    def _averages_of(self, rows: VendorRows, now: float) -> Averages:
        if rows.averages is None:
            kept = self._averages.get(rows.vendor_id)
            return kept[1] if kept is not None else Averages(None, None, 0)
        self._averages.pop(rows.vendor_id, None)
        if len(self._averages) >= MAX_AVERAGES_KEPT:
            del self._averages[next(iter(self._averages))]  # the oldest entry
        self._averages[rows.vendor_id] = (now + AVERAGES_REFRESH_SECONDS, rows.averages)
        return rows.averages

    def _changed_positions(self, queue: VendorQueue, out: dict[str, Position]) -> None:
        """The positions this vendor's order rooms were not told yet; forget the rest."""
        vendor = queue.vendor_id
        told = self._told.pop(vendor, {})
        now_told = {order_id: p.key for order_id, p in queue.positions.items()}
        for order_id in told.keys() - now_told.keys():
            out.setdefault(order_id, left_queue(order_id))
        for order_id, position in queue.positions.items():
            if told.get(order_id) != position.key:
                out[order_id] = position
        for order_id in self._queued.pop(vendor, set()):
            if self._vendor_of.get(order_id) == vendor:
                del self._vendor_of[order_id]
        queued = set(queue.order_ids())
        if queued:
            self._queued[vendor] = queued
            self._vendor_of.update(dict.fromkeys(queued, vendor))
        if now_told:
            self._told[vendor] = now_told

    async def _snapshot(self, queue: VendorQueue, newcomer: Newcomer) -> None:
        """The current state to a newcomer the room messages of this round did not reach."""
        if newcomer.order_id is None:
            room = room_for_vendor(queue.vendor_id)
            if not self._member(newcomer.sid, room):
                return
            await self._emit(KITCHEN_QUEUE, self._queue_message(queue), newcomer.sid)
        else:
            position = queue.positions.get(newcomer.order_id)
            room = room_for_order(newcomer.order_id)
            if position is None or not self._member(newcomer.sid, room):
                return  # not waiting (ready, finished, another vendor's now): nothing to tell
            await self._emit(QUEUE_POSITION, queue_position_message(position), newcomer.sid)
        self.counters.snapshots_sent += 1

    def _queue_message(self, queue: VendorQueue) -> dict[str, Any]:
        return kitchen_queue_message(queue, self._max_listed)

    # -- Socket.IO -----------------------------------------------------------------------------

    def _member(self, sid: str, room: str) -> bool:
        in_room: bool = self._sio.manager.in_room(sid, NAMESPACE, room)
        return in_room

    async def _emit(self, event: str, payload: dict[str, Any], to: str) -> None:
        await self._sio.emit(event, payload, to=to, namespace=NAMESPACE)
