"""Resuming from a last event id: parsing it, judging it, and the replay-to-live handoff.

A resuming connection is sent what it missed by a query bounded above by the listener's cursor
at the moment it started (the "ceiling"); everything after the ceiling reaches it live. While
the query runs, live events for that connection are held back in a buffer, then released
after the replay, minus the ids the replay already sent: in order, no gap, no duplicate.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from tiffin_rt.core.events import Event
from tiffin_rt.core.parse import MAX_BIGINT, InvalidNumber, parse_optional_int

# A connection, as the transport holds it (a hub client).
C = TypeVar("C", bound=Hashable)

MAX_EVENT_ID = MAX_BIGINT


class InvalidEventId(ValueError):
    """A last event id that is not a non-negative integer."""


def parse_last_event_id(value: object) -> int | None:
    """None when absent; an int from an int or a canonical decimal string (an SSE id)."""
    try:
        return parse_optional_int(value, "lastEventId", high=MAX_EVENT_ID)
    except InvalidNumber as exc:
        raise InvalidEventId(str(exc)) from None


@dataclass(frozen=True, slots=True)
class LogBounds:
    """The oldest and newest ids in the log (None when it is empty)."""

    oldest: int | None
    newest: int | None


def resumable(last_event_id: int, bounds: LogBounds) -> bool:
    """False when events after last_event_id may have been pruned, or the id is from the future.

    Pruning removes the oldest rows, so while any row up to last_event_id remains nothing after
    it is gone. Ids lost to rolled-back transactions can make this answer False needlessly at
    the very start of the log; the client then reloads, which is safe.
    """
    if bounds.newest is None:
        return last_event_id == 0
    if last_event_id > bounds.newest:
        return False
    assert bounds.oldest is not None
    return last_event_id >= bounds.oldest - 1


@dataclass(slots=True)
class _Handoff:
    ceiling: int | None
    floor: int = 0
    replaying: bool = True
    buffer: list[Event] = field(default_factory=list)
    sent: set[int] = field(default_factory=set)

    def already_sent(self, event_id: int) -> bool:
        return event_id != 0 and (event_id <= self.floor or event_id in self.sent)

    @property
    def filters_nothing(self) -> bool:
        return not self.sent and self.floor == 0

    @property
    def filters_until(self) -> int:
        """Live delivery past this id can no longer bring anything the client already has."""
        return max(self.ceiling or 0, self.floor, max(self.sent, default=0))


class Handoffs(Generic[C]):
    """Per-connection replay-to-live state; the delivering sink asks `hold` for every event."""

    def __init__(self, is_member: Callable[[C, str], bool]) -> None:
        """`is_member(client, room)`: is the connection in this room right now?"""
        self._is_member = is_member
        self._active: dict[C, _Handoff] = {}
        self._newest_seen = 0

    def __len__(self) -> int:
        return len(self._active)

    def begin(self, client: C, ceiling: int | None, floor: int = 0) -> None:
        """Start holding live events for it; call before it enters the rooms to replay.

        `floor` is the client's last event id: nothing at or below it is sent again, even
        when this node's listener is behind the node the client saw it from.
        """
        current = self._active.get(client)
        if current is None:
            self._active[client] = _Handoff(ceiling, floor)
            return
        current.replaying = True
        current.floor = max(current.floor, floor)
        if current.ceiling is not None and ceiling is not None:
            current.ceiling = max(current.ceiling, ceiling)
        else:
            current.ceiling = None

    def record_sent(self, client: C, ids: Iterable[int]) -> None:
        handoff = self._active.get(client)
        if handoff is not None:
            handoff.sent.update(ids)

    def deliver(self, events: Sequence[Event]) -> None:
        """Added to the router after the delivering sinks: the batch has reached every client."""
        if not events:
            return
        newest = max(e.id for e in events)
        if newest <= self._newest_seen:
            return
        self._newest_seen = newest
        for client, handoff in list(self._active.items()):
            if not handoff.replaying and handoff.filters_until <= newest:
                del self._active[client]  # live delivery has passed the replay: nothing to filter

    def hold(self, event: Event) -> list[C]:
        """The connections that must not get `event` live now (held for later, or replayed)."""
        if not self._active:
            return []
        held: list[C] = []
        for client, handoff in self._active.items():
            if not any(self._is_member(client, room) for room in event.rooms):
                continue
            if handoff.replaying:
                handoff.buffer.append(event)
                held.append(client)
            elif handoff.already_sent(event.id):
                held.append(client)
        return held

    def release(self, client: C) -> list[Event]:
        """Buffered events the replay did not send, in order; [] ends holding (live from now).

        Call repeatedly, sending what it returns, until it returns [].
        """
        handoff = self._active.get(client)
        if handoff is None:
            return []
        pending = [e for e in handoff.buffer if not handoff.already_sent(e.id)]
        handoff.buffer = []
        if pending:
            return pending
        handoff.replaying = False
        if handoff.filters_nothing or self._newest_seen >= handoff.filters_until:
            del self._active[client]
        return []

    def drop_floor(self, client: C) -> None:
        """The client's last id was refused (it reloads its state): filter nothing below it."""
        handoff = self._active.get(client)
        if handoff is not None:
            handoff.floor = 0

    def forget(self, client: C) -> None:
        self._active.pop(client, None)

    def sent(self, client: C) -> set[int]:
        handoff = self._active.get(client)
        return set(handoff.sent) if handoff is not None else set()
