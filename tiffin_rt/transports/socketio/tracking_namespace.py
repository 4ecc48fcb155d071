"""/notifications with rider tracking: `locationUpdate` from riders, and the last position for
a connection that joins an order's room."""

from __future__ import annotations

import logging
from typing import Any

from tiffin_rt.core.errors import ClientError, ack_ok
from tiffin_rt.tracking.service import RiderTracking
from tiffin_rt.transports.socketio.locations import SocketLocations
from tiffin_rt.transports.socketio.membership import gone, still_connected
from tiffin_rt.transports.socketio.resume import ResumableNotificationsNamespace

log = logging.getLogger(__name__)

# Refusals that say the client sends what the contract forbids (logged as warnings); the others
# (too fast, stale, order finished) are the normal life of a rider app.
_LYING = frozenset({"invalid_payload", "forbidden"})


class TrackingNotificationsNamespace(ResumableNotificationsNamespace):
    def __init__(
        self, *, tracking: RiderTracking, locations: SocketLocations, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._tracking = tracking
        self._locations = locations

    async def on_locationUpdate(self, sid: str, data: Any = None) -> dict[str, Any]:
        """A rider's position for one of its orders; the ack says whether it was sent on."""
        identity = self.identity(sid)
        if identity is None:
            return gone()
        try:
            position = await self._tracking.accept(identity, data)
        except ClientError as exc:
            level = logging.WARNING if exc.code in _LYING else logging.DEBUG
            log.log(
                level,
                "locationUpdate from %s refused: %s: %s",
                identity.user_id,
                exc.code,
                exc.message,
            )
            raise
        return ack_ok(
            orderId=position.order_id,
            timestamp=position.message["timestamp"],
            eta=position.message["eta"],
        )

    async def on_joinRoom(self, sid: str, room_name: Any = None) -> dict[str, Any]:
        """As /notifications' joinRoom; a joined order's last rider position follows at once
        as a `riderLocation` event (there is none before the rider's first one)."""
        ack = await super().on_joinRoom(sid, room_name)
        room = ack.get("room")
        if ack.get("ok") and isinstance(room, str) and room.startswith("order-"):
            position = await self._tracking.latest(room.removeprefix("order-"))
            if position is not None and still_connected(self, sid):
                self._locations.send_to(sid, position)
        return ack
