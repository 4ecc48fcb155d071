"""Room names: `order-<id>`, `user-<id>`, `vendor-<id>`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tiffin_rt.core.parse import InvalidOrderId, OrderIdFormat

MAX_ROOM_LENGTH = 128
_ROOM = re.compile(r"^(order|user|vendor)-([A-Za-z0-9_.:@-]{1,120})$")
_ANY_TEXT = OrderIdFormat()


class InvalidRoom(ValueError):
    """The room name does not follow `<kind>-<id>`."""


@dataclass(frozen=True, slots=True)
class Room:
    kind: str
    key: str

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.key}"


def parse_room(name: object, order_ids: OrderIdFormat = _ANY_TEXT) -> Room:
    """The room a client named; an order's id only as `order_ids` prints it (one name, one
    room: `order-02` would be a room no event is ever sent to)."""
    if not isinstance(name, str) or len(name) > MAX_ROOM_LENGTH:
        raise InvalidRoom("a room is a string such as 'order-42'")
    match = _ROOM.match(name)
    if match is None:
        raise InvalidRoom(f"unknown room {name[:40]!r}: use order-<id>, user-<id> or vendor-<id>")
    if match.group(1) == "order":
        return order_room(match.group(2), order_ids)
    return Room(match.group(1), match.group(2))


def order_room(order_id: object, order_ids: OrderIdFormat = _ANY_TEXT) -> Room:
    """The room of an order id a client sent (SSE path, support orderId, joinRoom)."""
    try:
        key = order_ids.parse(order_id)
    except InvalidOrderId as exc:
        raise InvalidRoom(str(exc)) from None
    if len(key) > MAX_ROOM_LENGTH - len("order-") or _ROOM.match(f"order-{key}") is None:
        raise InvalidRoom(f"unknown order id {key[:40]!r}")
    return Room("order", key)


def room_for_order(order_id: object) -> str:
    return f"order-{order_id}"


def room_for_user(user_id: object) -> str:
    return f"user-{user_id}"


def room_for_vendor(vendor_id: object) -> str:
    return f"vendor-{vendor_id}"
