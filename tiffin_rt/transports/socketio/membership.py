"""Entering a room only while the connection is still there: a handler's awaits can outlive it."""

from __future__ import annotations

from typing import Any

import socketio

from tiffin_rt.core.errors import ack_error

# The acknowledgement of a join whose client left while it was being checked; nobody reads it.
GONE_CODE = "disconnected"


def gone() -> dict[str, Any]:
    return ack_error(GONE_CODE, "the connection closed before the room was joined")


def still_connected(namespace: socketio.AsyncNamespace, sid: str) -> bool:
    """False once the client is gone or going (python-socketio's pending disconnect)."""
    connected: bool = namespace.server.manager.is_connected(sid, namespace.namespace)
    return connected


async def enter_if_connected(namespace: socketio.AsyncNamespace, sid: str, room: str) -> bool:
    """Enter `room` unless the client went away; a gone client entered nothing, not even an
    empty room (python-socketio creates the room before it looks the connection up)."""
    if not still_connected(namespace, sid):
        return False
    await namespace.enter_room(sid, room)
    return True
