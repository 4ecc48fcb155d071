"""/notifications: replay on reconnect, the inbox on connect, markRead, and read sync.

A connection may present `lastEventId` in its auth payload. It then gets every event it missed
for its own rooms at once, and for an order room when it joins it again, followed by live
events with no gap and no duplicate (see core.replay.Handoffs). A connection that does not
resume gets the inbox instead (`inbox.on_connect`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import socketio

from tiffin_rt.auth import Identity
from tiffin_rt.config import Settings
from tiffin_rt.core.errors import ack_error, ack_ok
from tiffin_rt.core.events import (
    NOTIFICATION,
    ORDER_STATUS,
    Event,
    notification_message,
    order_status_message,
)
from tiffin_rt.core.inbox import (
    NOTIFICATION_READ,
    InvalidRead,
    ids_to_mark,
    inbox_message,
    read_message,
)
from tiffin_rt.core.replay import Handoffs, InvalidEventId, parse_last_event_id, resumable
from tiffin_rt.db import inbox, replay
from tiffin_rt.db.errors import DB_ERRORS
from tiffin_rt.transports.socketio.fanout import RoomFanout
from tiffin_rt.transports.socketio.notifications import NAMESPACE, NotificationsNamespace

log = logging.getLogger(__name__)


def live_message(event: Event) -> tuple[str, dict[str, Any]] | None:
    """The Socket.IO event a log event is delivered as, live or replayed."""
    if event.kind == ORDER_STATUS:
        return "orderStatusUpdate", order_status_message(event)
    if event.kind == NOTIFICATION:
        return "notification", notification_message(event)
    if event.kind == NOTIFICATION_READ:
        return "notificationRead", read_message(event)
    return None


@dataclass(slots=True)
class _Connection:
    last_event_id: int | None
    ceiling: int | None
    invalid: str | None = None
    user_id: str = ""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Task[None] | None = None


class SocketResume:
    """Per-connection resume state for /notifications; one per application."""

    CONNECT_WAIT_SECONDS = 5.0

    def __init__(
        self,
        sio: socketio.AsyncServer,
        pool: asyncpg.Pool,
        settings: Settings,
        *,
        cursor: Callable[[], int | None],
    ) -> None:
        """`cursor`: the last event id the listener handed to the router, None before any."""
        self._sio = sio
        self._pool = pool
        self._cursor = cursor
        self._inbox = settings.inbox
        self._max_events = settings.replay.max_events
        self._connections: dict[str, _Connection] = {}
        self.handoffs = Handoffs(self._is_member)

    # -- helpers ---------------------------------------------------------------------------

    def _is_member(self, sid: str, room: str) -> bool:
        members = self._sio.manager.rooms.get(NAMESPACE, {}).get(room)
        return members is not None and sid in members

    def _rooms(self, sid: str) -> list[str]:
        return [r for r in self._sio.manager.get_rooms(sid, NAMESPACE) if r != sid]

    async def _emit(self, sid: str, name: str, payload: Any) -> None:
        await self._sio.emit(name, payload, to=sid, namespace=NAMESPACE)

    async def _paced(self, sid: str) -> None:
        """Before each replayed event: wait while the client has not taken what it was sent."""
        manager = self._sio.manager
        if isinstance(manager, RoomFanout):
            await manager.wait_for_room(sid, NAMESPACE)

    async def _emit_events(self, sid: str, events: Sequence[Event]) -> None:
        for event in events:
            message = live_message(event)
            if message is not None:
                await self._paced(sid)
                await self._emit(sid, *message)

    # -- connection lifecycle --------------------------------------------------------------

    def prepare(self, sid: str, auth: object) -> None:
        """Before the connection enters its rooms: parse lastEventId, start holding events."""
        raw = auth.get("lastEventId") if isinstance(auth, dict) else None
        ceiling = self._cursor()
        try:
            last = parse_last_event_id(raw)
            conn = _Connection(last, ceiling)
        except InvalidEventId as exc:
            conn = _Connection(None, ceiling, invalid=str(exc))
        self._connections[sid] = conn
        # Always held until `position` is out, so it comes before every live event.
        self.handoffs.begin(sid, ceiling, floor=conn.last_event_id or 0)

    def start(self, sid: str, identity: Identity) -> None:
        """After the connect handler accepted: replay, or send the inbox, once connected."""
        conn = self._connections.get(sid)
        if conn is None:
            return
        conn.user_id = identity.user_id
        conn.task = asyncio.create_task(self._after_connect(sid, conn), name=f"resume-{sid}")

    def forget(self, sid: str) -> None:
        conn = self._connections.pop(sid, None)
        self.handoffs.forget(sid)
        if conn is not None and conn.task is not None and conn.task is not asyncio.current_task():
            conn.task.cancel()

    async def close(self) -> None:
        tasks = [c.task for c in self._connections.values() if c.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _wait_connected(self, sid: str) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.CONNECT_WAIT_SECONDS
        while not self._sio.manager.is_connected(sid, NAMESPACE):
            if sid not in self._connections or loop.time() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    async def _after_connect(self, sid: str, conn: _Connection) -> None:
        try:
            await self._catch_up(sid, conn)
        finally:
            conn.task = (
                None  # a finished task (and its frame) is not kept for the connection's life
            )

    async def _catch_up(self, sid: str, conn: _Connection) -> None:
        if not await self._wait_connected(sid):
            self.handoffs.forget(sid)
            return
        async with conn.lock:
            try:
                if conn.invalid is not None:
                    await self._resync(sid, "invalid", conn.invalid, conn)
                elif conn.last_event_id is not None:
                    await self._replay(sid, conn, rooms=self._rooms(sid))
                await self._send_inbox(sid, conn)
            except DB_ERRORS as exc:
                log.warning("resuming connection %s failed: %r", sid, exc)
                await self._resync(sid, "unavailable", "the event log could not be read", conn)
            finally:
                # Before any live event: a client that hears nothing else still has a position.
                await self._emit(sid, "position", {"eventId": self._position(conn)})
                await self._release(sid)

    def _position(self, conn: _Connection) -> int | None:
        """Every event of the connection's rooms after this id reaches it (live or replayed)."""
        known = [i for i in (conn.ceiling, conn.last_event_id) if i is not None]
        return max(known) if known else None

    async def _release(self, sid: str) -> None:
        """Send what was held back during the replay, then let live events through."""
        while batch := self.handoffs.release(sid):
            await self._emit_events(sid, batch)

    # -- replay ----------------------------------------------------------------------------

    async def _resync(
        self, sid: str, reason: str, message: str, conn: _Connection, room: str | None = None
    ) -> None:
        payload: dict[str, Any] = {
            "reason": reason,
            "message": message,
            "lastEventId": conn.last_event_id,
            "latestEventId": self._cursor(),
        }
        if room is not None:
            payload["room"] = room
        else:
            conn.last_event_id = None  # reloaded from scratch: later joins replay nothing
            self.handoffs.drop_floor(sid)
        await self._emit(sid, "resync", payload)

    async def _replay(
        self,
        sid: str,
        conn: _Connection,
        *,
        rooms: Sequence[str],
        exclude: Sequence[str] = (),
        room: str | None = None,
    ) -> None:
        """Send the missed events of `rooms`; `room` names the joined room a resync is about."""
        assert conn.last_event_id is not None
        pool = self._pool
        bounds = await replay.log_bounds(pool)
        if not resumable(conn.last_event_id, bounds):
            await self._resync(
                sid, "expired", "events after lastEventId are no longer kept", conn, room
            )
            return
        events = await replay.events_for_rooms(
            pool,
            after=conn.last_event_id,
            ceiling=conn.ceiling,
            rooms=rooms,
            exclude_rooms=exclude,
            limit=self._max_events + 1,
        )
        if len(events) > self._max_events:
            await self._resync(
                sid, "too_many", f"more than {self._max_events} events were missed", conn, room
            )
            return
        self.handoffs.record_sent(sid, (e.id for e in events))
        await self._emit_events(sid, events)

    async def joining(self, sid: str, join: Awaitable[dict[str, Any]]) -> dict[str, Any]:
        """Wraps joinRoom: a resumed connection gets the room's missed events, then live ones."""
        conn = self._connections.get(sid)
        if conn is None:
            return await join
        # Under the lock: the connect-time replay may still run, and its resync clears the
        # connection's last id (so a join racing it replays nothing).
        async with conn.lock:
            last_event_id = conn.last_event_id
            if last_event_id is None or sid not in self._connections:
                ack = await join
                if ack.get("ok"):
                    # Read after joining: every later event of the room reaches it live.
                    ack["eventId"] = self._cursor()
                return ack
            before = set(self._rooms(sid))
            conn.ceiling = self._cursor()
            self.handoffs.begin(sid, conn.ceiling, floor=last_event_id)
            try:
                ack = await join
                room = ack.get("room") if ack.get("ok") else None
                if isinstance(room, str) and room not in before:
                    await self._replay(sid, conn, rooms=[room], exclude=sorted(before), room=room)
            except DB_ERRORS as exc:
                log.warning("replaying a room for %s failed: %r", sid, exc)
                await self._resync(sid, "unavailable", "the event log could not be read", conn)
            finally:
                await self._release(sid)
            if ack.get("ok"):
                ack["eventId"] = self._position(conn)
            return ack

    # -- inbox -----------------------------------------------------------------------------

    async def _send_inbox(self, sid: str, conn: _Connection) -> None:
        mode = self._inbox.on_connect
        if mode == "off":
            return
        pool = self._pool
        if mode == "latest":
            items = await inbox.page(pool, conn.user_id, limit=self._inbox.on_connect_limit)
            self.handoffs.record_sent(sid, (i.id for i in items))
            await self._emit(
                sid,
                "inbox",
                {
                    "unread": await inbox.unread_count(pool, conn.user_id),
                    "notifications": [inbox_message(i) for i in items],
                },
            )
            return
        unread = await inbox.unread_count(pool, conn.user_id)
        if conn.last_event_id is None and unread:
            # Not bounded by the ceiling: the inbox outlives the log, so its ids need not be
            # anywhere near the listener's cursor. Live copies of these are dropped by id.
            items = await inbox.newest_unread(pool, conn.user_id, self._inbox.on_connect_limit)
            self.handoffs.record_sent(sid, (i.id for i in items))
            for item in items:
                await self._paced(sid)
                await self._emit(sid, "notification", inbox_message(item))
        await self._emit(sid, "unreadCount", {"unread": unread})

    async def mark_read(self, sid: str, argument: object) -> dict[str, Any]:
        conn = self._connections.get(sid)
        if conn is None or not conn.user_id:
            return ack_error("unauthorized", "not connected")
        try:
            ids = ids_to_mark(argument)
        except InvalidRead as exc:
            return ack_error("invalid_payload", str(exc))
        try:
            result = await inbox.mark_read(self._pool, conn.user_id, ids)
        except DB_ERRORS as exc:
            log.warning("markRead for %s failed: %r", conn.user_id, exc)
            return ack_error("unavailable", "the inbox could not be updated; try again")
        return ack_ok(marked=result.marked, unread=result.unread)


class ResumableNotificationsNamespace(NotificationsNamespace):
    """/notifications with replay, the inbox on connect, and markRead."""

    def __init__(self, *, resume: SocketResume, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._resume = resume

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        self._resume.prepare(sid, auth)
        try:
            await super().on_connect(sid, environ, auth)
        except BaseException:
            self._resume.forget(sid)
            raise
        identity = self.identity(sid)
        if identity is None:
            self._resume.forget(sid)
            return
        self._resume.start(sid, identity)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self._resume.forget(sid)
        await super().on_disconnect(sid, reason)

    async def on_joinRoom(self, sid: str, room_name: Any = None) -> dict[str, Any]:
        return await self._resume.joining(sid, super().on_joinRoom(sid, room_name))

    async def on_markRead(self, sid: str, argument: Any = None) -> dict[str, Any]:
        return await self._resume.mark_read(sid, argument)
