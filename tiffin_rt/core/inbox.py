"""The inbox: notifications kept per user with their read state, and the payloads built from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tiffin_rt.core.events import Event, iso_utc
from tiffin_rt.core.parse import shown

# A log event telling a user's devices that some of their notifications were read.
NOTIFICATION_READ = "notification_read"

MAX_IDS_PER_READ = 500


class InvalidRead(ValueError):
    """A markRead argument that names no notifications; the message says what is expected."""


@dataclass(frozen=True, slots=True)
class InboxItem:
    id: int
    payload: dict[str, Any]
    created_at: datetime
    read_at: datetime | None


@dataclass(frozen=True, slots=True)
class ReadResult:
    marked: list[int] = field(default_factory=list)
    unread: int = 0


def inbox_message(item: InboxItem) -> dict[str, Any]:
    """A stored notification: the live `notification` payload plus its read state."""
    p = item.payload
    message: dict[str, Any] = {
        "id": item.id,
        "type": p.get("type"),
        "title": p.get("title"),
        "body": p.get("body"),
        "data": p.get("data") or {},
        "createdAt": iso_utc(item.created_at),
        "eventId": item.id,
        "read": item.read_at is not None,
        "readAt": iso_utc(item.read_at) if item.read_at is not None else None,
    }
    if "room" in p:
        message["room"] = p["room"]
    return message


def read_message(event: Event) -> dict[str, Any]:
    """The `notificationRead` payload: which notifications were read, and how many are left."""
    p = event.payload
    ids = p.get("ids")
    return {
        "ids": [int(i) for i in ids] if isinstance(ids, list) else [],
        "unread": int(p.get("unread") or 0),
        "readAt": iso_utc(event.created_at),
        "eventId": event.id,
    }


def ids_to_mark(argument: object) -> list[int] | None:
    """markRead takes an id, {"ids": [...]}, or {"all": true} (None: every notification)."""
    if isinstance(argument, dict):
        if argument.get("all") is True:
            return None
        argument = argument.get("ids")
        if not isinstance(argument, list):
            raise InvalidRead('markRead takes an id, {"ids": [1, 2]} or {"all": true}')
    elif isinstance(argument, int) and not isinstance(argument, bool):
        argument = [argument]
    if not isinstance(argument, list) or not argument:
        raise InvalidRead('markRead takes an id, {"ids": [1, 2]} or {"all": true}')
    if len(argument) > MAX_IDS_PER_READ:
        raise InvalidRead(f"at most {MAX_IDS_PER_READ} ids at a time; use {{\"all\": true}}")
    ids: list[int] = []
    for value in argument:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
            raise InvalidRead(f"a notification id is a positive integer (got {shown(value)})")
        ids.append(value)
    return ids
