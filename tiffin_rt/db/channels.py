"""Existing NOTIFY channels whose JSON payloads are served as order status events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from tiffin_rt.config import ChannelMapping
from tiffin_rt.core.events import ORDER_STATUS, Event
from tiffin_rt.core.parse import OrderIdFormat
from tiffin_rt.core.rooms import InvalidRoom, Room, order_room, parse_room

# Events that did not come from the log have no log id: they are best effort and not replayed.
UNLOGGED_ID = 0


class MalformedPayload(ValueError):
    """A channel payload that cannot be turned into an event; the message says why."""


def _field(doc: dict[str, Any], name: str | None) -> str | None:
    """A string, or an integer as its decimal text; None when absent. A float, a boolean or
    a container has no one spelling (3.0, true), so it is malformed rather than guessed at."""
    if not name:
        return None
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise MalformedPayload(f"field {name!r} must be a string or an integer")
    return value


def _room(make: Any, value: str, name: str) -> Room:
    try:
        room: Room = make(value)
    except InvalidRoom as exc:
        raise MalformedPayload(f"field {name!r}: {exc}") from None
    return room


def event_from_payload(
    mapping: ChannelMapping, payload: str, order_ids: OrderIdFormat | None = None
) -> Event:
    """Map one NOTIFY payload to an order status event, or raise MalformedPayload.

    The order id is taken only as the orders table prints it (`order_ids`), as joinRoom and SSE
    take it: `03` for order 3 would be a room no client is in, so it is malformed, not dropped
    in silence. The event names no parties: `customer_field` only adds a room to send to. Who
    may see the order stays what the orders table says (see order_rooms.parties_of).
    """
    ids = order_ids if order_ids is not None else OrderIdFormat()
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise MalformedPayload(f"not JSON ({exc.msg})") from None
    if not isinstance(doc, dict):
        raise MalformedPayload("not a JSON object")
    order_id = _field(doc, mapping.order_id_field)
    status = _field(doc, mapping.status_field)
    if not order_id:
        raise MalformedPayload(f"missing {mapping.order_id_field!r}")
    if not status:
        raise MalformedPayload(f"missing {mapping.status_field!r}")
    order = _room(lambda v: order_room(v, ids), order_id, mapping.order_id_field)
    order_id = order.key
    customer = _field(doc, mapping.customer_field)
    rooms = [order.name]
    if customer:
        rooms.append(
            _room(lambda v: parse_room(f"user-{v}"), customer, str(mapping.customer_field)).name
        )
    return Event(
        id=UNLOGGED_ID,
        kind=ORDER_STATUS,
        created_at=datetime.now(UTC),
        rooms=tuple(rooms),
        payload={
            "orderId": order_id,
            "status": status,
            "previousStatus": _field(doc, mapping.previous_status_field),
        },
        order_id=order_id,
        customer_id=customer,
    )
