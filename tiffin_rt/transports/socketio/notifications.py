"""The /notifications namespace and the gateway the router sends through."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import socketio

from tiffin_rt.access import AccessDenied, RoomAccess
from tiffin_rt.auth import AuthError, Identity, TokenVerifier
from tiffin_rt.core.events import (
    NOTIFICATION,
    ORDER_STATUS,
    Event,
    notification_message,
    order_status_message,
)
from tiffin_rt.core.rooms import room_for_order, room_for_user, room_for_vendor

log = logging.getLogger(__name__)

NAMESPACE = "/notifications"


def ok(**fields: Any) -> dict[str, Any]:
    return {"ok": True, **fields}


def error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


class NotificationsNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    """Authenticates on connect, joins the user's own rooms, and checks every joinRoom."""

    def __init__(self, *, verifier: TokenVerifier, access: RoomAccess) -> None:
        super().__init__(NAMESPACE)
        self._verifier = verifier
        self._access = access
        self._identities: dict[str, Identity] = {}

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            identity = self._verifier.verify(token)
        except AuthError as exc:
            raise socketio.exceptions.ConnectionRefusedError(exc.message, exc.as_dict()) from None
        self._identities[sid] = identity
        await self.enter_room(sid, room_for_user(identity.user_id))
        if identity.role == "kitchen" and identity.vendor_id:
            await self.enter_room(sid, room_for_vendor(identity.vendor_id))

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self._identities.pop(sid, None)

    def identity(self, sid: str) -> Identity | None:
        return self._identities.get(sid)

    async def on_joinRoom(self, sid: str, room_name: Any = None) -> dict[str, Any]:
        identity = self._identities.get(sid)
        if identity is None:
            return error("unauthorized", "not connected")
        try:
            room = await self._access.check(identity, room_name)
        except AccessDenied as exc:
            return error(exc.code, exc.message)
        await self.enter_room(sid, room.name)
        return ok(room=room.name)

    async def on_leaveRoom(self, sid: str, room_name: Any = None) -> dict[str, Any]:
        identity = self._identities.get(sid)
        if identity is None:
            return error("unauthorized", "not connected")
        if not isinstance(room_name, str):
            return error("invalid_room", "a room is a string such as 'order-42'")
        if room_name == room_for_user(identity.user_id):
            return error("forbidden", "a connection always stays in its own user room")
        await self.leave_room(sid, room_name)
        return ok(room=room_name)


class NotificationGateway:
    """Server-side API mirroring the seed's NotificationGateway; the router sends through it."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio

    async def send_notification(self, room: str | list[str], notification: dict[str, Any]) -> None:
        await self._sio.emit("notification", notification, to=room, namespace=NAMESPACE)

    async def send_order_status_update(
        self, order_id: str, status: str, *, rooms: Sequence[str] = (), **fields: Any
    ) -> None:
        targets = [room_for_order(order_id), *(r for r in rooms if r != room_for_order(order_id))]
        payload = {"orderId": str(order_id), "status": status, **fields}
        await self._sio.emit("orderStatusUpdate", payload, to=targets, namespace=NAMESPACE)


class NotificationsSink:
    """Routes log events to /notifications: order events and notifications to their rooms."""

    def __init__(self, gateway: NotificationGateway) -> None:
        self._gateway = gateway

    async def deliver(self, events: Sequence[Event]) -> None:
        for event in events:
            if event.kind == ORDER_STATUS:
                message = order_status_message(event)
                order_id = message.pop("orderId")
                status = message.pop("status")
                await self._gateway.send_order_status_update(
                    order_id, status, rooms=event.rooms, **message
                )
            elif event.kind == NOTIFICATION:
                await self._gateway.send_notification(
                    list(event.rooms), notification_message(event)
                )
