"""The /notifications namespace and the gateway the router sends through."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import socketio

from tiffin_rt.access import AccessDenied, RoomAccess
from tiffin_rt.auth import Identity, TokenVerifier
from tiffin_rt.core.events import (
    NOTIFICATION,
    ORDER_STATUS,
    Event,
    current_status_message,
    notification_message,
    order_status_message,
)
from tiffin_rt.core.inbox import NOTIFICATION_READ, read_message
from tiffin_rt.core.policy import may_join
from tiffin_rt.core.rooms import room_for_order, room_for_user, room_for_vendor
from tiffin_rt.db.orders import OrderSnapshot
from tiffin_rt.ratelimit import RateLimits
from tiffin_rt.transports.socketio.membership import enter_if_connected, gone, still_connected
from tiffin_rt.transports.socketio.secure import SecureNamespace, error, ok

log = logging.getLogger(__name__)

NAMESPACE = "/notifications"

# Which connections must not get this event live now (see core.replay.Handoffs.hold).
Hold = Callable[[Event], list[str]]


def current_status(snapshot: OrderSnapshot) -> dict[str, Any]:
    """The order's status now: the same message as the first event of its SSE stream."""
    return current_status_message(
        snapshot.order_id,
        snapshot.status,
        snapshot.previous_status,
        snapshot.changed_at or datetime.now(UTC),
        snapshot.last_event_id,
    )


class NotificationsNamespace(SecureNamespace):
    """Joins each connection's own rooms, and checks every joinRoom against the room policy."""

    def __init__(self, *, verifier: TokenVerifier, access: RoomAccess, limits: RateLimits) -> None:
        super().__init__(NAMESPACE, verifier=verifier, limits=limits)
        self._access = access

    async def connected(self, sid: str, identity: Identity) -> None:
        await self.enter_room(sid, room_for_user(identity.user_id))
        if identity.role == "kitchen" and identity.vendor_id:
            await self.enter_room(sid, room_for_vendor(identity.vendor_id))

    async def on_joinRoom(self, sid: str, room_name: Any = None) -> dict[str, Any]:
        identity = self._identities.get(sid)
        if identity is None:  # it may run after waiting behind the connection's replay
            return gone()
        try:
            room = await self._access.check(identity, room_name)
        except AccessDenied as exc:
            return error(exc.code, exc.message)
        if not await enter_if_connected(self, sid, room.name):
            return gone()
        if room.kind != "order":
            return ok(room=room.name)
        # Read after entering: a change committed from now on reaches the room live.
        try:
            snapshot = await self._access.current(room.key)
        except AccessDenied as exc:
            await self.leave_room(sid, room.name)
            return error(exc.code, exc.message)
        if not still_connected(self, sid):
            return gone()  # the disconnect took it out of every room
        identity = self._identities[sid]
        if not may_join(identity, room, snapshot.parties if snapshot else None):
            await self.leave_room(sid, room.name)  # the order changed hands since the check
            return error("forbidden", f"you may not join {room.name}")
        return ok(room=room.name, order=current_status(snapshot) if snapshot else None)

    async def on_leaveRoom(self, sid: str, room_name: Any = None) -> dict[str, Any]:
        identity = self._identities[sid]
        try:
            room = self._access.parse(room_name)
        except AccessDenied as exc:
            return error(exc.code, exc.message)
        if room.name == room_for_user(identity.user_id):
            return error("forbidden", "a connection always stays in its own user room")
        await self.leave_room(sid, room.name)
        return ok(room=room.name)


class NotificationGateway:
    """Server-side API mirroring the seed's NotificationGateway; the router sends through it."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio

    async def send_notification(
        self, room: str | list[str], notification: dict[str, Any], *, skip: Sequence[str] = ()
    ) -> None:
        await self._sio.emit(
            "notification", notification, to=room, namespace=NAMESPACE, skip_sid=list(skip) or None
        )

    async def send_notification_read(
        self, rooms: list[str], read: dict[str, Any], *, skip: Sequence[str] = ()
    ) -> None:
        await self._sio.emit(
            "notificationRead", read, to=rooms, namespace=NAMESPACE, skip_sid=list(skip) or None
        )

    async def send_order_status_update(
        self,
        order_id: str,
        status: str,
        *,
        rooms: Sequence[str] = (),
        skip: Sequence[str] = (),
        **fields: Any,
    ) -> None:
        targets = [room_for_order(order_id), *(r for r in rooms if r != room_for_order(order_id))]
        payload = {"orderId": str(order_id), "status": status, **fields}
        await self._sio.emit(
            "orderStatusUpdate",
            payload,
            to=targets,
            namespace=NAMESPACE,
            skip_sid=list(skip) or None,
        )


class NotificationsSink:
    """Routes log events to /notifications, in log order: order status updates, notifications,
    and reads (so a read never arrives after a notification committed later)."""

    def __init__(self, gateway: NotificationGateway, *, hold: Hold | None = None) -> None:
        self._gateway = gateway
        self._hold = hold

    async def deliver(self, events: Sequence[Event]) -> None:
        for event in events:
            if event.kind not in (ORDER_STATUS, NOTIFICATION, NOTIFICATION_READ):
                continue
            # connections being replayed to get this event from their replay instead
            skip = self._hold(event) if self._hold is not None else []
            if event.kind == ORDER_STATUS:
                message = order_status_message(event)
                order_id = message.pop("orderId")
                status = message.pop("status")
                await self._gateway.send_order_status_update(
                    order_id, status, rooms=event.rooms, skip=skip, **message
                )
            elif event.kind == NOTIFICATION:
                await self._gateway.send_notification(
                    list(event.rooms), notification_message(event), skip=skip
                )
            else:
                await self._gateway.send_notification_read(
                    list(event.rooms), read_message(event), skip=skip
                )
