"""What a NOTIFY on tiffin_rt_events says: the event itself, or only that the log grew.

append_event (migration 0004) sends the whole event when it fits in PostgreSQL's 8000-byte
payload, else its id; servers of older schema versions send an empty payload. Only a whole
event can be delivered without reading the log.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from tiffin_rt.core.events import Event

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def event_from_wakeup(payload: str) -> Event | None:
    """The event a NOTIFY payload carries, or None when it carries none (read the log)."""
    if not payload.startswith("{"):
        return None
    try:
        doc: Any = orjson.loads(payload)
        body = doc["payload"]
        return Event(
            id=int(doc["id"]),
            kind=str(doc["kind"]),
            created_at=_EPOCH + timedelta(microseconds=int(doc["at"])),
            rooms=tuple(doc["rooms"]),
            payload=body if isinstance(body, dict) else {"value": body},
            order_id=doc.get("order"),
            customer_id=doc.get("customer"),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
