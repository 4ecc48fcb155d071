"""Room authorization: the policy in core.policy applied to orders read from the database."""

from __future__ import annotations

import time

import asyncpg

from tiffin_rt.auth import Identity
from tiffin_rt.core.parse import OrderIdFormat
from tiffin_rt.core.policy import OrderParties, may_join
from tiffin_rt.core.rooms import InvalidRoom, Room, order_room, parse_room
from tiffin_rt.db.inbox import DB_ERRORS
from tiffin_rt.db.orders import OrderQueries, OrderSnapshot


class AccessDenied(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class RoomAccess:
    """Created with the app; bound to the pool once the database is up.

    An order's parties are cached for `cache_ttl` seconds; the order's own events replace the
    cached entry (see `remember`), so a reassigned rider gains or loses the room at once.
    """

    MAX_CACHED_ORDERS = 10_000

    def __init__(self, cache_ttl: float = 5.0) -> None:
        self._pool: asyncpg.Pool | None = None
        self._orders: OrderQueries | None = None
        self._ttl = cache_ttl
        self._cache: dict[str, tuple[float, OrderParties | None]] = {}
        self._order_ids = OrderIdFormat()

    def bind(self, *, pool: asyncpg.Pool, orders: OrderQueries) -> None:
        self._pool = pool
        self._orders = orders
        self._order_ids = orders.id_format

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
        if self._pool is None or self._orders is None:
            raise AccessDenied("unavailable", "the database is not ready yet")
        try:
            snapshot = await self._orders.fetch(self._pool, order_id)
        except DB_ERRORS:
            # a refused or timed-out query (database.command_timeout): the client may retry
            raise AccessDenied("unavailable", "the database is unavailable; try again") from None
        parties = snapshot.parties if snapshot is not None else None
        self.remember(order_id, parties)
        return parties

    async def current(self, order_id: str) -> OrderSnapshot | None:
        """The order as it is now (its status for a joiner), read past the cache and kept in it."""
        if self._pool is None or self._orders is None:
            raise AccessDenied("unavailable", "the database is not ready yet")
        try:
            snapshot = await self._orders.fetch(self._pool, order_id)
        except DB_ERRORS:
            raise AccessDenied("unavailable", "the order could not be read; try again") from None
        self.remember(order_id, snapshot.parties if snapshot is not None else None)
        return snapshot

    async def check(self, who: Identity, room_name: object) -> Room:
        """Return the parsed room, or raise AccessDenied (never revealing whether it exists)."""
        room = self.parse(room_name)
        order = None
        if room.kind == "order":
            order = await self.order_parties(room.key)
            if order is None and who.is_staff:
                raise AccessDenied("not_found", f"no order {room.key}")
        if not may_join(who, room, order):
            raise AccessDenied("forbidden", f"you may not join {room.name}")
        return room
