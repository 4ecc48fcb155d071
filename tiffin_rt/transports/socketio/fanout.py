"""Room emits: encoded once, per-room work once per loop tick, one write per connection.

python-socketio's AsyncManager.emit encodes a room emit once but then starts one task per
recipient, each putting the packet on that socket's queue for that socket's writer task.
RoomFanout builds the WebSocket frame once and notes (room members, frame) for the end of the
loop tick; the members of a room (or of a list of rooms) are resolved to their sockets once
and kept until someone enters or leaves a room. At the end of the tick one callback writes:
a tick that sent one room (any number of frames) joins its frames once and writes the same
bytes to each member; otherwise each connection's frames are joined in order. Either way a
connection gets one write per tick. Nothing is merged or dropped: a connection that is behind
gets every frame, in order, or is disconnected past `delivery.max_buffered_kib` and resumes
from its last event id (LeanWebSocket.deliver). A direct write to a lean socket (an ack, a
ping) writes the tick's frames first, so a connection's frames keep the order they were sent.
Connections on the stock transport (long-polling, upgrades from it, or WebSocket with
compression configured) get the packet on their bounded queue at once (StockSocket.send_now):
nothing is awaited, so the router runs no task for them.

Membership lives in the hub (core.hub): every room change python-socketio makes goes through
`basic_enter_room` / `basic_leave_room`, which keep a SocketClient in the hub's room of the same
namespace and name; python-socketio's own room dict stays as the mirror its API reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Collection, Iterable, Sequence
from typing import Any, cast

import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from tiffin_rt import metrics
from tiffin_rt.core.hub import Hub, RoomName
from tiffin_rt.transports.socketio.client import SocketClient
from tiffin_rt.transports.socketio.stock import StockSocket
from tiffin_rt.transports.socketio.websocket import DeliveryLimits, LeanWebSocket, ws_frame

log = logging.getLogger(__name__)

BACKLOG_RETRY_SECONDS = 0.02
# Room lists whose members are kept resolved (cleared as a whole past this, and whenever
# anyone enters or leaves a room).
MAX_RESOLVED = 8192

# A lean member: its socket and the socket's transport (fixed once adopted).
LeanMember = tuple[LeanWebSocket, asyncio.Transport]


class Members:
    """The connections of a room (or of several, each once), resolved to their sockets."""

    __slots__ = ("lean", "lean_clients", "stock")

    def __init__(
        self,
        lean: tuple[LeanMember, ...],
        lean_clients: tuple[SocketClient, ...],
        stock: tuple[SocketClient, ...],
    ) -> None:
        self.lean = lean  # WebSocket connections written by the end-of-tick flush
        self.lean_clients = lean_clients  # their clients, in the same order (for skips)
        self.stock = stock  # every other connection


class RoomFanout(socketio.AsyncManager):  # type: ignore[misc]
    """Room emits written as pre-built frames, once per room and connection per loop tick."""

    def __init__(self, limits: DeliveryLimits, hub: Hub | None = None) -> None:
        super().__init__()
        self.limits = limits
        self.hub = hub if hub is not None else Hub()
        # Each namespace's connections by sid: python-socketio names them by sid alone.
        self._clients: dict[str, dict[str, SocketClient]] = {}
        # What room emits queued this tick: (members, frame), in the order they were sent.
        self._tick: list[tuple[tuple[LeanMember, ...], bytes]] = []
        self._resolved: dict[tuple[str, Any], Members] = {}
        self._behind: set[LeanWebSocket] = set()
        self._retry: asyncio.TimerHandle | None = None

    def set_server(self, server: Any) -> None:
        super().set_server(server)
        # A direct write to a lean socket first writes what this tick queued (see websocket.py).
        server.eio.write_queued = self._flush

    # -- membership: in the hub; resolved sockets forgotten whenever it changes ---------------

    def basic_enter_room(
        self, sid: str, namespace: str, room: Any, eio_sid: str | None = None
    ) -> None:
        self._resolved.clear()
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        clients = self._clients.get(namespace)
        if clients is None:
            clients = self._clients[namespace] = {}
        client = clients.get(sid)
        if client is None:  # connecting: python-socketio enters it in `None` first
            client = clients[sid] = SocketClient(
                self.server, namespace, sid, self.rooms[namespace][None][sid]
            )
        self.hub.join(namespace, room, client)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        self._resolved.clear()
        super().basic_leave_room(sid, namespace, room)
        client = self.client(sid, namespace)
        if client is not None:
            self.hub.leave(namespace, room, client)

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        super().basic_disconnect(sid, namespace, **kwargs)  # leaves every room
        clients = self._clients.get(namespace)
        client = clients.pop(sid, None) if clients is not None else None
        if client is None:
            return
        for room in list(self.hub.rooms_of(client)):
            self.hub.leave(namespace, room, client)
        if not clients:
            del self._clients[namespace]

    def client(self, sid: str, namespace: str) -> SocketClient | None:
        """The connection `sid` of `namespace`, from its first room to its disconnect."""
        clients = self._clients.get(namespace)
        return clients.get(sid) if clients is not None else None

    def clients(self, namespace: str, room: RoomName) -> Iterable[SocketClient]:
        """The connections in `room` of `namespace` (None: all of the namespace's), now."""
        return cast(Iterable[SocketClient], self.hub.members(namespace, room))

    def in_room(self, sid: str, namespace: str, room: str) -> bool:
        client = self.client(sid, namespace)
        return client is not None and self.hub.is_member(namespace, room, client)

    def rooms_of(self, sid: str, namespace: str) -> list[str]:
        """The rooms `sid` is in, its own sid room and `None` left out."""
        client = self.client(sid, namespace)
        if client is None:
            return []
        return [r for r in self.hub.rooms_of(client) if r is not None and r != sid]

    def resolve(self, namespace: str, room: Any) -> Members:
        """The connections `room` (a name, or a list of names) reaches, resolved once."""
        key = (namespace, room if isinstance(room, str) or room is None else tuple(room))
        found = self._resolved.get(key)
        if found is not None:
            return found
        lean: list[LeanMember] = []
        lean_clients: list[SocketClient] = []
        stock: list[SocketClient] = []
        sockets = self.server.eio.sockets
        for client in self._participants(namespace, room):
            socket = sockets.get(client.eio_sid)
            if socket is None:
                continue
            transport = socket.transport if type(socket) is LeanWebSocket else None
            if transport is not None:
                lean.append((socket, transport))
                lean_clients.append(client)
            else:
                stock.append(client)
        members = Members(tuple(lean), tuple(lean_clients), tuple(stock))
        if len(self._resolved) >= MAX_RESOLVED:
            self._resolved.clear()
        self._resolved[key] = members
        return members

    def _participants(self, namespace: str, room: Any) -> Iterable[SocketClient]:
        """Each connection in `room` (or in any of a list of rooms) once."""
        if room is None or isinstance(room, str):
            return self.clients(namespace, room)
        found: dict[SocketClient, None] = {}
        for name in room:
            found.update(dict.fromkeys(self.clients(namespace, name)))
        return found

    # -- emitting ----------------------------------------------------------------------------

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        if callback is not None:
            await super().emit(
                event,
                data,
                namespace,
                room=room,
                skip_sid=skip_sid,
                callback=callback,
                to=to,
                **kwargs,
            )
            return
        if isinstance(data, tuple):
            args = list(data)
        elif data is not None:
            args = [data]
        else:
            args = []
        skip = self._skipped(skip_sid, namespace)
        later = self._publish(event, args, namespace, to or room, skip)
        if later is not None:
            await later

    def _skipped(self, skip_sid: Any, namespace: str) -> Collection[SocketClient]:
        """The clients python-socketio's `skip_sid` (a sid, or a list of them) names."""
        if not skip_sid:
            return ()
        sids = skip_sid if isinstance(skip_sid, list | set | tuple | frozenset) else (skip_sid,)
        return {c for c in (self.client(sid, namespace) for sid in sids) if c is not None}

    def publish(
        self,
        event: str,
        data: Any,
        namespace: str,
        rooms: Sequence[str],
        skip: Collection[SocketClient] = (),
    ) -> Awaitable[None] | None:
        """A room emit that does not wait: each WebSocket's frame is queued for the end of the
        tick and each stock socket's packet is on its queue before it returns. An awaitable
        comes back only for what cannot be sent that way (binary attachments, python-engineio's
        unbounded socket when the startup check fell back to it); the caller awaits it before
        its next emit."""
        if not rooms:
            return None  # an event for no room (a payment of no known order) reaches nobody
        return self._publish(event, [data], namespace, rooms, skip)

    def _publish(
        self,
        event: str,
        args: list[Any],
        namespace: str,
        room: Any,
        skip: Collection[SocketClient],
    ) -> Awaitable[None] | None:
        if namespace not in self.rooms:
            return None
        pkt = self.server.packet_class(sio_packet.EVENT, namespace=namespace, data=[event, *args])
        encoded = pkt.encode()
        if isinstance(encoded, list):  # binary attachments: the stock path
            data = tuple(args) if len(args) != 1 else args[0]
            stock: Awaitable[None] = super().emit(
                event, data, namespace, room=room, skip_sid=[c.sid for c in skip]
            )
            return stock
        members = self.resolve(namespace, room)
        lean = members.lean
        if lean:
            if skip:
                lean = tuple(
                    m for m, c in zip(lean, members.lean_clients, strict=True) if c not in skip
                )
            if lean:
                self._queue(lean, ws_frame(("4" + encoded).encode()))
                metrics.delivered(event, "websocket", len(lean))
        if not members.stock:
            return None
        return self._send_stock(members.stock, skip, encoded, event)

    def _queue(self, lean: tuple[LeanMember, ...], frame: bytes) -> None:
        if not self._tick:
            asyncio.get_running_loop().call_soon(self._flush)
            self.server.eio.frames_queued = True
        self._tick.append((lean, frame))

    def _send_stock(
        self,
        members: tuple[SocketClient, ...],
        skip: Collection[SocketClient],
        encoded: str,
        event: str,
    ) -> Awaitable[None] | None:
        """Each stock socket's packet on its queue now; python-engineio's own sockets (only
        when the startup check fell back to them) come back as one awaitable."""
        pkt = eio_packet.Packet(eio_packet.MESSAGE, encoded)
        sockets = self.server.eio.sockets
        unbounded: list[str] = []
        for client in members:
            if client in skip:
                continue
            socket = sockets.get(client.eio_sid)
            if socket is None:
                continue
            metrics.delivered_stock(event, socket)
            if isinstance(socket, StockSocket):
                socket.send_now(pkt)
            else:
                unbounded.append(client.eio_sid)
        if not unbounded:
            return None
        return self._send_unbounded(unbounded, pkt)

    async def _send_unbounded(self, eio_sids: list[str], pkt: eio_packet.Packet) -> None:
        for eio_sid in eio_sids:
            await self.server.eio.send_packet(eio_sid, pkt)

    # -- writing -----------------------------------------------------------------------------

    def _flush(self) -> None:
        """End of the loop tick (or before a direct write): one write per connection."""
        tick = self._tick
        if not tick:
            return
        self._tick = []
        self.server.eio.frames_queued = False
        limits = self.limits
        first = tick[0][0]
        if len(tick) == 1:
            self._write_all(first, tick[0][1], limits)
        elif all(members is first for members, _ in tick):
            # One room this tick: its frames joined once, the same bytes for every member.
            self._write_all(first, b"".join([frame for _, frame in tick]), limits)
        else:
            outboxes: dict[LeanMember, list[bytes]] = {}
            for members, frame in tick:
                for member in members:
                    box = outboxes.get(member)
                    if box is None:
                        outboxes[member] = [frame]
                    else:
                        box.append(frame)
            behind = self._behind
            for (socket, _), frames in outboxes.items():
                if socket.deliver(frames[0] if len(frames) == 1 else b"".join(frames), limits):
                    behind.add(socket)
        self._retry_behind()

    def _write_all(
        self, members: tuple[LeanMember, ...], data: bytes, limits: DeliveryLimits
    ) -> None:
        """`data` to every member: straight to the transport unless the member is behind."""
        low_water = limits.low_water
        behind = self._behind
        for socket, transport in members:
            if (
                socket.backlog is None
                and not socket.closed
                and not transport.is_closing()
                and transport.get_write_buffer_size() <= low_water
            ):
                transport.write(data)
            elif socket.deliver(data, limits):
                behind.add(socket)

    def _retry_behind(self) -> None:
        if self._behind and self._retry is None:
            self._retry = asyncio.get_running_loop().call_later(
                BACKLOG_RETRY_SECONDS, self._flush_behind
            )

    async def wait_for_room(self, sid: str, namespace: str) -> None:
        """Until the connection has taken most of what it was sent; a replay paces itself by it.

        Live events are never held back: a client that does not keep up with them is cut off
        past the limit. A replay can wait, so a client that missed more than the limit is not
        cut off again for being sent all of it at once.
        """
        eio_sid = self.eio_sid_from_sid(sid, namespace)
        low_water = self.limits.low_water
        while eio_sid is not None:
            socket = self.server.eio.sockets.get(eio_sid)
            if socket is None or socket.closed:
                return
            if type(socket) is LeanWebSocket:
                self._flush()  # what this tick queued: written now, to be counted
                unsent = socket.unsent
            elif isinstance(socket, StockSocket):
                unsent = socket.unsent
            else:
                return
            if unsent <= low_water:
                return
            await asyncio.sleep(BACKLOG_RETRY_SECONDS)

    def _flush_behind(self) -> None:
        """Clients that were behind: write their backlog once they have caught up."""
        self._retry = None
        limits = self.limits
        self._behind = {s for s in self._behind if s.flush_backlog(limits)}
        if self._behind:
            self._retry = asyncio.get_running_loop().call_later(
                BACKLOG_RETRY_SECONDS, self._flush_behind
            )
