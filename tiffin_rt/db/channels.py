"""Existing NOTIFY channels whose JSON payloads are served as order status events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from tiffin_rt.config import ChannelMapping
from tiffin_rt.core.events import ORDER_STATUS, Event
from tiffin_rt.core.rooms import room_for_order, room_for_user

# Events that did not come from the log have no log id: they are best effort and not replayed.
UNLOGGED_ID = 0


class MalformedPayload(ValueError):
    """A channel payload that cannot be turned into an event; the message says why."""


def _field(doc: dict[str, Any], name: str | None) -> str | None:
    if not name:
        return None
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, dict | list):
        raise MalformedPayload(f"field {name!r} must be a string or number")
    return str(value)


def event_from_payload(mapping: ChannelMapping, payload: str) -> Event:
    """Map one NOTIFY payload to an order status event, or raise MalformedPayload.

    The event names no parties: `customer_field` only adds a room to send to. Who may see the
    order stays what the orders table says (see order_rooms.parties_of).
    """
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
    customer = _field(doc, mapping.customer_field)
    rooms = [room_for_order(order_id)]
    if customer:
        rooms.append(room_for_user(customer))
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
