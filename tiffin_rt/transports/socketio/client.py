"""A Socket.IO connection to one namespace as a hub client (core.hub.Client).

RoomFanout registers one in the hub's rooms of its namespace whenever python-socketio enters
the connection into a room (its connect puts it in the namespace's room `None` and a room named
by its sid), so the hub holds every Socket.IO room beside the SSE streams. The engine socket is
its writer; the tick writer in RoomFanout writes to it (docs/architecture.md).
"""

from __future__ import annotations

from typing import Any

from tiffin_rt.core.hub import EndReason, Message
from tiffin_rt.core.policy import Principal


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

    def send(self, message: Message) -> None:
        raise TypeError("Socket.IO clients are written by RoomFanout, not Hub.publish")

    def end(self, reason: EndReason | None = None) -> None:
        raise TypeError("a Socket.IO connection is closed by its Engine.IO session, not the hub")

    def evicted(self, room: str) -> None:
        """Out of `room` through python-socketio (so its room dict, the mirror, agrees)."""
        self._server.manager.basic_leave_room(self.sid, self.namespace, room)

    def __repr__(self) -> str:
        return f"SocketClient({self.namespace!r}, {self.sid!r})"
