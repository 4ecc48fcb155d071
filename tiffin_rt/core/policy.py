"""Who may join which room. The whole policy is the table below (repeated in the README)."""

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
        return who.role == "support" or (who.role == "kitchen" and who.vendor_id == room.key)
    if room.kind == "order":
        if order is None:
            return False
        if who.role == "support":
            return True
        if who.role == "customer":
            return order.customer_id == who.user_id
        if who.role == "kitchen":
            return order.vendor_id is not None and order.vendor_id == who.vendor_id
        if who.role == "rider":
            return order.rider_id == who.user_id
    return False


def sees_all_orders(who: Principal) -> bool:
    return who.role in ("support", "admin")
