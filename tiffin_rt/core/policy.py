"""Who may join which room, and who is staff. The whole policy is the table below (repeated in
the README); access.RoomAccess is the one place that applies it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tiffin_rt.core.rooms import Room


class Principal(Protocol):
    @property
    def user_id(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def vendor_id(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class OrderParties:
    """The people an order belongs to, from the configured orders columns."""

    customer_id: str | None
    vendor_id: str | None
    rider_id: str | None


STAFF_ROLES = frozenset({"support", "admin"})


def is_staff(role: str) -> bool:
    """Support and admin: they see every order, answer support chats, learn an order is missing."""
    return role in STAFF_ROLES


# | room        | customer   | kitchen               | rider          | support | admin |
# | order-<id>  | own orders | its vendor's orders   | assigned to it | any     | any   |
# | user-<id>   | own id     | own id                | own id         | own id  | any   |
# | vendor-<id> | no         | own vendor            | no             | any     | any   |
# An order that does not exist admits nobody but admin (the caller tells staff `not_found`).
def may_join(who: Principal, room: Room, order: OrderParties | None) -> bool:
    if who.role == "admin":
        return True
    if room.kind == "user":
        return room.key == who.user_id
    if room.kind == "vendor":
        return is_staff(who.role) or (who.role == "kitchen" and who.vendor_id == room.key)
    if room.kind == "order":
        if order is None:
            return False
        if is_staff(who.role):
            return True
        if who.role == "customer":
            return order.customer_id == who.user_id
        if who.role == "kitchen":
            return order.vendor_id is not None and order.vendor_id == who.vendor_id
        if who.role == "rider":
            return order.rider_id == who.user_id
    return False
