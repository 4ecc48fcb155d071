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
from typing import Any

import asyncpg
import socketio

from tiffin_rt import metrics
from tiffin_rt.auth import Identity
from tiffin_rt.config import Settings
from tiffin_rt.core.digest import held_rooms
from tiffin_rt.core.errors import ack_error, ack_ok
from tiffin_rt.core.events import (
    Event,
)
from tiffin_rt.core.inbox import (
    InboxItem,
    InvalidRead,
    ids_to_mark,
    inbox_message,
)
from tiffin_rt.core.replay import Handoffs, InvalidEventId, parse_last_event_id, resumable
from tiffin_rt.db import inbox, replay
from tiffin_rt.db.digests import decide_holds, digests_by_id, hold_events
from tiffin_rt.db.errors import DB_ERRORS
from tiffin_rt.transports.socketio.client import SocketClient
from tiffin_rt.transports.socketio.fanout import RoomFanout
from tiffin_rt.transports.socketio.notifications import (
    NAMESPACE,
    NotificationsNamespace,
    live_message,
)
from tiffin_rt.transports.socketio.secure import Connection

log = logging.getLogger(__name__)


class ResumingConnection(Connection):
    """A /notifications connection: what SecureNamespace keeps, and where it resumes from."""

    __slots__ = ("ceiling", "client", "gone", "invalid", "last_event_id", "lock", "task")

    def __init__(self, sid: str, identity: Identity, client: SocketClient) -> None:
        super().__init__(sid, identity)
        self.client = client  # the connection in the hub, as the replay handoffs hold it
        self.last_event_id: int | None = None
        self.ceiling: int | None = None
        self.invalid: str | None = None  # why lastEventId was refused
        self.lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None
        self.gone = False


class SocketResume:
    """Replay, the inbox on connect and markRead for /notifications connections."""

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
        self._fanout: RoomFanout = sio.manager
        self._pool = pool
        self._cursor = cursor
        self._inbox = settings.inbox
        self._batching = settings.batching
        self._max_events = settings.replay.max_events
        self.handoffs: Handoffs[SocketClient] = Handoffs(self._is_member)

    # -- helpers ---------------------------------------------------------------------------

    def client(self, sid: str) -> SocketClient:
        """The hub's client of a connection being accepted (registered when it connected)."""
        client = self._fanout.client(sid, NAMESPACE)
        if client is None:
            raise RuntimeError(f"{NAMESPACE} connection {sid} is in no room of the hub")
        return client

    def _is_member(self, client: SocketClient, room: str) -> bool:
        return self._fanout.hub.is_member(NAMESPACE, room, client)

    def _rooms(self, sid: str) -> list[str]:
        return self._fanout.rooms_of(sid, NAMESPACE)

    async def _emit(self, sid: str, name: str, payload: Any) -> None:
        await self._sio.emit(name, payload, to=sid, namespace=NAMESPACE)

    async def _paced(self, sid: str) -> None:
        """Before each replayed event: wait while the client has not taken what it was sent."""
        await self._fanout.wait_for_room(sid, NAMESPACE)

    async def _emit_events(self, sid: str, events: Sequence[Event]) -> None:
        for event in events:
            if any(self._fanout.in_room(sid, NAMESPACE, room) for room in held_rooms(event)):
                continue  # batching: it reaches this connection in a notificationDigest
            message = live_message(event)
            if message is not None:
                await self._paced(sid)
                await self._emit(sid, *message)

    # -- connection lifecycle --------------------------------------------------------------

    def prepare(self, conn: ResumingConnection, auth: object) -> None:
        """Before the connection enters its rooms: parse lastEventId, start holding events."""
        raw = auth.get("lastEventId") if isinstance(auth, dict) else None
        conn.ceiling = self._cursor()
        try:
            conn.last_event_id = parse_last_event_id(raw)
        except InvalidEventId as exc:
            conn.invalid = str(exc)
        # Always held until `position` is out, so it comes before every live event.
        self.handoffs.begin(conn.client, conn.ceiling, floor=conn.last_event_id or 0)

    def start(self, conn: ResumingConnection) -> None:
        """After the connect handler accepted: replay, or send the inbox, once connected."""
        conn.task = asyncio.create_task(
            self._after_connect(conn.sid, conn), name=f"resume-{conn.sid}"
        )

    def forget(self, conn: ResumingConnection) -> None:
        conn.gone = True
        self.handoffs.forget(conn.client)
        if conn.task is not None and conn.task is not asyncio.current_task():
            conn.task.cancel()

    async def _wait_connected(self, sid: str, conn: ResumingConnection) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.CONNECT_WAIT_SECONDS
        while not self._sio.manager.is_connected(sid, NAMESPACE):
            if conn.gone or loop.time() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    async def _after_connect(self, sid: str, conn: ResumingConnection) -> None:
        try:
            await self._catch_up(sid, conn)
        finally:
            conn.task = (
                None  # a finished task (and its frame) is not kept for the connection's life
            )

    async def _catch_up(self, sid: str, conn: ResumingConnection) -> None:
        if not await self._wait_connected(sid, conn):
            self.handoffs.forget(conn.client)
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
                await self._release(conn)

    def _position(self, conn: ResumingConnection) -> int | None:
        """Every event of the connection's rooms after this id reaches it (live or replayed)."""
        known = [i for i in (conn.ceiling, conn.last_event_id) if i is not None]
        return max(known) if known else None

    async def _release(self, conn: ResumingConnection) -> None:
        """Send what was held back during the replay, then let live events through."""
        while batch := self.handoffs.release(conn.client):
            await self._emit_events(conn.sid, batch)

    # -- replay ----------------------------------------------------------------------------

    async def _resync(
        self, sid: str, reason: str, message: str, conn: ResumingConnection, room: str | None = None
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
            self.handoffs.drop_floor(conn.client)
        metrics.resynced("socketio", reason)
        await self._emit(sid, "resync", payload)

    async def _replay(
        self,
        sid: str,
        conn: ResumingConnection,
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
        await hold_events(pool, events, self._batching)  # as the listener decided, or will
        self.handoffs.record_sent(conn.client, (e.id for e in events))
        metrics.replayed("socketio", len(events))
        await self._emit_events(sid, events)

    async def joining(
        self, conn: ResumingConnection, join: Awaitable[dict[str, Any]]
    ) -> dict[str, Any]:
        """Wraps joinRoom: a resumed connection gets the room's missed events, then live ones."""
        sid = conn.sid
        # Under the lock: the connect-time replay may still run, and its resync clears the
        # connection's last id (so a join racing it replays nothing).
        async with conn.lock:
            last_event_id = conn.last_event_id
            if last_event_id is None or conn.gone:
                ack = await join
                if ack.get("ok"):
                    # Read after joining: every later event of the room reaches it live.
                    ack["eventId"] = self._cursor()
                return ack
            before = set(self._rooms(sid))
            conn.ceiling = self._cursor()
            self.handoffs.begin(conn.client, conn.ceiling, floor=last_event_id)
            try:
                ack = await join
                room = ack.get("room") if ack.get("ok") else None
                if isinstance(room, str) and room not in before:
                    await self._replay(sid, conn, rooms=[room], exclude=sorted(before), room=room)
            except DB_ERRORS as exc:
                log.warning("replaying a room for %s failed: %r", sid, exc)
                await self._resync(sid, "unavailable", "the event log could not be read", conn)
            finally:
                await self._release(conn)
            if ack.get("ok"):
                ack["eventId"] = self._position(conn)
            return ack

    # -- inbox -----------------------------------------------------------------------------

    async def _send_inbox(self, sid: str, conn: ResumingConnection) -> None:
        mode = self._inbox.on_connect
        if mode == "off":
            return
        pool, user_id = self._pool, conn.identity.user_id
        if mode == "latest":
            items = await inbox.page(pool, user_id, limit=self._inbox.on_connect_limit)
            self.handoffs.record_sent(conn.client, (i.id for i in items))
            await self._emit(
                sid,
                "inbox",
                {
                    "unread": await inbox.unread_count(pool, user_id),
                    "notifications": [inbox_message(i) for i in items],
                },
            )
            return
        unread = await inbox.unread_count(pool, user_id)
        if conn.last_event_id is None and unread:
            # Not bounded by the ceiling: the inbox outlives the log, so its ids need not be
            # anywhere near the listener's cursor. Live copies of these are dropped by id.
            items = await inbox.newest_unread(pool, user_id, self._inbox.on_connect_limit)
            sent = await self._as_live(conn, items)
            self.handoffs.record_sent(conn.client, (event_id for event_id, _ in sent))
            for _, message in sent:
                await self._paced(sid)
                await self._emit(sid, *message)
        await self._emit(sid, "unreadCount", {"unread": unread})

    async def _as_live(
        self, conn: ResumingConnection, items: Sequence[InboxItem]
    ) -> list[tuple[int, tuple[str, dict[str, Any]]]]:
        """The unread items as the live channel gives them (README: Batching): one held for a
        digest comes as that digest (once), or not at all while its digest is still to come
        live; an item after the ceiling that batching counts is left to live delivery."""
        ceiling, user_id, pool = conn.ceiling, conn.identity.user_id, self._pool
        if ceiling is None:
            return [(i.id, ("notification", inbox_message(i))) for i in items]
        batching = self._batching
        known = await decide_holds(
            pool,
            [i.id for i in items if i.id <= ceiling],
            window=batching.window_seconds if batching.enabled else None,
            max_per_window=batching.max_per_window,
        )
        known += await decide_holds(
            pool, [i.id for i in items if i.id > ceiling], window=None, max_per_window=1
        )
        holds = {h.event_id: h for h in known if h.user_id == user_id}
        sent: list[tuple[int, tuple[str, dict[str, Any]]]] = []
        digests: set[int] = set()
        for item in items:
            hold = holds.get(item.id)
            if hold is None or (item.id <= ceiling and not hold.held):
                sent.append((item.id, ("notification", inbox_message(item))))
            elif item.id <= ceiling and hold.digest_id is not None and hold.digest_id <= ceiling:
                digests.add(hold.digest_id)
        if digests:
            for event in await digests_by_id(pool, digests):
                message = live_message(event)
                if message is not None:
                    sent.append((event.id, message))
        return sorted(sent, key=lambda pair: pair[0])

    async def mark_read(self, conn: ResumingConnection, argument: object) -> dict[str, Any]:
        try:
            ids = ids_to_mark(argument)
        except InvalidRead as exc:
            return ack_error("invalid_payload", str(exc))
        try:
            result = await inbox.mark_read(self._pool, conn.identity.user_id, ids)
        except DB_ERRORS as exc:
            log.warning("markRead for %s failed: %r", conn.identity.user_id, exc)
            return ack_error("unavailable", "the inbox could not be updated; try again")
        return ack_ok(marked=result.marked, unread=result.unread)


class ResumableNotificationsNamespace(NotificationsNamespace):
    """/notifications with replay, the inbox on connect, and markRead."""

    def __init__(self, *, resume: SocketResume, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._resume = resume

    def open_connection(self, sid: str, identity: Identity, auth: object) -> ResumingConnection:
        conn = ResumingConnection(sid, identity, self._resume.client(sid))
        self._resume.prepare(conn, auth)  # before `connected` enters the connection's rooms
        return conn

    def _resuming(self, sid: str) -> ResumingConnection | None:
        conn = self.connection(sid)
        return conn if isinstance(conn, ResumingConnection) else None

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        await super().on_connect(sid, environ, auth)
        conn = self._resuming(sid)
        if conn is not None:
            self._resume.start(conn)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        conn = self._resuming(sid)
        if conn is not None:
            self._resume.forget(conn)
        await super().on_disconnect(sid, reason)

    async def close(self) -> None:
        """At shutdown: end the resume tasks still running, then the namespace's timers."""
        tasks = [c.task for c in self._connections.values() if isinstance(c, ResumingConnection)]
        for task in tasks:
            if task is not None:
                task.cancel()
        for task in tasks:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await super().close()

    async def on_joinRoom(self, sid: str, room_name: Any = None) -> dict[str, Any]:
        join = super().on_joinRoom(sid, room_name)
        conn = self._resuming(sid)
        return await (join if conn is None else self._resume.joining(conn, join))

    async def on_markRead(self, sid: str, argument: Any = None) -> dict[str, Any]:
        conn = self._resuming(sid)
        if conn is None:
            return ack_error("unauthorized", "not connected")
        return await self._resume.mark_read(conn, argument)
