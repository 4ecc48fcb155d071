"""Room emits through the hub: encoded once per wire format, written by the hub.

python-socketio's AsyncManager.emit encodes a room emit once but then starts one task per
recipient, each putting the packet on that socket's queue for that socket's writer task.
RoomFanout encodes the event once as a Socket.IO packet, and builds from it the WebSocket frame
and the Engine.IO packet; the hub (core.hub) writes them: WebSocket connections get the frame
at the end of the loop tick, one write per connection per tick (the tick writer is the hub's),
and connections on the stock transport (long-polling, upgrades from it, or WebSocket with
compression configured) the packet on their bounded queue at once (StockSocket.send_now), so
nothing is awaited and the router runs no task for them. Nothing is merged or dropped: a
connection that is behind gets every frame, in order, or is disconnected past
`delivery.max_buffered_kib` and resumes from its last event id (LeanWebSocket.deliver).

Membership lives in the hub too: every room change python-socketio makes goes through
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

from tiffin_rt.core import jsonwire
from tiffin_rt.core.hub import BACKLOG_RETRY_SECONDS, Hub, Message, RoomName
from tiffin_rt.transports.socketio.client import SocketClient
from tiffin_rt.transports.socketio.stock import StockSocket
from tiffin_rt.transports.socketio.websocket import DeliveryLimits, LeanWebSocket, ws_frame

log = logging.getLogger(__name__)


class RoomFanout(socketio.AsyncManager):  # type: ignore[misc]
    """python-socketio's manager on the hub: rooms mirrored into it, room emits written by it."""

    def __init__(self, limits: DeliveryLimits, hub: Hub | None = None) -> None:
        super().__init__()
        self.limits = limits
        self.hub = hub if hub is not None else Hub()
        self.hub.limits = limits
        # Each namespace's connections by sid: python-socketio names them by sid alone.
        self._clients: dict[str, dict[str, SocketClient]] = {}

    def set_server(self, server: Any) -> None:
        super().set_server(server)
        eio = server.eio
        # A direct write to a lean socket first writes what this tick queued (see websocket.py).
        eio.write_queued = self.hub.flush

        def queued(pending: bool) -> None:
            eio.frames_queued = pending

        self.hub.on_queued = queued

    # -- membership: in the hub --------------------------------------------------------------

    def basic_enter_room(
        self, sid: str, namespace: str, room: Any, eio_sid: str | None = None
    ) -> None:
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
        message = self._encode(event, args, namespace)
        if message is None:  # binary attachments: the stock path
            data = tuple(args) if len(args) != 1 else args[0]
            stock: Awaitable[None] = super().emit(
                event, data, namespace, room=room, skip_sid=[c.sid for c in skip]
            )
            return stock
        return self.hub.publish(namespace, room, message, skip)

    def encode(self, event: str, data: Any, namespace: str) -> Message | None:
        """An emit of `event` with `data` as the hub writes it: the WebSocket frame and the
        Engine.IO packet, encoded once (None when it has binary attachments: `publish` it)."""
        return self._encode(event, [data], namespace)

    @staticmethod
    def json_frames(event: str, body: bytes, namespace: str) -> tuple[bytes, eio_packet.Packet]:
        """An emit of `event` whose one argument is already JSON (`body`, the same bytes the
        SSE event of that payload carries), as the WebSocket frame and the Engine.IO packet:
        built around `body`, so a payload is serialised once for every transport. The text
        python-socketio's `Packet.encode` writes (compact JSON, the namespace unless "/");
        JSON holds no binary attachment, so nothing is searched for one."""
        head = b"2[" if namespace == "/" else b"2%s,[" % namespace.encode()
        text = b"%s%s,%s]" % (head, jsonwire.dumps(event), body)
        return ws_frame(b"4" + text), eio_packet.Packet(eio_packet.MESSAGE, text.decode())

    def _encode(self, event: str, args: list[Any], namespace: str) -> Message | None:
        pkt = self.server.packet_class(sio_packet.EVENT, namespace=namespace, data=[event, *args])
        encoded = pkt.encode()
        if isinstance(encoded, list):
            return None
        return Message(
            0,
            name=event,
            frame=ws_frame(("4" + encoded).encode()),
            packet=eio_packet.Packet(eio_packet.MESSAGE, encoded),
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
                self.hub.flush()  # what this tick queued: written now, to be counted
                unsent = socket.unsent
            elif isinstance(socket, StockSocket):
                unsent = socket.unsent
            else:
                return
            if unsent <= low_water:
                return
            await asyncio.sleep(BACKLOG_RETRY_SECONDS)
