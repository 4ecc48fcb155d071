"""The hub: which client of which transport is in which room, and writing to them.

Shaped after centrifuge's Hub and Client: a transport turns a request into a client (an object
with a writer) and registers it in its rooms. A room is named within a namespace: each
Socket.IO namespace has its own (`/notifications` and `/support` both have `user-<id>` rooms,
with different events), SSE order-status streams are in a namespace of their own (`SSE`),
and rider location streams in theirs (`transports.sse_location.LOCATION`).

`publish` takes a message encoded once per wire format (an SSE event and its HTTP chunk, a
WebSocket frame, an Engine.IO packet) and writes it to every client in the rooms named, in the
calling loop tick: no queue and no task between the listener and the socket. A client with a
tick writer (a WebSocket) gets its frames at the end of the tick instead, in one write per
connection: a tick whose frames all went to the same clients joins them once and writes the
same bytes to each; otherwise each connection's frames are joined in order. A connection that
is behind keeps a backlog, retried on a short timer, or is cut past its limit (and resumes
from its last event id). The members of a room (or of a list of rooms) are resolved to their
writers once and kept until anyone enters or leaves a room. The authorizer takes clients out
through `evict`. See docs/architecture.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from tiffin_rt import metrics
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


BACKLOG_RETRY_SECONDS = 0.02
# Room lists whose members are kept resolved (cleared as a whole past this, and whenever
# anyone enters or leaves a room).
MAX_RESOLVED = 8192


@dataclass(frozen=True, slots=True)
class Message:
    """One event, encoded once per wire format; `final` ends a stream after it is written."""

    event_id: int  # 0: from a backend's own channel, not in the log (nothing to resume from)
    data: bytes = b""  # SSE: the event as text/event-stream
    final: bool = False
    chunk: bytes = b""  # SSE: `data` as one chunk of a chunked HTTP/1.1 response
    name: str = ""  # the Socket.IO event it is (what delivered events are counted under)
    frame: bytes = b""  # Socket.IO: the WebSocket frame of its Engine.IO packet
    packet: Any = None  # Socket.IO: the Engine.IO packet (a long-polling socket's queue)


class Limits(Protocol):
    @property
    def low_water(self) -> int: ...
    @property
    def max_buffered(self) -> int: ...


class Transport(Protocol):
    """The writing side of a connection (an asyncio transport)."""

    def write(self, data: bytes) -> None: ...
    def is_closing(self) -> bool: ...
    def get_write_buffer_size(self) -> int: ...


class TickWriter(Protocol):
    """A connection written at the end of the tick (a WebSocket): its frames, joined."""

    @property
    def backlog(self) -> list[bytes] | None: ...
    @property
    def closed(self) -> bool: ...

    def deliver(self, data: bytes, limits: Any) -> bool:
        """Write now, or keep while behind; True while a backlog waits (see flush_backlog)."""

    def flush_backlog(self, limits: Any) -> bool:
        """Write the backlog once caught up; True while it still waits."""


# A tick-written member: its writer and the writer's transport (fixed once resolved).
TickMember = tuple[TickWriter, Transport]


class Client(Protocol):
    """One connection of a transport, as the hub sees it."""

    @property
    def who(self) -> Principal | None:
        """Who is connected (None: not authenticated yet)."""

    def tick_writer(self) -> TickMember | None:
        """Its writer, when frames reach it at the end of the tick (a WebSocket connection)."""

    def send(self, message: Message) -> Awaitable[None] | None:
        """Write `message` now (or keep it while the stream is still being set up); an
        awaitable only for a writer that must be awaited (the caller awaits it in order)."""

    def end(self, reason: EndReason | None = None) -> None:
        """End the stream; with a reason, it says why before it closes."""

    def evicted(self, room: str) -> None:
        """The authorizer no longer admits it to `room`: out of it now (a stream ends, saying
        why; a Socket.IO connection leaves the room and stays connected)."""


_NOBODY: Collection[Client] = ()


class Members:
    """The clients of a room (or of several, each once), resolved to their writers."""

    __slots__ = ("now", "tick", "tick_clients")

    def __init__(
        self,
        tick: tuple[TickMember, ...],
        tick_clients: tuple[Client, ...],
        now: tuple[Client, ...],
    ) -> None:
        self.tick = tick  # written by the end-of-tick flush
        self.tick_clients = tick_clients  # their clients, in the same order (for skips)
        self.now = now  # every other client: its `send`, now


def _nothing(_queued: bool) -> None:
    pass


class Hub:
    """Rooms of clients, per namespace; `publish` writes to each of them (or queues the frame
    for the end of the tick) before it returns."""

    def __init__(self, limits: Limits | None = None) -> None:
        self._rooms: dict[str, dict[RoomName, dict[Client, None]]] = {}
        # Each client's rooms (a client is in one namespace).
        self._joined: dict[Client, set[RoomName]] = {}
        self._resolved: dict[tuple[str, Any], Members] = {}
        self.limits: Any = limits
        # What this tick queued: (members, frame), in the order they were published.
        self._tick: list[tuple[tuple[TickMember, ...], bytes]] = []
        self._behind: set[TickWriter] = set()
        self._retry: asyncio.TimerHandle | None = None
        # Told when the tick's first frame is queued (True) and when it is written (False):
        # a direct write to a tick-written connection (an ack, a ping) calls `flush` first.
        self.on_queued: Callable[[bool], None] = _nothing

    # -- membership --------------------------------------------------------------------------

    def join(self, namespace: str, room: RoomName, client: Client) -> None:
        self._resolved.clear()
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
        self._resolved.clear()
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

    # -- writing -----------------------------------------------------------------------------

    def resolve(self, namespace: str, room: RoomName | Sequence[str]) -> Members:
        """The clients `room` (a name, or a list of names) reaches, resolved once."""
        key = (namespace, room if isinstance(room, str) or room is None else tuple(room))
        found = self._resolved.get(key)
        if found is not None:
            return found
        if isinstance(room, str) or room is None:
            clients: Iterable[Client] = self.members(namespace, room)
        else:
            merged: dict[Client, None] = {}
            for name in room:
                merged.update(dict.fromkeys(self.members(namespace, name)))
            clients = merged
        tick: list[TickMember] = []
        tick_clients: list[Client] = []
        now: list[Client] = []
        for client in clients:
            writer = client.tick_writer()
            if writer is not None:
                tick.append(writer)
                tick_clients.append(client)
            else:
                now.append(client)
        members = Members(tuple(tick), tuple(tick_clients), tuple(now))
        if len(self._resolved) >= MAX_RESOLVED:
            self._resolved.clear()
        self._resolved[key] = members
        return members

    def publish(
        self,
        namespace: str,
        room: RoomName | Sequence[str],
        message: Message,
        skip: Collection[Client] = (),
    ) -> Awaitable[None] | None:
        """`message` to every client in `room` (or in any of a list of rooms) but `skip`: now,
        or queued for the end of the tick. An awaitable comes back only for clients whose
        writer must be awaited (the caller awaits it before its next publish)."""
        members = self.resolve(namespace, room)
        tick = members.tick
        if tick:
            if skip:
                tick = tuple(
                    m for m, c in zip(tick, members.tick_clients, strict=True) if c not in skip
                )
            if tick:
                self._queue(tick, message.frame)
                metrics.delivered(message.name, "websocket", len(tick))
        if not members.now:
            return None
        later: list[Awaitable[None]] = []
        for client in members.now:
            if client in skip:
                continue
            waits = client.send(message)
            if waits is not None:
                later.append(waits)
        if not later:
            return None
        return later[0] if len(later) == 1 else _in_order(later)

    def _queue(self, members: tuple[TickMember, ...], frame: bytes) -> None:
        if not self._tick:
            asyncio.get_running_loop().call_soon(self.flush)
            self.on_queued(True)
        self._tick.append((members, frame))

    def flush(self) -> None:
        """End of the loop tick (or before a direct write): one write per connection."""
        tick = self._tick
        if not tick:
            return
        self._tick = []
        self.on_queued(False)
        limits = self.limits
        first = tick[0][0]
        if len(tick) == 1:
            self._write_all(first, tick[0][1], limits)
        elif all(members is first for members, _ in tick):
            # One room this tick: its frames joined once, the same bytes for every member.
            self._write_all(first, b"".join([frame for _, frame in tick]), limits)
        else:
            outboxes: dict[TickMember, list[bytes]] = {}
            for members, frame in tick:
                for member in members:
                    box = outboxes.get(member)
                    if box is None:
                        outboxes[member] = [frame]
                    else:
                        box.append(frame)
            behind = self._behind
            for (writer, _), frames in outboxes.items():
                if writer.deliver(frames[0] if len(frames) == 1 else b"".join(frames), limits):
                    behind.add(writer)
        self._retry_behind()

    def _write_all(self, members: tuple[TickMember, ...], data: bytes, limits: Any) -> None:
        """`data` to every member: straight to the transport unless the member is behind."""
        low_water = limits.low_water
        behind = self._behind
        for writer, transport in members:
            if (
                writer.backlog is None
                and not writer.closed
                and not transport.is_closing()
                and transport.get_write_buffer_size() <= low_water
            ):
                transport.write(data)
            elif writer.deliver(data, limits):
                behind.add(writer)

    def _retry_behind(self) -> None:
        if self._behind and self._retry is None:
            self._retry = asyncio.get_running_loop().call_later(
                BACKLOG_RETRY_SECONDS, self._flush_behind
            )

    def _flush_behind(self) -> None:
        """Clients that were behind: write their backlog once they have caught up."""
        self._retry = None
        limits = self.limits
        self._behind = {w for w in self._behind if w.flush_backlog(limits)}
        if self._behind:
            self._retry = asyncio.get_running_loop().call_later(
                BACKLOG_RETRY_SECONDS, self._flush_behind
            )

    # -- ending ------------------------------------------------------------------------------

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


async def _in_order(waits: list[Awaitable[None]]) -> None:
    for waiting in waits:
        await waiting
