"""Digests: a user's events held back in a busy period, and the `notificationDigest` payload."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from tiffin_rt.core.events import NOTIFICATION, ORDER_STATUS, Event, iso_utc
from tiffin_rt.core.payments import PAYMENT_STATUS

NOTIFICATION_DIGEST = "notification_digest"
# The payload key the hold trigger sets: the user rooms the event is held back for.
HELD_FOR = "heldFor"

# The Socket.IO event names `batching.kinds` lists, and the log kinds they are built from.
BATCHABLE = {
    "notification": NOTIFICATION,
    "paymentStatusUpdate": PAYMENT_STATUS,
    "orderStatusUpdate": ORDER_STATUS,
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# How an event is sent live: (Socket.IO event name, payload), or None when it is not.
Render = Callable[[Event], tuple[str, dict[str, Any]] | None]


def log_kinds(names: Iterable[str]) -> list[str]:
    return [BATCHABLE[name] for name in names]


def batched(event: Event, kinds: frozenset[str]) -> bool:
    """An event the rate counts: one of `kinds` to at least one user room, not yet decided."""
    return (
        event.kind in kinds
        and HELD_FOR not in event.payload
        and any(room.startswith("user-") for room in event.rooms)
    )


def mark_held(events: Iterable[Event], held: Iterable[tuple[int, str]]) -> None:
    """Write the decisions (event id, user id held) into the events, as `heldFor` user rooms:
    every sink and the replay read the hold from there."""
    rooms: dict[int, list[str]] = {}
    for event_id, user_id in held:
        rooms.setdefault(event_id, []).append("user-" + user_id)
    for event in events:
        if event.id in rooms:
            event.payload[HELD_FOR] = sorted(rooms[event.id])


def held_rooms(event: Event) -> tuple[str, ...]:
    """The user rooms this event is held back for (their connections get it in a digest)."""
    held = event.payload.get(HELD_FOR)
    if not isinstance(held, list):
        return ()
    return tuple(room for room in held if isinstance(room, str))


def _moment(micros: object) -> datetime | None:
    if isinstance(micros, int) and not isinstance(micros, bool):
        return _EPOCH + timedelta(microseconds=micros)
    return None


def digest_message(event: Event, render: Render) -> dict[str, Any]:
    """`notificationDigest`: how many were held, the first few as they would have been sent
    (`{"event", "data"}`), the window, and the user's unread count when it was written."""
    cached = event._cache.get(NOTIFICATION_DIGEST)
    if cached is None:
        p = event.payload
        items: list[dict[str, Any]] = []
        for raw in p.get("items") or []:
            at = _moment(raw.get("at")) if isinstance(raw, dict) else None
            if at is None or not isinstance(raw.get("payload"), dict):
                continue
            item = Event(
                id=int(raw.get("id") or 0),
                kind=str(raw.get("kind")),
                created_at=at,
                rooms=(),
                payload=raw["payload"],
                order_id=None,
            )
            sent = render(item)
            if sent is not None:
                items.append({"event": sent[0], "data": sent[1]})
        since, until = _moment(p.get("since")), _moment(p.get("until"))
        cached = {
            "count": int(p.get("count") or 0),
            "items": items,
            "since": iso_utc(since) if since else None,
            "until": iso_utc(until) if until else None,
            "unread": int(p.get("unread") or 0),
            "eventId": event.id,
        }
        event._cache[NOTIFICATION_DIGEST] = cached
    return dict(cached)
