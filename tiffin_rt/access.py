"""Room authorization: the policy in core.policy applied to orders read from the database."""

from __future__ import annotations

import asyncpg

from tiffin_rt.auth import Identity
from tiffin_rt.core.policy import may_join
from tiffin_rt.core.rooms import InvalidRoom, Room, parse_room
from tiffin_rt.db.orders import OrderQueries


class AccessDenied(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class RoomAccess:
    """Created with the app; bound to the pool once the database is up."""

    def __init__(self) -> None:
        self._pool: asyncpg.Pool | None = None
        self._orders: OrderQueries | None = None

    def bind(self, *, pool: asyncpg.Pool, orders: OrderQueries) -> None:
        self._pool = pool
        self._orders = orders

    async def check(self, who: Identity, room_name: object) -> Room:
        """Return the parsed room, or raise AccessDenied (never revealing whether it exists)."""
        try:
            room = parse_room(room_name)
        except InvalidRoom as exc:
            raise AccessDenied("invalid_room", str(exc)) from None
        order = None
        if room.kind == "order":
            if self._pool is None or self._orders is None:
                raise AccessDenied("unavailable", "the database is not ready yet")
            snapshot = await self._orders.fetch(self._pool, room.key)
            order = snapshot.parties if snapshot is not None else None
            if order is None and who.is_staff:
                raise AccessDenied("not_found", f"no order {room.key}")
        if not may_join(who, room, order):
            raise AccessDenied("forbidden", f"you may not join {room.name}")
        return room
