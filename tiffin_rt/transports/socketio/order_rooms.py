"""Keeps `order-<id>` rooms true to the orders table as the order's events arrive.

Every order event from the log carries the order's customer, vendor and rider. They refresh
the room policy's cache, and any connection in the order's room that the policy no longer admits
(a rider taken off the order, say) is removed before the event is delivered.
"""

from __future__ import annotations

from collections.abc import Sequence

from tiffin_rt.access import RoomAccess
from tiffin_rt.core.events import ORDER_PARTIES, ORDER_STATUS, Event
from tiffin_rt.core.policy import OrderParties, may_join
from tiffin_rt.core.rooms import Room
from tiffin_rt.transports.socketio.secure import SecureNamespace

_KINDS = frozenset({ORDER_STATUS, ORDER_PARTIES})


# A log event names all three, read from the order's row by the trigger (null: nobody).
_PARTY_FIELDS = ("customerId", "vendorId", "riderId")


def parties_of(event: Event) -> OrderParties | None:
    """The order's parties, or None when the event does not name all of them.

    Events from `notifications.extra_channels` (and hand-written log rows) leave them out: a
    missing field is unknown, not "nobody", so the cache and the rooms stay as they are.
    """
    p = event.payload
    if not all(name in p for name in _PARTY_FIELDS):
        return None

    def text(name: str) -> str | None:
        value = p.get(name)
        return None if value is None else str(value)

    return OrderParties(text("customerId"), text("vendorId"), text("riderId"))


class OrderRoomsSink:
    """Add to the router before the sinks that deliver, so a removed member gets nothing."""

    def __init__(self, access: RoomAccess, namespaces: Sequence[SecureNamespace]) -> None:
        self._access = access
        self._namespaces = namespaces

    async def deliver(self, events: Sequence[Event]) -> None:
        for event in events:
            if event.kind not in _KINDS or event.order_id is None:
                continue
            parties = parties_of(event)
            if parties is None:
                continue
            self._access.remember(event.order_id, parties)
            room = Room("order", event.order_id)
            for namespace in self._namespaces:
                await self._evict(namespace, room, parties)

    async def _evict(self, namespace: SecureNamespace, room: Room, parties: OrderParties) -> None:
        manager = namespace.server.manager
        members = [sid for sid, _ in manager.get_participants(namespace.namespace, room.name)]
        for sid in members:
            identity = namespace.identity(sid)
            if identity is None or not may_join(identity, room, parties):
                await namespace.leave_room(sid, room.name)
