"""Room names: `order-<id>`, `user-<id>`, `vendor-<id>`."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_ROOM_LENGTH = 128
_ROOM = re.compile(r"^(order|user|vendor)-([A-Za-z0-9_.:@-]{1,120})$")


class InvalidRoom(ValueError):
    """The room name does not follow `<kind>-<id>`."""


@dataclass(frozen=True, slots=True)
class Room:
    kind: str
    key: str

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.key}"


def parse_room(name: object) -> Room:
    if not isinstance(name, str) or len(name) > MAX_ROOM_LENGTH:
        raise InvalidRoom("a room is a string such as 'order-42'")
    match = _ROOM.match(name)
    if match is None:
        raise InvalidRoom(f"unknown room {name[:40]!r}: use order-<id>, user-<id> or vendor-<id>")
    return Room(match.group(1), match.group(2))


def room_for_order(order_id: object) -> str:
    return f"order-{order_id}"


def room_for_user(user_id: object) -> str:
    return f"user-{user_id}"


def room_for_vendor(vendor_id: object) -> str:
    return f"vendor-{vendor_id}"
