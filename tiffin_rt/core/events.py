"""Events as read from the log, and the client-facing payloads built from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

ORDER_STATUS = "order_status"
NOTIFICATION = "notification"
# An order's customer, vendor or rider changed without a status change: moves room
# membership, never sent to clients as an orderStatusUpdate.
ORDER_PARTIES = "order_parties"

# Status values from the seed; the backend owns them and others pass through unchanged.
KNOWN_STATUSES = ("pending", "confirmed", "preparing", "ready", "delivered", "cancelled")


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z, millisecond precision, as JavaScript's Date prints it."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Event:
    """One row of tiffin_rt.events."""

    id: int
    kind: str
    created_at: datetime
    rooms: tuple[str, ...]
    payload: dict[str, Any]
    order_id: str | None = None
    customer_id: str | None = None
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def status_message(
    *,
    order_id: str,
    status: object,
    previous_status: object,
    at: datetime,
    event_id: int | None,
) -> dict[str, Any]:
    """The one `orderStatusUpdate` / SSE payload (see README: contract): live, replayed, the
    first SSE event and the joinRoom ack's `order` are all built here."""
    return {
        "orderId": order_id,
        "status": status,
        "previousStatus": previous_status,
        "timestamp": iso_utc(at),
        "eventId": event_id,
    }


def order_status_message(event: Event) -> dict[str, Any]:
    """An order event as clients get it (eventId null: from a channel, not in the log)."""
    cached = event._cache.get("order_status")
    if cached is None:
        p = event.payload
        cached = status_message(
            order_id=str(p.get("orderId")),
            status=p.get("status"),
            previous_status=p.get("previousStatus"),
            at=event.created_at,
            event_id=event.id or None,
        )
        event._cache["order_status"] = cached
    return dict(cached)


class OrderState(Protocol):
    """An order as read from its table (db.orders.OrderSnapshot)."""

    @property
    def order_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def previous_status(self) -> str | None: ...
    @property
    def changed_at(self) -> datetime | None: ...
    @property
    def last_event_id(self) -> int | None: ...


def current_status_message(order: OrderState) -> dict[str, Any]:
    """An order's status as read from its table: the first SSE event and the joinRoom ack's
    `order` (an order with no event in the log is at position 0: resuming from 0 replays
    them all)."""
    return status_message(
        order_id=order.order_id,
        status=order.status,
        previous_status=order.previous_status,
        at=order.changed_at or datetime.now(UTC),
        event_id=order.last_event_id or 0,
    )


def notification_message(event: Event) -> dict[str, Any]:
    """The public `notification` payload."""
    p = event.payload
    message: dict[str, Any] = {
        "id": event.id,
        "type": p.get("type"),
        "title": p.get("title"),
        "body": p.get("body"),
        "data": p.get("data") or {},
        "createdAt": iso_utc(event.created_at),
        "eventId": event.id,
    }
    if "room" in p:
        message["room"] = p["room"]
    return message
