"""The hub: which client of a streaming transport is in which room, and writing to them.

Shaped after centrifuge's Hub and Client: a transport turns a request into a client (an object
with a writer), registers it in its rooms, and the hub writes each published message, encoded
once per wire format by the sink, to every client in the room, in the calling loop tick: no
queue and no task between the listener and the socket. The authorizer takes clients out
through `evict`. Socket.IO connections stay in python-socketio's manager (the protocol engine),
which the Socket.IO sink writes to; see docs/architecture.md.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from tiffin_rt.core.policy import Principal

# Why a stream ended early, as its `end` event says it: (code, message).
EndReason = tuple[str, str]

EVICTED: EndReason = ("forbidden", "you may no longer watch this order")
TOKEN_EXPIRED: EndReason = ("token_expired", "the token expired")


@dataclass(frozen=True, slots=True)
class Message:
    """One event, encoded once for the wire; `final` ends the stream after it is written."""

    event_id: int  # 0: from a backend's own channel, not in the log (nothing to resume from)
    data: bytes
    final: bool = False


class Client(Protocol):
    """One connection of a streaming transport, as the hub sees it."""

    @property
    def who(self) -> Principal: ...

    def send(self, message: Message) -> None:
        """Write `message` now (or keep it while the stream is still being set up)."""

    def end(self, reason: EndReason | None = None) -> None:
        """End the stream; with a reason, it says why before it closes."""


class Hub:
    """Rooms of clients; `publish` writes to each of them before it returns."""

    def __init__(self) -> None:
        self._rooms: dict[str, set[Client]] = defaultdict(set)

    @contextmanager
    def subscribed(self, room: str, client: Client) -> Iterator[Client]:
        """`client` is in `room` for the block (subscribe before reading the current state:
        anything committed in between reaches it as a message)."""
        self._rooms[room].add(client)
        try:
            yield client
        finally:
            members = self._rooms.get(room)
            if members is not None:
                members.discard(client)
                if not members:
                    del self._rooms[room]

    def has_room(self, room: str) -> bool:
        return room in self._rooms

    def publish(self, room: str, message: Message) -> int:
        members = self._rooms.get(room)
        if not members:
            return 0
        for client in list(members):
            client.send(message)
        return len(members)

    def evict(self, room: str, admits: Callable[[Principal], bool]) -> None:
        """End now every client in `room` that `admits` refuses (the order changed hands)."""
        for client in list(self._rooms.get(room, ())):
            if not admits(client.who):
                client.end(EVICTED)

    def close_all(self) -> None:
        """End every client now (server shutdown); they reconnect and resume."""
        for members in list(self._rooms.values()):
            for client in list(members):
                client.end()

    def members(self) -> Iterator[tuple[str, Client]]:
        """Every (room, client) now: the admin view."""
        for room, members in list(self._rooms.items()):
            for client in list(members):
                yield room, client

    def __len__(self) -> int:
        return sum(len(m) for m in self._rooms.values())
