"""The one authorizer: the policy in core.policy applied to orders read from the database,
on every join (Socket.IO joinRoom, an SSE stream opening) and, when an order event changes the
order's parties, to every connection of every transport already in its room (the hub's
clients: Socket.IO connections, SSE status and rider location streams)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import asyncpg

from tiffin_rt.auth import Identity
from tiffin_rt.core.errors import ClientError
from tiffin_rt.core.events import ORDER_PARTIES, ORDER_STATUS, Event
from tiffin_rt.core.hub import Hub
from tiffin_rt.core.policy import OrderParties, Principal, is_staff, may_join
from tiffin_rt.core.rooms import InvalidRoom, Room, order_room, parse_room
from tiffin_rt.db.errors import DB_ERRORS
from tiffin_rt.db.orders import OrderQueries, OrderSnapshot


class AccessDenied(ClientError):
    """A room the client may not be in, or cannot be checked now."""


# Does the policy still admit this connection to the room being checked?
Admits = Callable[[Principal], bool]


# A log event names all three, read from the order's row by the trigger (null: nobody).
_PARTY_FIELDS = ("customerId", "vendorId", "riderId")
_ORDER_KINDS = frozenset({ORDER_STATUS, ORDER_PARTIES})


def parties_of(event: Event) -> OrderParties | None:
    """The order's parties, or None when the event does not name all of them.

    Events from `notifications.extra_channels`, the gateway (and hand-written log rows) leave
    them out: a missing field is unknown, not "nobody", so the cache and the rooms stay as
    they are.
    """
    p = event.payload
    if not all(name in p for name in _PARTY_FIELDS):
        return None

    def text(name: str) -> str | None:
        value = p.get(name)
        return None if value is None else str(value)

    return OrderParties(text("customerId"), text("vendorId"), text("riderId"))


class RoomAccess:
    """The one authorizer, built in the pool's cleanup context (app._pool) on the pool.

    An order's parties are cached for `cache_ttl` seconds; the order's own events replace the
    cached entry and, as a sink added before the delivering ones, take every connection the
    policy no longer admits out of the order's room (`Hub.evict`, every client of every
    transport) before the event is delivered: a rider taken off the order leaves its Socket.IO
    room and its SSE streams (order status and location) end.
    """

    MAX_CACHED_ORDERS = 10_000

    def __init__(
        self, *, pool: asyncpg.Pool, orders: OrderQueries, hub: Hub, cache_ttl: float = 5.0
    ) -> None:
        self._pool = pool
        self._hub = hub
        self._orders = orders
        self._ttl = cache_ttl
        self._cache: dict[str, tuple[float, OrderParties | None]] = {}
        self._order_ids = orders.id_format
        # The newest parties known of each order and the log position they are as of (the id
        # of the event that said so, or of the newest such event when a join read the row):
        # what its room was last checked against, so an event or a read that says no more
        # than that is not acted on (an event older than a join's read, delivered late by a
        # listener that lags, must not evict whom that read admitted).
        self._known: dict[str, tuple[int, OrderParties]] = {}

    def parse(self, room_name: object) -> Room:
        """The room a client named, its order id as the database prints it, or AccessDenied."""
        try:
            return parse_room(room_name, self._order_ids)
        except InvalidRoom as exc:
            raise AccessDenied("invalid_room", str(exc)) from None

    def order_room(self, order_id: object) -> Room:
        """The room of an order id a client sent outside a room name (an SSE path)."""
        try:
            return order_room(order_id, self._order_ids)
        except InvalidRoom as exc:
            raise AccessDenied("invalid_room", str(exc)) from None

    def remember(self, order_id: str, parties: OrderParties | None) -> None:
        """Store what an order event says about the order's parties."""
        self._cache.pop(order_id, None)
        if self._ttl <= 0:
            return
        if len(self._cache) >= self.MAX_CACHED_ORDERS:
            del self._cache[next(iter(self._cache))]  # the oldest entry
        self._cache[order_id] = (time.monotonic() + self._ttl, parties)

    async def order_parties(self, order_id: str) -> OrderParties | None:
        entry = self._cache.get(order_id)
        if entry is not None and entry[0] >= time.monotonic():
            return entry[1]
        try:
            snapshot = await self._orders.fetch(self._pool, order_id)
        except DB_ERRORS:
            # a refused or timed-out query (database.command_timeout): the client may retry
            raise AccessDenied("unavailable", "the database is unavailable; try again") from None
        snapshot = self._read(order_id, snapshot)
        return snapshot.parties if snapshot is not None else None

    async def current(
        self, order_id: str, *, seen_after: int | None = None
    ) -> OrderSnapshot | None:
        """The order as it is now (its status for a joiner), read past the cache and kept in it;
        its parties are the newest known (an event delivered while the row was being read is
        newer than the row). `seen_after`: see OrderQueries.fetch."""
        try:
            snapshot = await self._orders.fetch(self._pool, order_id, seen_after=seen_after)
        except DB_ERRORS:
            raise AccessDenied("unavailable", "the order could not be read; try again") from None
        return self._read(order_id, snapshot)

    def _read(self, order_id: str, snapshot: OrderSnapshot | None) -> OrderSnapshot | None:
        """A row just read, against what the order's events said meanwhile: an older read
        takes the newer parties; a newer one is now what the room is checked against, and
        whom it no longer admits leaves (the events saying so may still be on their way)."""
        if snapshot is None:
            self.remember(order_id, None)
            return None
        position = snapshot.parties_event_id or 0
        known = self._known.get(order_id)
        if known is not None and known[0] > position:
            parties = known[1]
            snapshot = replace(snapshot, parties=parties)
        elif known is None or known[1] != snapshot.parties or known[0] < position:
            self._know(order_id, position, snapshot.parties)
        self.remember(order_id, snapshot.parties)
        return snapshot

    def admit(self, who: Identity, room: Room, order: OrderParties | None) -> None:
        """Raise AccessDenied unless `who` may be in `room` (`order`: the order's parties, None
        when it does not exist, which only staff are told)."""
        if room.kind == "order" and order is None and is_staff(who.role):
            raise AccessDenied("not_found", f"no order {room.key}")
        if not may_join(who, room, order):
            raise AccessDenied("forbidden", f"you may not join {room.name}")

    async def check(self, who: Identity, room_name: object) -> Room:
        """Return the parsed room, or raise AccessDenied (never revealing whether it exists)."""
        room = self.parse(room_name)
        order = await self.order_parties(room.key) if room.kind == "order" else None
        self.admit(who, room, order)
        return room

    def deliver(self, events: Sequence[Event]) -> None:
        """Order events: refresh the cache and evict whom the order's parties no longer admit."""
        for event in events:
            if event.kind not in _ORDER_KINDS or event.order_id is None:
                continue
            parties = parties_of(event)
            if parties is None:
                continue
            known = self._known.get(event.order_id)
            if known is not None and event.id and event.id <= known[0]:
                # A join read the order after this event: what it read is newer, and its room
                # was checked against that; the late event changes nothing.
                continue
            self.remember(event.order_id, parties)
            position = event.id or (known[0] if known is not None else 0)
            self._know(event.order_id, position, parties)

    def _know(self, order_id: str, position: int, parties: OrderParties) -> None:
        """The order's parties as of `position`: whom they no longer admit leaves the order's
        room on every transport (unless its room was already checked against these parties)."""
        known = self._known.pop(order_id, None)
        if len(self._known) >= self.MAX_CACHED_ORDERS:
            del self._known[next(iter(self._known))]
        self._known[order_id] = (position, parties)
        if known is not None and known[1] == parties:
            return
        room = Room("order", order_id)
        self._hub.evict(room.name, _admits(room, parties))


def _admits(room: Room, parties: OrderParties) -> Admits:
    return lambda who: may_join(who, room, parties)
