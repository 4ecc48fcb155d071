"""Which events reach Web Push with batching: a notification held for a user's digest is not
pushed to that user; the digest is, once, as one notification that sums it up (README:
Batching). Decided here, in front of the dispatcher, which stays unaware of digests."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Sequence
from typing import Any

from tiffin_rt.core.digest import NOTIFICATION_DIGEST, held_rooms
from tiffin_rt.core.events import NOTIFICATION, Event
from tiffin_rt.core.router import Sink

# How many held titles the pushed digest's body names.
TITLES_SHOWN = 3


def digest_notification(digest: Event) -> Event | None:
    """The digest as a `notification` to push (type `notificationDigest`), or None when it
    carries no notification (only batched order or payment updates, which are never pushed)."""
    p = digest.payload
    count = p.get("notifications")
    if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
        return None
    titles = [
        str(item["payload"]["title"])
        for item in p.get("items") or []
        if isinstance(item, dict)
        and item.get("kind") == NOTIFICATION
        and isinstance(item.get("payload"), dict)
        and item["payload"].get("title")
    ][:TITLES_SHOWN]
    more = count - len(titles)
    body = ", ".join(titles) + (f" and {more} more" if titles and more > 0 else "")
    data: dict[str, Any] = {"count": count, "digestEventId": digest.id}
    return dataclasses.replace(
        digest,
        kind=NOTIFICATION,
        payload={
            "type": "notificationDigest",
            "title": f"{count} new notification{'s' if count != 1 else ''}",
            "body": body or None,
            "data": data,
        },
        _cache={},
    )


class DigestPushes:
    """A router sink in front of the push dispatcher: held items out, digests in."""

    KINDS = frozenset({NOTIFICATION, NOTIFICATION_DIGEST})

    def __init__(self, dispatcher: Sink) -> None:
        self._dispatcher = dispatcher

    def deliver(self, events: Sequence[Event]) -> Awaitable[None] | None:
        pushed: list[Event] = []
        for event in events:
            if event.kind == NOTIFICATION_DIGEST:
                summary = digest_notification(event)
                if summary is not None:
                    pushed.append(summary)
            elif event.kind == NOTIFICATION:
                held = held_rooms(event)
                if not held:
                    pushed.append(event)
                elif rooms := tuple(r for r in event.rooms if r not in held):
                    pushed.append(dataclasses.replace(event, rooms=rooms, _cache={}))
        return self._dispatcher.deliver(pushed) if pushed else None
