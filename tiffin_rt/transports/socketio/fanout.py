"""Room emits: encoded once, no task per recipient, one write per connection per loop tick.

python-socketio's AsyncManager.emit encodes a room emit once but then starts one task per
recipient, each putting the packet on that socket's queue for that socket's writer task.
RoomFanout builds the WebSocket frame once and appends it to each recipient's outbox; a
single callback at the end of the loop tick writes each outbox with one transport write, so
a batch of events from the listener costs one write per connection. Nothing is merged or
dropped: a connection that is behind gets every frame, in order, or is disconnected past
`delivery.max_buffered_kib` and resumes from its last event id (LeanWebSocket.deliver).
Connections on the stock transport (long-polling, upgrades from it, or WebSocket with
compression configured) are sent through python-socketio as before, awaited one after another
rather than as a task each, with the same limit (stock.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Collection, Sequence
from typing import Any

import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from tiffin_rt.transports.socketio.stock import StockSocket
from tiffin_rt.transports.socketio.websocket import DeliveryLimits, LeanWebSocket, ws_frame

log = logging.getLogger(__name__)

BACKLOG_RETRY_SECONDS = 0.02
class RoomFanout(socketio.AsyncManager):  # type: ignore[misc]
    """Room emits written as pre-built frames, coalesced per connection per loop tick."""

    def __init__(self, limits: DeliveryLimits) -> None:
        super().__init__()
        self.limits = limits
        self._dirty: list[LeanWebSocket] = []
        self._behind: set[LeanWebSocket] = set()
        self._retry: asyncio.TimerHandle | None = None

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
        later = self._publish(event, args, namespace, to or room, skip_sid)
        if later is not None:
            await later

    def publish(
        self,
        event: str,
        data: Any,
        namespace: str,
        rooms: Sequence[str],
        skip: Collection[str] = (),
    ) -> Awaitable[None] | None:
        """A room emit that does not wait: each WebSocket's frame is queued before it returns
        (written at the end of the tick); what stock sockets are sent comes back as one
        awaitable (None when there are none), which the caller awaits before its next emit."""
        return self._publish(event, [data], namespace, list(rooms), skip)

    def _publish(
        self, event: str, args: list[Any], namespace: str, room: Any, skip_sid: Any
    ) -> Awaitable[None] | None:
        if namespace not in self.rooms:
            return None
        pkt = self.server.packet_class(sio_packet.EVENT, namespace=namespace, data=[event, *args])
        encoded = pkt.encode()
        if isinstance(encoded, list):  # binary attachments: the stock path
            data = tuple(args) if len(args) != 1 else args[0]
            stock: Awaitable[None] = super().emit(
                event, data, namespace, room=room, skip_sid=skip_sid
            )
            return stock
        frame = ws_frame(("4" + encoded).encode())
        skip = skip_sid if isinstance(skip_sid, list | set | tuple | frozenset) else (skip_sid,)
        sockets = self.server.eio.sockets
        slow: list[str] = []
        for sid, eio_sid in self.get_participants(namespace, room):
            if sid in skip:
                continue
            socket = sockets.get(eio_sid)
            if socket is None:
                continue
            if type(socket) is LeanWebSocket and socket.transport is not None:
                self._queue(socket, frame)
            else:
                slow.append(eio_sid)
        if not slow:
            return None
        return self._send_stock(slow, encoded)

    async def _send_stock(self, eio_sids: list[str], encoded: str) -> None:
        for eio_sid in eio_sids:
            await self.server.eio.send_packet(
                eio_sid, eio_packet.Packet(eio_packet.MESSAGE, encoded)
            )

    def _queue(self, socket: LeanWebSocket, frame: bytes) -> None:
        outbox = socket.outbox
        if outbox is None:
            socket.outbox = [frame]
            if not self._dirty:
                asyncio.get_running_loop().call_soon(self._flush)
            self._dirty.append(socket)
        else:
            outbox.append(frame)

    def _flush(self) -> None:
        """End of the loop tick: one write per connection for everything queued to it."""
        dirty, self._dirty = self._dirty, []
        limits = self.limits
        for socket in dirty:
            frames = socket.outbox
            socket.outbox = None
            if frames and socket.deliver(frames, limits):
                self._behind.add(socket)
        self._retry_behind()

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
                frames = socket.outbox  # what this tick queued: written now, to be counted
                socket.outbox = None
                if frames and socket.deliver(frames, self.limits):
                    self._behind.add(socket)
                    self._retry_behind()
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
