"""`riderLocation` to Socket.IO connections in `order-<id>`, latest wins.

Status events reach every connection, each of them, in order (fanout.py). A rider's position is
only worth its newest value: a connection that is behind (its WebSocket has bytes the kernel
has not taken, or its long-polling queue has packets not fetched yet) is not sent more
positions; the newest one for each of its orders waits here instead, each newer one replacing
(superseding, counted) the one waiting, and goes out once the connection has caught up. So a
slow client gets the current position when it can take it, never a backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections import deque
from collections.abc import Awaitable
from typing import Any

from tiffin_rt.core.rooms import room_for_order
from tiffin_rt.tracking.service import Position
from tiffin_rt.transports.socketio.client import SocketClient
from tiffin_rt.transports.socketio.fanout import RoomFanout
from tiffin_rt.transports.socketio.stock import StockSocket
from tiffin_rt.transports.socketio.websocket import LeanWebSocket

log = logging.getLogger(__name__)

EVENT = "riderLocation"
NAMESPACE = "/notifications"


def is_behind(socket: Any) -> bool:
    """Does the connection still hold what it was sent before?"""
    if type(socket) is LeanWebSocket:
        return socket.unsent > 0
    if isinstance(socket, StockSocket):
        return socket.unsent - socket.in_flight > 0  # packets queued, not yet taken
    return False


class SocketLocations:
    """The Socket.IO side of RiderTracking (tracking.service.Watchers)."""

    def __init__(self, sio: Any, *, retry_seconds: float) -> None:
        self._sio = sio
        self._fanout: RoomFanout = sio.manager
        self._retry_seconds = retry_seconds
        # (sid, order id) -> the newest position that connection has not been sent yet
        self._waiting: dict[tuple[str, str], Position] = {}
        self._timer: asyncio.TimerHandle | None = None
        # Packets for stock Engine.IO sockets, awaited one after another in one task (in order).
        self._stock: deque[Awaitable[None]] = deque()
        self._stock_task: asyncio.Task[None] | None = None
        self.sent = 0
        self.superseded = 0
        self.sent_late = 0

    def describe(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "superseded": self.superseded,
            "sentLate": self.sent_late,
            "waiting": len(self._waiting),
        }

    # -- Watchers --------------------------------------------------------------------------

    def publish(self, position: Position) -> None:
        room = room_for_order(position.order_id)
        members = list(self._fanout.clients(NAMESPACE, room))
        if not members:
            return
        sockets = self._sio.eio.sockets
        held: list[SocketClient] = []
        for client in members:
            key = (client.sid, position.order_id)
            if key in self._waiting or is_behind(sockets.get(client.eio_sid)):
                self._wait(key, position)
                held.append(client)
        if len(held) < len(members):
            self.sent += len(members) - len(held)
            self._later(self._fanout.publish(EVENT, position.message, NAMESPACE, [room], held))

    def send_to(self, sid: str, position: Position) -> None:
        key = (sid, position.order_id)
        eio_sid = self._fanout.eio_sid_from_sid(sid, NAMESPACE)
        if eio_sid is None:
            return
        if key in self._waiting or is_behind(self._sio.eio.sockets.get(eio_sid)):
            self._wait(key, position)
            return
        self.sent += 1
        self._later(self._fanout.publish(EVENT, position.message, NAMESPACE, [sid]))

    def close_order(self, order_id: str, status: str) -> None:
        self.forget(order_id)

    def forget(self, order_id: str) -> None:
        for key in [k for k in self._waiting if k[1] == order_id]:
            del self._waiting[key]

    # -- connections that are behind ---------------------------------------------------------

    def _wait(self, key: tuple[str, str], position: Position) -> None:
        waiting = self._waiting.get(key)
        if waiting is not None:
            if waiting.seq >= position.seq:
                return
            self.superseded += 1
        self._waiting[key] = position
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._retry_seconds, self._retry)

    def _retry(self) -> None:
        """Connections that caught up get their newest position; gone ones are forgotten."""
        self._timer = None
        fanout = self._fanout
        sockets = self._sio.eio.sockets
        for key, position in list(self._waiting.items()):
            sid, order_id = key
            client = fanout.client(sid, NAMESPACE)
            if (
                client is None
                or client.eio_sid not in sockets
                or not fanout.in_room(sid, NAMESPACE, room_for_order(order_id))
            ):
                del self._waiting[key]  # left the room, or disconnected
                continue
            if is_behind(sockets[client.eio_sid]):
                continue
            del self._waiting[key]
            self.sent += 1
            self.sent_late += 1
            self._later(self._fanout.publish(EVENT, position.message, NAMESPACE, [sid]))
        if self._waiting and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._retry_seconds, self._retry)

    # -- stock sockets -----------------------------------------------------------------------

    def _later(self, work: Awaitable[None] | None) -> None:
        if work is None:
            return
        self._stock.append(work)
        if self._stock_task is None:
            self._stock_task = asyncio.get_running_loop().create_task(
                self._send_stock(), name="tiffin_rt-rider-locations"
            )

    async def _send_stock(self) -> None:
        try:
            while self._stock:
                work = self._stock.popleft()
                try:
                    await work
                except Exception:
                    log.exception("sending a rider position to a long-polling client failed")
        finally:
            self._stock_task = None

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._waiting.clear()
        task, self._stock_task = self._stock_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while self._stock:
            work = self._stock.popleft()
            if inspect.iscoroutine(work):
                work.close()
