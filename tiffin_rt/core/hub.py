"""The hub: which client of which transport is in which room, and writing to them.

Shaped after centrifuge's Hub and Client: a transport turns a request into a client (an object
with a writer) and registers it in its rooms. A room is named within a namespace: each
Socket.IO namespace has its own (`/notifications` and `/support` both have `user-<id>` rooms,
with different events), and SSE streams are in a namespace of their own (`SSE`). The hub writes
each published message, encoded once per wire format by the sink, to every client in the room,
in the calling loop tick: no queue and no task between the listener and the socket. The
authorizer takes clients out through `evict`. See docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from tiffin_rt.core.policy import Principal

# Why a stream ended early, as its `end` event says it: (code, message).
EndReason = tuple[str, str]

EVICTED: EndReason = ("forbidden", "you may no longer watch this order")
TOKEN_EXPIRED: EndReason = ("token_expired", "the token expired")

# The namespace of SSE order-status streams (Socket.IO namespaces are named "/...").
SSE = "sse"

# A room's name in its namespace; None is the namespace's room of every client in it (as in
# python-socketio, whose rooms are mirrored here).
RoomName = str | None


@dataclass(frozen=True, slots=True)
class Message:
    """One event, encoded once for the wire; `final` ends the stream after it is written."""

    event_id: int  # 0: from a backend's own channel, not in the log (nothing to resume from)
    data: bytes
    final: bool = False


class Client(Protocol):
    """One connection of a transport, as the hub sees it."""

    @property
    def who(self) -> Principal | None:
        """Who is connected (None: not authenticated yet)."""

    def send(self, message: Message) -> None:
        """Write `message` now (or keep it while the stream is still being set up)."""

    def end(self, reason: EndReason | None = None) -> None:
        """End the stream; with a reason, it says why before it closes."""

    def evicted(self, room: str) -> None:
        """The authorizer no longer admits it to `room`: out of it now (a stream ends, saying
        why; a Socket.IO connection leaves the room and stays connected)."""


_NOBODY: Collection[Client] = ()


class Hub:
    """Rooms of clients, per namespace; `publish` writes to each of them before it returns."""

    def __init__(self) -> None:
        self._rooms: dict[str, dict[RoomName, dict[Client, None]]] = {}
        # Each client's rooms (a client is in one namespace).
        self._joined: dict[Client, set[RoomName]] = {}

    # -- membership --------------------------------------------------------------------------

    def join(self, namespace: str, room: RoomName, client: Client) -> None:
        rooms = self._rooms.get(namespace)
        if rooms is None:
            rooms = self._rooms[namespace] = {}
        members = rooms.get(room)
        if members is None:
            members = rooms[room] = {}
        members[client] = None
        joined = self._joined.get(client)
        if joined is None:
            self._joined[client] = {room}
        else:
            joined.add(room)

    def leave(self, namespace: str, room: RoomName, client: Client) -> None:
        rooms = self._rooms.get(namespace)
        if rooms is None:
            return
        members = rooms.get(room)
        if members is None or client not in members:
            return
        del members[client]
        if not members:
            del rooms[room]
            if not rooms:
                del self._rooms[namespace]
        joined = self._joined.get(client)
        if joined is not None:
            joined.discard(room)
            if not joined:
                del self._joined[client]

    @contextmanager
    def subscribed(self, namespace: str, room: str, client: Client) -> Iterator[Client]:
        """`client` is in `room` for the block (subscribe before reading the current state:
        anything committed in between reaches it as a message)."""
        self.join(namespace, room, client)
        try:
            yield client
        finally:
            self.leave(namespace, room, client)

    def members(self, namespace: str, room: RoomName) -> Collection[Client]:
        """The clients in `room` now (a view: copy it before changing membership)."""
        rooms = self._rooms.get(namespace)
        members = rooms.get(room) if rooms is not None else None
        return members.keys() if members is not None else _NOBODY

    def is_member(self, namespace: str, room: RoomName, client: Client) -> bool:
        rooms = self._rooms.get(namespace)
        members = rooms.get(room) if rooms is not None else None
        return members is not None and client in members

    def rooms_of(self, client: Client) -> Collection[RoomName]:
        return self._joined.get(client, ())

    def has_room(self, namespace: str, room: RoomName) -> bool:
        rooms = self._rooms.get(namespace)
        return rooms is not None and room in rooms

    def rooms(self, namespace: str) -> Iterator[tuple[RoomName, Collection[Client]]]:
        """Every room of `namespace` with its clients, now (the admin view)."""
        for room, members in list(self._rooms.get(namespace, {}).items()):
            yield room, list(members)

    def count(self, namespace: str) -> int:
        """How many clients are in rooms of `namespace`."""
        clients: set[Client] = set()
        for members in self._rooms.get(namespace, {}).values():
            clients.update(members)
        return len(clients)

    # -- writing and ending ------------------------------------------------------------------

    def publish(self, namespace: str, room: str, message: Message) -> int:
        members = self.members(namespace, room)
        if not members:
            return 0
        for client in list(members):
            client.send(message)
        return len(members)

    def evict(self, room: str, admits: Callable[[Principal], bool]) -> None:
        """Take every client of every namespace in `room` that `admits` refuses out of it, now
        (the order changed hands); one not authenticated is refused."""
        for rooms in list(self._rooms.values()):
            members = rooms.get(room)
            if not members:
                continue
            for client in list(members):
                who = client.who
                if who is None or not admits(who):
                    client.evicted(room)

    def close_all(self, namespace: str) -> None:
        """End every client of `namespace` now (server shutdown); they reconnect and resume."""
        for _, members in self.rooms(namespace):
            for client in members:
                client.end()
