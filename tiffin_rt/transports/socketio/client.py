"""A Socket.IO connection to one namespace as a hub client (core.hub.Client).

RoomFanout registers one in the hub's rooms of its namespace whenever python-socketio enters
the connection into a room (its connect puts it in the namespace's room `None` and a room named
by its sid), so the hub holds every Socket.IO room beside the SSE streams. The engine socket is
its writer: a lean WebSocket's transport takes the hub's end-of-tick writes, any other socket
the Engine.IO packet on its queue (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from tiffin_rt import metrics
from tiffin_rt.core.hub import EndReason, Message, TickMember
from tiffin_rt.core.policy import Principal
from tiffin_rt.transports.socketio.stock import StockSocket
from tiffin_rt.transports.socketio.websocket import LeanWebSocket


class SocketClient:
    """One connection to a namespace: its sid there, its Engine.IO sid, who it is."""

    __slots__ = ("_server", "eio_sid", "namespace", "sid")

    def __init__(self, server: Any, namespace: str, sid: str, eio_sid: str) -> None:
        self._server = server
        self.namespace = namespace
        self.sid = sid
        self.eio_sid = eio_sid

    @property
    def who(self) -> Principal | None:
        """The identity its namespace authenticated (None before that, or with no namespace
        handler that authenticates)."""
        handler = self._server.namespace_handlers.get(self.namespace)
        identity = getattr(handler, "identity", None)
        who: Principal | None = identity(self.sid) if identity is not None else None
        return who

    @property
    def socket(self) -> Any:
        """The Engine.IO socket that writes to it (None once it is gone)."""
        return self._server.eio.sockets.get(self.eio_sid)

    def tick_writer(self) -> TickMember | None:
        """A lean WebSocket and its transport (fixed once adopted): written at the tick's end."""
        socket = self._server.eio.sockets.get(self.eio_sid)
        if type(socket) is LeanWebSocket:
            transport = socket.transport
            if transport is not None:
                return socket, transport
        return None

    def send(self, message: Message) -> Awaitable[None] | None:
        """The packet on a stock socket's bounded queue now; python-engineio's own socket (only
        when the startup check fell back to it) or a WebSocket not adopted yet is awaited."""
        socket = self._server.eio.sockets.get(self.eio_sid)
        if socket is None:
            return None
        metrics.delivered_stock(message.name, socket)
        if isinstance(socket, StockSocket):
            socket.send_now(message.packet)
            return None
        sending: Awaitable[None] = self._server.eio.send_packet(self.eio_sid, message.packet)
        return sending

    def end(self, reason: EndReason | None = None) -> None:
        raise TypeError("a Socket.IO connection is closed by its Engine.IO session, not the hub")

    def evicted(self, room: str) -> None:
        """Out of `room` through python-socketio (so its room dict, the mirror, agrees)."""
        self._server.manager.basic_leave_room(self.sid, self.namespace, room)

    def __repr__(self) -> str:
        return f"SocketClient({self.namespace!r}, {self.sid!r})"
