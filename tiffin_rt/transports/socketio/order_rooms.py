"""Socket.IO rooms as the authorizer sees them: who is in a room, and taking one out.

The authorizer (access.RoomAccess) calls `evict` when an order event changes the order's
parties, before the event is delivered: a rider taken off the order gets nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence

from tiffin_rt.access import Admits
from tiffin_rt.core.rooms import Room
from tiffin_rt.transports.socketio.secure import SecureNamespace


class SocketRooms:
    """The order rooms of Socket.IO namespaces, for the authorizer."""

    def __init__(self, namespaces: Sequence[SecureNamespace]) -> None:
        self._namespaces = namespaces

    def evict(self, room: Room, admits: Admits) -> None:
        for namespace in self._namespaces:
            manager = namespace.server.manager
            name = namespace.namespace
            members = [sid for sid, _ in manager.get_participants(name, room.name)]
            for sid in members:
                identity = namespace.identity(sid)
                if identity is None or not admits(identity):
                    manager.basic_leave_room(sid, name, room.name)
