"""A Socket.IO namespace base that every namespace (/notifications, /support) builds on.

It authenticates the connection from the auth payload's token, enforces the connection and
event rate limits, answers malformed or unknown events with an error acknowledgement, and
tracks token expiry: `tokenExpiring` before, `refreshToken` to extend, a disconnect at expiry.
Subclasses write `on_<event>(sid, ...)` handlers and the `connected`/`disconnected` hooks.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Coroutine
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import socketio

from tiffin_rt import metrics
from tiffin_rt.auth import AuthError, Identity, TokenVerifier
from tiffin_rt.background import BackgroundTasks
from tiffin_rt.core.errors import ClientError, ack_error, ack_ok
from tiffin_rt.db.errors import DB_ERRORS, INPUT_ERRORS, input_error_name
from tiffin_rt.logcontext import CONNECTION_ID
from tiffin_rt.ratelimit import RateLimits
from tiffin_rt.transports.socketio.deadlines import Deadlines

log = logging.getLogger(__name__)

# Events python-socketio dispatches itself; they are not client events.
_LIFECYCLE = frozenset({"connect", "disconnect"})
# Names a client may never use for an event: python-socketio's reserved names (server and
# client: connect, disconnect, connect_error, __disconnect_final) and socket.io's
# (disconnecting, newListener, removeListener). Sent by a client they are unknown events.
RESERVED_EVENTS = frozenset(
    {
        "connect",
        "connect_error",
        "disconnect",
        "__disconnect_final",
        "disconnecting",
        "newListener",
        "removeListener",
    }
)


class Arity:
    """How many positional arguments a handler takes, read once from its signature: the same
    answer as `inspect.signature(handler).bind(*args)` for positional arguments, which cost
    about 40 µs on every client event (bench/client_event_micro.py)."""

    __slots__ = ("least", "most")

    def __init__(self, handler: Any) -> None:
        least, most = 0, 0
        unbounded = False
        for p in inspect.signature(handler).parameters.values():
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                most += 1
                if p.default is p.empty:
                    least = most
            elif p.kind is p.VAR_POSITIONAL:
                unbounded = True
            elif p.kind is p.KEYWORD_ONLY and p.default is p.empty:
                least, most = 1, 0  # nothing positional can call it
                break
        self.least = least
        self.most = -1 if unbounded else most

    def admits(self, count: int) -> bool:
        return self.least <= count and (self.most < 0 or count <= self.most)


def refused(code: str, message: str) -> socketio.exceptions.ConnectionRefusedError:
    """Reaches the client as connect_error with data {"code", "message"}."""
    return socketio.exceptions.ConnectionRefusedError(message, {"code": code, "message": message})


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def client_address(environ: dict[str, Any]) -> str:
    """The peer's address, kept in the connection's environ (see server.SocketIOServer)."""
    return str(environ.get("REMOTE_ADDR") or "unknown")


# Which of its connection's events the running handler answers: 1 for the first the client
# sent, 2 for the next, ... (each event runs in a task of its own, started in arrival order;
# 0 outside a client event).
EVENT_TURN: ContextVar[int] = ContextVar("tiffin_rt_event_turn", default=0)

# Rooms whose last applied change a connection remembers (the oldest forgotten past this).
MAX_ROOM_TURNS = 64


class Connection:
    """Everything a namespace keeps about one authenticated connection, in one place: created
    on connect (SecureNamespace.open_connection), dropped on disconnect."""

    __slots__ = ("identity", "received", "room_turns", "sid", "warned")

    def __init__(self, sid: str, identity: Identity) -> None:
        self.sid = sid
        self.identity = identity
        # `tokenExpiring` was sent: the next expiry step disconnects.
        self.warned = False
        # Client events received so far (each handler's EVENT_TURN).
        self.received = 0
        # Each room's last applied change: (the turn the client sent it in, a join?).
        self.room_turns: dict[str, tuple[int, bool]] | None = None

    def takes_room_turn(self, room: str, turn: int, joining: bool) -> bool:
        """May a join (or leave) of `room` the client sent as event `turn` apply now?

        Handlers run concurrently, so a join that reads the database is still running when the
        leave sent right after it is done. The change the client sent last wins: a leave it
        sent later has applied, so this join does not (nor does a leave after a later join);
        otherwise this change is noted as the room's last.
        """
        if turn <= 0:
            return True
        turns = self.room_turns
        if turns is None:
            turns = self.room_turns = {}
        last = turns.pop(room, None)
        if last is not None and last[0] > turn:
            turns[room] = last
            return joining and last[1]  # a later join stands either way
        turns[room] = (turn, joining)
        if len(turns) > MAX_ROOM_TURNS:
            del turns[next(iter(turns))]
        return True

    def still_wanted(self, room: str, turn: int) -> bool:
        """Does the join sent as event `turn` still stand (no later leave of `room` applied)?"""
        last = self.room_turns.get(room) if self.room_turns is not None else None
        return turn <= 0 or last is None or last[0] <= turn or last[1]

    def last_room_turn(self, room: str, turn: int) -> bool:
        """Is event `turn` still the last change of `room` that applied?"""
        last = self.room_turns.get(room) if self.room_turns is not None else None
        return turn <= 0 or last is None or last[0] == turn


class SecureNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    """Authenticated, rate-limited namespace with token expiry and refresh."""

    def __init__(
        self,
        namespace: str,
        *,
        verifier: TokenVerifier,
        limits: RateLimits,
    ) -> None:
        super().__init__(namespace)
        self._verifier = verifier
        self._limits = limits
        self._warning = verifier.settings.expiry_warning
        self._leeway = verifier.settings.leeway
        self._connections: dict[str, Connection] = {}
        # One loop timer for every connection's next expiry step (see deadlines.py).
        self._expiry: Deadlines[Connection] = Deadlines(self._expiry_due)
        self._background = BackgroundTasks(f"{namespace} namespace")
        # Each handler's arity by event name: only names of this class's coroutine handlers
        # are kept, so a client's made-up names cannot grow it.
        self._arities: dict[str, Arity] = {}

    # -- hooks for subclasses ------------------------------------------------------------

    async def connected(self, sid: str, identity: Identity) -> None:
        """Called once the connection is authenticated (join the user's own rooms here)."""

    async def disconnected(self, sid: str, identity: Identity) -> None:
        """Called when an authenticated connection ends."""

    def open_connection(self, sid: str, identity: Identity, auth: object) -> Connection:
        """The state of a connection just authenticated, before `connected` (a subclass keeps
        more per connection by returning a subclass of Connection)."""
        return Connection(sid, identity)

    # -- state ---------------------------------------------------------------------------

    def connection(self, sid: str) -> Connection | None:
        return self._connections.get(sid)

    def identity(self, sid: str) -> Identity | None:
        conn = self._connections.get(sid)
        return conn.identity if conn is not None else None

    def takes_room_turn(self, sid: str, room: str, *, joining: bool) -> bool:
        """May the join or leave of `room` this client event asks for apply now? False when
        a leave of it the client sent later has applied (Connection.takes_room_turn)."""
        conn = self._connections.get(sid)
        return conn is None or conn.takes_room_turn(room, EVENT_TURN.get(), joining)

    def still_wanted(self, sid: str, room: str) -> bool:
        """Does the join this client event asks for still stand (no later leave applied)?"""
        conn = self._connections.get(sid)
        return conn is None or conn.still_wanted(room, EVENT_TURN.get())

    def last_room_turn(self, sid: str, room: str) -> bool:
        """Is this client event still the last change of `room` that applied?"""
        conn = self._connections.get(sid)
        return conn is None or conn.last_room_turn(room, EVENT_TURN.get())

    @staticmethod
    def superseded(room: str) -> dict[str, Any]:
        """The answer to a join overtaken by a leave of the same room the client sent after
        it: the later request stands."""
        return ack_error("superseded", f"a later leave of {room} was handled first")

    async def close(self) -> None:
        """Stop the expiry timers (at application shutdown)."""
        self._expiry.clear()
        await self._background.cancel_all()

    # -- connection lifecycle ------------------------------------------------------------

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        if not self._limits.allow_connect(client_address(environ)):
            metrics.refused(self.namespace, "rate_limited")
            raise refused("rate_limited", "too many connection attempts; slow down")
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            identity = self._verifier.verify(token)
        except AuthError as exc:
            metrics.refused(self.namespace, exc.code)
            log.debug("%s connection refused: %s", self.namespace, exc.message)
            raise refused(exc.code, exc.message) from None
        if not await self._limits.open_user_connection(identity.user_id):
            metrics.refused(self.namespace, "connections_per_user")
            raise refused("rate_limited", "too many open connections for this user")
        if self.server.manager.eio_sid_from_sid(sid, self.namespace) is None:
            # Gone while a shared count was asked (cluster.broker): its disconnect found nothing.
            await self._limits.close_user_connection(identity.user_id)
            return
        conn = self.open_connection(sid, identity, auth)
        self._connections[sid] = conn
        self._watch_expiry(conn)
        try:
            await self.connected(sid, identity)
        except BaseException:
            await self.on_disconnect(sid)  # refused half way: nothing of it is kept
            raise
        metrics.connected(self.namespace)
        log.debug("%s: user %s (%s) connected", self.namespace, identity.user_id, identity.role)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        conn = self._connections.pop(sid, None)
        if conn is None:
            return
        self._expiry.cancel(conn)
        await self._limits.close_user_connection(conn.identity.user_id)
        await self.disconnected(sid, conn.identity)

    async def on_refreshToken(self, sid: str, data: Any = None) -> dict[str, Any]:
        """Accepts {"token": "<jwt>"} (or the bare token) for the same user."""
        conn = self._connections[sid]
        current = conn.identity
        token = data.get("token") if isinstance(data, dict) else data
        if not isinstance(token, str) or not token:
            return ack_error("invalid_payload", 'refreshToken takes {"token": "<jwt>"}')
        try:
            fresh = self._verifier.verify(token)
        except AuthError as exc:
            return ack_error(exc.code, exc.message)
        if (fresh.user_id, fresh.role, fresh.vendor_id) != (
            current.user_id,
            current.role,
            current.vendor_id,
        ):
            return ack_error("forbidden", "the new token is for another user or role")
        conn.identity = fresh
        self._watch_expiry(conn)
        return ack_ok(expiresAt=_iso(fresh.expires_at) if fresh.expires_at else None)

    # -- dispatch --------------------------------------------------------------------------

    async def trigger_event(self, event: str, *args: Any) -> Any:
        """python-socketio's own connect/disconnect (client events come to client_event)."""
        CONNECTION_ID.set(args[0] if args else None)  # each event runs in a task of its own
        if event in _LIFECYCLE:
            return await super().trigger_event(event, *args)
        return await self.client_event(event, *args)

    async def client_event(self, event: Any, *args: Any) -> Any:
        """An event a client sent: checked, rate limited, then its `on_<event>` handler."""
        sid = args[0]
        conn = self._connections.get(sid)
        if conn is None:
            return ack_error("unauthorized", "not connected")
        conn.received += 1  # before any await: the order the client sent its events in
        EVENT_TURN.set(conn.received)
        handler = None
        if (
            isinstance(event, str)
            and event not in RESERVED_EVENTS
            and event.isidentifier()
            and not event.startswith("_")
        ):
            handler = getattr(self, f"on_{event}", None)
        if handler is None or not inspect.iscoroutinefunction(handler):
            # Unknown names are strikes, not budgets: they cannot buy fresh rate limits.
            self._strike(sid)
            return ack_error("unknown_event", f"no such event {str(event)[:40]!r}")
        if not self._limits.allow_event(sid, event):
            self._strike(sid)
            return ack_error("rate_limited", f"too many {event!r} events; slow down")
        if not await self._limits.allow_user_event(conn.identity.user_id):
            self._strike(sid)
            return ack_error("rate_limited", "too many events from this user; slow down")
        arity = self._arities.get(event)
        if arity is None:
            arity = self._arities[event] = Arity(handler)
        if not arity.admits(len(args)):
            self._strike(sid)
            return ack_error("invalid_payload", f"wrong number of arguments for {event!r}")
        try:
            return await handler(*args)
        except ClientError as exc:
            return exc.ack()
        except INPUT_ERRORS as exc:
            log.warning(
                "%s %s: the database refused the input (%s)",
                self.namespace,
                event,
                input_error_name(exc),
            )
            return ack_error("invalid_payload", "the request holds data that cannot be stored")
        except DB_ERRORS as exc:
            log.warning("%s %s failed on the database: %r", self.namespace, event, exc)
            return ack_error("unavailable", "the database is unavailable; try again")
        except Exception:
            # The arguments may hold anything the client sent, tokens included: not logged.
            log.exception("handler for %r on %s failed", event, self.namespace)
            return ack_error("internal", "the server could not handle this event")

    def _strike(self, sid: str) -> None:
        """A refused event; past `limits.abuse_strikes` the whole connection is closed."""
        if self._limits.strike(sid):
            self._spawn(self._abuse_disconnect(sid))

    # -- expiry ------------------------------------------------------------------------------

    def _watch_expiry(self, conn: Connection) -> None:
        """`tokenExpiring` at expiry minus `expiry_warning`, then the disconnect at expiry."""
        conn.warned = False
        expires_at = conn.identity.expires_at
        if expires_at is None:
            self._expiry.cancel(conn)
            return
        self._expiry.set(conn, expires_at - self._warning - time.time())

    def _expiry_due(self, conn: Connection) -> None:
        expires_at = conn.identity.expires_at
        if self._connections.get(conn.sid) is not conn or expires_at is None:
            return
        sid = conn.sid
        if conn.warned:
            conn.warned = False
            self._spawn(
                self._disconnect(
                    sid, "token_expired", "the token expired; reconnect with a new one"
                )
            )
            return
        conn.warned = True
        payload = {
            "expiresAt": _iso(expires_at),
            "expiresIn": max(0, round(expires_at - time.time())),
        }
        self._spawn(self.emit("tokenExpiring", payload, to=sid))
        self._expiry.set(conn, expires_at + self._leeway - time.time())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """A short task (an emit, a disconnect), kept until done so shutdown can cancel it."""
        self._background.spawn(work)

    async def _abuse_disconnect(self, sid: str) -> None:
        """Say why, then close the client's whole connection, not only this namespace."""
        if sid not in self._connections:
            return
        await self.emit(
            "error",
            {"code": "rate_limited", "message": "too many refused events; disconnecting"},
            to=sid,
        )
        await self.server.end_connection(sid, self.namespace)

    async def _disconnect(self, sid: str, code: str, message: str) -> None:
        """Say why, then close: the client sees an `error` event and then `disconnect`."""
        if sid not in self._connections:
            return
        await self.emit("error", {"code": code, "message": message}, to=sid)
        await self.disconnect(sid)
