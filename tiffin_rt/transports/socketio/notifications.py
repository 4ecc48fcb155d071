"""The /notifications namespace, the server-side gateway into the log, and the sink out of it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from tiffin_rt.access import AccessDenied, RoomAccess
from tiffin_rt.auth import Identity, TokenVerifier
from tiffin_rt.core import jsonwire
from tiffin_rt.core.digest import NOTIFICATION_DIGEST, digest_message, held_rooms
from tiffin_rt.core.errors import ack_error, ack_ok
from tiffin_rt.core.events import (
    NOTIFICATION,
    ORDER_STATUS,
    Event,
    current_status_message,
    notification_message,
    order_status_message,
)
from tiffin_rt.core.hub import SSE, Message
from tiffin_rt.core.inbox import NOTIFICATION_READ, read_message
from tiffin_rt.core.parse import OrderIdFormat
from tiffin_rt.core.payments import PAYMENT_STATUS, payment_status_message
from tiffin_rt.core.policy import OrderParties
from tiffin_rt.core.rooms import (
    InvalidRoom,
    Room,
    parse_room,
    room_for_order,
    room_for_user,
    room_for_vendor,
)
from tiffin_rt.core.router import send_in_order
from tiffin_rt.ratelimit import RateLimits
from tiffin_rt.transports.socketio.client import SocketClient
from tiffin_rt.transports.socketio.fanout import RoomFanout
from tiffin_rt.transports.socketio.membership import enter_if_connected, gone, still_connected
from tiffin_rt.transports.socketio.secure import SecureNamespace
from tiffin_rt.transports.sse import stream_parts

log = logging.getLogger(__name__)

NAMESPACE = "/notifications"

# Which connections must not get this event live now (see core.replay.Handoffs.hold).
Hold = Callable[[Event], list[SocketClient]]
# Told of each room a connection entered, with the order's parties for an order room (the
# kitchen queue sends the room's current state to the newcomer).
RoomEntered = Callable[[str, Room, OrderParties | None], None]
# A pool, or a connection inside the caller's transaction.
Executor = asyncpg.Pool | asyncpg.Connection


class NotificationsNamespace(SecureNamespace):
    """Joins each connection's own rooms, and checks every joinRoom against the room policy."""

    def __init__(self, *, verifier: TokenVerifier, access: RoomAccess, limits: RateLimits) -> None:
        super().__init__(NAMESPACE, verifier=verifier, limits=limits)
        self._access = access
        self.room_entered: list[RoomEntered] = []

    def _entered(self, sid: str, room: Room, parties: OrderParties | None = None) -> None:
        for listener in self.room_entered:
            listener(sid, room, parties)

    async def connected(self, sid: str, identity: Identity) -> None:
        await self.enter_room(sid, room_for_user(identity.user_id))
        if identity.role == "kitchen" and identity.vendor_id:
            await self.enter_room(sid, room_for_vendor(identity.vendor_id))
            self._entered(sid, Room("vendor", identity.vendor_id))

    async def on_joinRoom(self, sid: str, room_name: Any = None) -> dict[str, Any]:
        identity = self.identity(sid)
        if identity is None:  # it may run after waiting behind the connection's replay
            return gone()
        try:
            room = await self._access.check(identity, room_name)
        except AccessDenied as exc:
            return ack_error(exc.code, exc.message)
        if not self.takes_room_turn(sid, room.name, joining=True):
            return self.superseded(room.name)  # a leaveRoom sent after it was handled first
        if not await enter_if_connected(self, sid, room.name):
            return gone()
        if room.kind != "order":
            self._entered(sid, room)
            return ack_ok(room=room.name)
        # Read after entering: a change committed from now on reaches the room live.
        try:
            snapshot = await self._access.current(room.key)
        except AccessDenied as exc:
            if self.last_room_turn(sid, room.name):
                await self.leave_room(sid, room.name)
            return ack_error(exc.code, exc.message)
        if not still_connected(self, sid):
            return gone()  # the disconnect took it out of every room
        if not self.still_wanted(sid, room.name):
            return self.superseded(room.name)  # left while the order was read
        try:
            parties = snapshot.parties if snapshot else None
            self._access.admit(self._connections[sid].identity, room, parties)
        except AccessDenied as exc:
            await self.leave_room(sid, room.name)  # the order changed hands since the check
            return ack_error(exc.code, exc.message)
        self._entered(sid, room, parties)
        return ack_ok(room=room.name, order=current_status_message(snapshot) if snapshot else None)

    async def on_leaveRoom(self, sid: str, room_name: Any = None) -> dict[str, Any]:
        identity = self._connections[sid].identity
        try:
            room = self._access.parse(room_name)
        except AccessDenied as exc:
            return ack_error(exc.code, exc.message)
        if room.name == room_for_user(identity.user_id):
            return ack_error("forbidden", "a connection always stays in its own user room")
        if self.takes_room_turn(sid, room.name, joining=False):
            await self.leave_room(sid, room.name)
        return ack_ok(room=room.name)


class InvalidNotification(ValueError):
    """A gateway send the log cannot store or clients cannot read; nothing was logged."""


def _text(value: object, name: str, *, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        wanted = "a non-empty string" if required else "a string or None"
        raise InvalidNotification(f"{name} must be {wanted} (got {type(value).__name__})")
    return value


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def _stored(payload: dict[str, Any]) -> str:
    """The payload as the log stores it (jsonb): JSON with string keys and no U+0000."""
    try:
        text = orjson.dumps(payload).decode()
    except orjson.JSONEncodeError as exc:
        raise InvalidNotification(f"not storable as JSON: {exc}") from None
    if _has_nul(payload):
        raise InvalidNotification("text may not contain U+0000 (PostgreSQL cannot store it)")
    return text


class NotificationGateway:
    """The seed's server-side API (`sendNotification`, `sendOrderStatusUpdate`).

    Each send appends an event to the log, as the database triggers and `notify_user` do: it is
    delivered by the listener of every node to Socket.IO and SSE alike, kept in the inbox and
    replayed to a client that reconnects with its last event id. Pass `connection` to send
    inside your own transaction (it is delivered only if that transaction commits).
    """

    def __init__(self, pool: asyncpg.Pool, *, order_ids: OrderIdFormat | None = None) -> None:
        """`order_ids`: how the orders id column prints its ids (as joinRoom parses them)."""
        self._pool = pool
        self._order_ids = order_ids if order_ids is not None else OrderIdFormat()

    async def send_notification(
        self,
        room: str | Sequence[str],
        notification: dict[str, Any],
        *,
        connection: Executor | None = None,
    ) -> int:
        """A `notification` to every connection in `room` (a name or a list); its event id.

        Raises InvalidRoom for a room no client can join and InvalidNotification for a
        notification that is not a dict of string `type`, `title`, `body` and a JSON object
        `data`, or holds U+0000; either way nothing is logged."""
        rooms = _rooms([room] if isinstance(room, str) else list(room), self._order_ids)
        if not isinstance(notification, dict):
            raise InvalidNotification("a notification is a dict")
        data = notification.get("data") or {}
        if not isinstance(data, dict):
            raise InvalidNotification("data must be a dict or None")
        payload = {
            "type": _text(notification.get("type"), "type"),
            "title": _text(notification.get("title"), "title"),
            "body": _text(notification.get("body"), "body"),
            "data": data,
        }
        if isinstance(room, str):
            payload["room"] = room
        order_id = rooms[0].key if len(rooms) == 1 and rooms[0].kind == "order" else None
        return await self._append(NOTIFICATION, rooms, payload, order_id, connection)

    async def send_order_status_update(
        self,
        order_id: str,
        status: str,
        *,
        previous_status: str | None = None,
        rooms: Sequence[str] = (),
        connection: Executor | None = None,
    ) -> int:
        """An `orderStatusUpdate` to the order's room (and `rooms`), and its SSE streams.

        Raises InvalidRoom for an order id or room no client can name and InvalidNotification
        for a status that is not a non-empty string (or holds U+0000); nothing is logged."""
        order = room_for_order(order_id)
        targets = _rooms([order, *(r for r in rooms if r != order)], self._order_ids)
        key = targets[0].key  # the id as the database prints it
        payload = {
            "orderId": key,
            "status": _text(status, "status", required=True),
            "previousStatus": _text(previous_status, "previous_status"),
        }
        return await self._append(ORDER_STATUS, targets, payload, key, connection)

    async def _append(
        self,
        kind: str,
        rooms: Sequence[Room],
        payload: dict[str, Any],
        order_id: str | None,
        connection: Executor | None,
    ) -> int:
        db = connection if connection is not None else self._pool
        event_id = await db.fetchval(
            "SELECT tiffin_rt.append_event($1, $2::text[], $3::jsonb, $4)",
            kind,
            [r.name for r in rooms],
            _stored(payload),
            order_id,
        )
        return int(event_id)


# The gateway of an app: `app[NOTIFICATION_GATEWAY].send_notification("user-42", {...})`.
NOTIFICATION_GATEWAY = web.AppKey("notification_gateway", NotificationGateway)


def _rooms(names: Sequence[str], order_ids: OrderIdFormat) -> list[Room]:
    """Room names as clients join them (an order's id only as the database prints it, so
    `order-02` is refused as joinRoom refuses it); ValueError (InvalidRoom) for any other."""
    if not names:
        raise InvalidRoom("name at least one room")
    return [parse_room(name, order_ids) for name in names]


def live_message(event: Event) -> tuple[str, dict[str, Any]] | None:
    """The Socket.IO event and payload a log event is delivered as, built once per event."""
    if event.kind == ORDER_STATUS:
        return "orderStatusUpdate", order_status_message(event)
    if event.kind == NOTIFICATION:
        return "notification", notification_message(event)
    if event.kind == NOTIFICATION_READ:
        return "notificationRead", read_message(event)
    if event.kind == PAYMENT_STATUS:
        return "paymentStatusUpdate", payment_status_message(event)
    if event.kind == NOTIFICATION_DIGEST:
        return "notificationDigest", digest_message(event, live_message)
    return None


class DeliverySink:
    """Delivers log events to this node's clients, in log order, one message per event:
    encoded once per wire format (the order's SSE event and chunk, the Socket.IO frame and
    packet) and handed to the hub for the order's SSE streams and the /notifications rooms the
    event names: order status updates, payments, notifications and reads (so a read never
    arrives after a notification committed later). Streams and WebSocket connections are
    written (or queued for the end of the tick) before `deliver` returns; only packets for
    python-engineio's own sockets are awaited."""

    def __init__(
        self, fanout: RoomFanout, *, terminal_statuses: Sequence[str], hold: Hold | None = None
    ) -> None:
        self._fanout = fanout
        self._hub = fanout.hub
        self._terminal = frozenset(terminal_statuses)
        self._hold = hold

    def deliver(self, events: Sequence[Event]) -> Awaitable[None] | None:
        return send_in_order(events, self._send)

    def _send(self, event: Event) -> Awaitable[None] | None:
        live = live_message(event)
        if live is None:
            return None
        name, payload = live
        # connections being replayed to get this event from their replay instead
        skip = self._hold(event) if self._hold is not None else []
        rooms: Sequence[str] = event.rooms
        held = held_rooms(event)
        if held:
            # batching: these users' connections get it in their next notificationDigest
            if set(rooms) <= set(held):
                rooms = ()
            else:
                fanout = self._fanout
                skip = [*skip, *(c for room in held for c in fanout.clients(NAMESPACE, room))]
        stream_room = room_for_order(event.order_id) if event.order_id is not None else None
        if stream_room is not None and not self._hub.has_room(SSE, stream_room):
            stream_room = None
        if stream_room is None and not rooms:
            return None
        # The payload serialised once: the SSE event and the Socket.IO packet are built around
        # the same JSON bytes (a log event's payload is JSON: no binary attachment to split).
        body = jsonwire.dumps(payload)
        data = chunk = frame = b""
        final = False
        packet = None
        if stream_room is not None:
            parts = stream_parts(event, body, self._terminal)
            if parts is None:
                stream_room = None
            else:
                data, chunk, final = parts
        if rooms:
            frame, packet = self._fanout.json_frames(name, body, NAMESPACE)
        message = Message(event.id, data, final, chunk, name, frame, packet)
        if stream_room is not None:
            self._hub.publish(SSE, stream_room, message)
        return self._hub.publish(NAMESPACE, rooms, message, skip) if rooms else None
