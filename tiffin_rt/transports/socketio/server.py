"""The python-socketio server on its Engine.IO server, attached to the aiohttp app.

`EngineServer` is python-engineio's server with the lean WebSocket transport (websocket.py)
for WebSocket-first clients and bounded stock sockets (stock.py) for the others;
`SocketIOServer` is python-socketio's server on it, with RoomFanout (fanout.py) for room emits
and a client that breaks the protocol closed with one log line on every transport.
Both reach the libraries' private dispatch through the named hooks of engine_internals.py
(EngineHooks, SocketIOHooks), which `create_socketio_server` checks first: if one is missing,
one WARNING says so and every connection gets python-engineio's stock socket and transport.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import parse_qs

import engineio
import orjson
import socketio
from aiohttp import web
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from tiffin_rt import metrics
from tiffin_rt.background import BackgroundTasks
from tiffin_rt.config import Settings
from tiffin_rt.core import jsonwire
from tiffin_rt.core.hub import Hub
from tiffin_rt.logs import client_fault
from tiffin_rt.transports.departures import Departures
from tiffin_rt.transports.origins import OriginPolicy
from tiffin_rt.transports.socketio.clock import FixedDelayClock
from tiffin_rt.transports.socketio.engine_guard import end_session, refusal_response
from tiffin_rt.transports.socketio.engine_internals import (
    ALL_TRANSPORTS,
    EngineHooks,
    SocketIOHooks,
    Transports,
    check_upstream,
    reclass_socket,
    usable_transports,
)
from tiffin_rt.transports.socketio.fanout import RoomFanout
from tiffin_rt.transports.socketio.secure import SecureNamespace
from tiffin_rt.transports.socketio.stock import PacketQueue, StockSocket
from tiffin_rt.transports.socketio.websocket import DeliveryLimits, LeanWebSocket, websocket_driver

log = logging.getLogger(__name__)


# Binary attachments one Socket.IO message may announce (this server's events take none; a
# browser client sends one per ArrayBuffer). Their bytes count towards limits.max_message_bytes.
MAX_ATTACHMENTS = 10

# environ keys kept for the life of a connection (namespaces connect later and read them).
# Not the aiohttp request: it would keep the parsed upgrade request alive; REMOTE_ADDR is the
# request's remote address instead of Engine.IO's placeholder.
_KEPT_ENVIRON = (
    "REQUEST_METHOD",
    "PATH_INFO",
    "QUERY_STRING",
    "HTTP_ORIGIN",
    "HTTP_COOKIE",
    "HTTP_AUTHORIZATION",
    "HTTP_USER_AGENT",
    "HTTP_X_FORWARDED_FOR",
)

_REFUSED_NAMESPACE = {
    "message": "Invalid namespace",
    "data": {"code": "invalid_namespace", "message": "Invalid namespace"},
}


# python-engineio's keys for the requests it refuses with 400 (E6), each a `reason` of
# tiffin_rt_refusals_total{namespace="engineio"} with "_" for "-".
CLIENT_REFUSALS = frozenset(
    {
        "bad-origin",
        "bad-transport",
        "bad-version",
        "bad-jsonp-index",
        "bad-upgrade",
        "bad-sid",
        "not-connected",
        "unexpected-http",
    }
)


class ProtocolFault(Exception):
    """The client broke the Socket.IO protocol; the message is ours, never the client's data."""


def announced_attachments(data: str) -> int:
    """The attachment count in a binary packet's header (`51-/notifications,[...]`)."""
    head, dash, _ = data[1:13].partition("-")
    return int(head) if dash and head.isascii() and head.isdigit() else 0


def _nothing() -> None:
    return None


class EngineServer(EngineHooks):
    """python-engineio's server: the lean WebSocket transport (websocket.py), bounded stock
    sockets (stock.py), one ping clock for all, a bad long-polling POST answered at once.

    With a library internal missing (engine_internals.usable_transports), no lean transport:
    python-engineio's WebSocket driver, and StockSocket for every client (or, if what that
    needs is missing too, python-engineio's socket unchanged).
    """

    def __init__(
        self,
        *args: Any,
        websocket_compression: bool = False,
        max_buffered: int,
        allowed: Transports = ALL_TRANSPORTS,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.websocket_compression = websocket_compression
        self.max_buffered = max_buffered  # read by StockSocket
        self.lean_transport = allowed.lean
        self.bounded_sockets = allowed.bounded
        if allowed.lean:
            self.use_websocket_driver(websocket_driver(websocket_compression))
        self.ping_clock: FixedDelayClock[LeanWebSocket] = FixedDelayClock(
            self.ping_interval, LeanWebSocket.ping_now
        )
        self.pong_clock: FixedDelayClock[LeanWebSocket] = FixedDelayClock(
            self.ping_timeout, LeanWebSocket.pong_overdue
        )
        self._spawned = BackgroundTasks("Engine.IO")
        # Long-polling GETs whose client may leave while they wait (read by StockSocket).
        self.departures = Departures()
        # Set by RoomFanout: whether room emits of this tick wait for its end-of-tick write, and
        # what writes them now; a direct write to a lean socket (an ack, a ping) calls it first,
        # so a connection's frames go out in the order they were sent.
        self.frames_queued = False
        self.write_queued: Callable[[], None] = _nothing

    def request_refused(self, message: str, key: str) -> None:
        """A request Engine.IO answers 400 (a poll for a session that ended here or before a
        restart, a bad transport or protocol version) is the client's business: counted in
        /metrics and logged as a client fault, not python-engineio's ERROR once per kind."""
        if key not in CLIENT_REFUSALS:
            super().request_refused(message, key)
            return
        metrics.refused("engineio", key.replace("-", "_"))
        # A poll for a session that has ended (here, or before a restart) is routine: INFO.
        level = logging.INFO if key == "bad-sid" else logging.WARNING
        client_fault(log, "Engine.IO request refused: %s", message[:200], level=level)

    def create_queue(self, *args: Any, **kwargs: Any) -> Any:
        """Each socket's packet queue, counting its bytes for `delivery.max_buffered_kib`."""
        if not self.bounded_sockets:
            return super().create_queue(*args, **kwargs)
        return PacketQueue()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """A short task (a close after a lost connection or a missed pong), kept until done."""
        self._spawned.spawn(work)

    async def handle_request(self, request: web.Request) -> web.StreamResponse:
        return refusal_response(request, await super().handle_request(request))

    def session_for_request(self, sid: str) -> Any:
        """An ended long-polling session still hands its last packets to one more poll.

        The server ends a session at once (engine_guard.end_session), with the reason and the
        close packet queued; a client that was not polling at that moment collects them with
        its next GET instead of a 400. Afterwards Engine.IO forgets the session as usual.
        """
        socket = self.sockets.get(sid)
        if socket is not None and socket.closed and not socket.upgraded and socket.queue.qsize():
            return socket
        return super().session_for_request(sid)

    async def shutdown(self) -> None:
        await super().shutdown()
        self.ping_clock.close()
        self.pong_clock.close()
        self.departures.close()
        await self._spawned.wait(seconds=5)


class SocketIOServer(SocketIOHooks):
    """python-socketio's server on EngineServer, with RoomFanout for room emits; a client that
    breaks the protocol is closed with one log line, on every transport.

    Left alone, python-socketio logs a full traceback for each packet it cannot decode (and
    a warning for each event to a namespace the client has not joined), keeps the sender
    connected to send the next one, accepts the root namespace without a token, and buffers
    any number of announced binary attachments. Only registered SecureNamespaces (JWT on
    connect) can be joined; an event to a namespace the client has not joined, an event whose
    name is not a string, and a binary message past MAX_ATTACHMENTS attachments or
    `limits.max_message_bytes` in all are faults.
    """

    engine_server_class = EngineServer

    def __init__(
        self,
        *,
        websocket_compression: bool = False,
        max_buffered: int,
        allowed: Transports = ALL_TRANSPORTS,
        hub: Hub | None = None,
        **kwargs: Any,
    ) -> None:
        self._websocket_compression = websocket_compression
        self.lean_transport = allowed.lean
        self.bounded_sockets = allowed.bounded
        super().__init__(
            client_manager=RoomFanout(DeliveryLimits(max_buffered=max_buffered), hub),
            websocket_compression=websocket_compression,
            max_buffered=max_buffered,
            allowed=allowed,
            **kwargs,
        )
        # Bytes of the binary message each connection is sending, attachments so far included.
        self._binary_bytes: dict[str, int] = {}

    async def engine_connected(self, eio_sid: str, environ: dict[str, Any]) -> None:
        """A socket becomes lean (WebSocket) or bounded (stock) before its first ping."""
        await super().engine_connected(eio_sid, environ)
        kept = {k: environ[k] for k in _KEPT_ENVIRON if k in environ}
        request = environ.get("aiohttp.request")
        kept["REMOTE_ADDR"] = str(getattr(request, "remote", None) or "unknown")
        self.environ[eio_sid] = kept
        socket = self.eio.sockets.get(eio_sid)
        if type(socket) is not engineio.async_socket.AsyncSocket:
            return
        query = parse_qs(environ.get("QUERY_STRING", ""))
        websocket_first = query.get("transport") == ["websocket"] and "sid" not in query
        if websocket_first and not self._websocket_compression and self.lean_transport:
            reclass_socket(socket, LeanWebSocket)
        elif self.bounded_sockets:
            reclass_socket(socket, StockSocket)

    async def engine_message(self, eio_sid: str, data: Any) -> None:
        socket = self.eio.sockets.get(eio_sid)
        if socket is None or socket.closed or socket.closing:
            return  # the rest of a POST, or of a WebSocket read, after a fault
        try:
            self._count_binary(eio_sid, data)
            await super().engine_message(eio_sid, data)
        except Exception as exc:
            self._binary_bytes.pop(eio_sid, None)
            # The packet itself may hold a token: only its size and what was wrong are logged.
            size = len(data) if isinstance(data, str | bytes) else 0
            reason = str(exc) if isinstance(exc, ProtocolFault) else type(exc).__name__
            metrics.refused("socketio", "malformed_packet")
            client_fault(
                log,
                "malformed Socket.IO packet (%s, %d bytes); closing %s",
                reason,
                size,
                eio_sid,
                session_ended=True,
            )
            await end_session(socket)
            return
        if not self.binary_message_pending(eio_sid):
            self._binary_bytes.pop(eio_sid, None)

    def _count_binary(self, eio_sid: str, data: Any) -> None:
        """A binary message's announced attachments and total size, checked before buffering."""
        size = len(data.encode()) if isinstance(data, str) else len(data)
        if self.binary_message_pending(eio_sid):
            total = self._binary_bytes.get(eio_sid, 0) + size
            if total > self.eio.max_http_buffer_size:
                raise ProtocolFault("binary message over limits.max_message_bytes")
            self._binary_bytes[eio_sid] = total
        elif isinstance(data, str) and data[:1] in ("5", "6"):
            if announced_attachments(data) > MAX_ATTACHMENTS:
                raise ProtocolFault(f"more than {MAX_ATTACHMENTS} attachments announced")
            self._binary_bytes[eio_sid] = size

    async def engine_disconnected(self, eio_sid: str, reason: Any) -> None:
        self._binary_bytes.pop(eio_sid, None)
        await super().engine_disconnected(eio_sid, reason)

    async def namespace_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        """Only namespaces that verify a JWT can be joined; `/` and unknown ones are refused."""
        namespace = namespace or "/"
        if not isinstance(self.namespace_handlers.get(namespace), SecureNamespace):
            # Counted under "socketio", not the namespace the client named (any string).
            metrics.refused("socketio", "invalid_namespace")
            await self.send_socketio_packet(
                eio_sid,
                self.packet_class(
                    sio_packet.CONNECT_ERROR, data=_REFUSED_NAMESPACE, namespace=namespace
                ),
            )
            return
        await super().namespace_connect(eio_sid, namespace, data)

    async def event_received(
        self, eio_sid: str, namespace: str | None, id: int | None, data: Any
    ) -> None:
        namespace = namespace or "/"
        if not isinstance(data, list) or not data:
            raise ProtocolFault("an event must be a non-empty array")
        name = data[0]
        if not isinstance(name, str) and (not isinstance(name, int) or isinstance(name, bool)):
            raise ProtocolFault("an event name must be a string")
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        if sid is None or not self.manager.is_connected(sid, namespace):
            raise ProtocolFault(f"an event for {namespace[:40]!r}, which it has not joined")
        await super().event_received(eio_sid, namespace, id, data)

    async def dispatch_event(
        self, sid: str, eio_sid: str, data: list[Any], namespace: str, id: int | None
    ) -> None:
        """A client event goes to its namespace's client_event, never to a lifecycle handler."""
        handler = self.namespace_handlers[namespace]
        result = await handler.client_event(data[0], sid, *data[1:])
        if id is None:
            return
        args = list(result) if isinstance(result, tuple) else [] if result is None else [result]
        await self.send_socketio_packet(
            eio_sid, self.packet_class(sio_packet.ACK, namespace=namespace, id=id, data=args)
        )

    async def ack_received(
        self, eio_sid: str, namespace: str | None, id: int | None, data: Any
    ) -> None:
        """An acknowledgement nobody asked for is dropped silently, as socket.io does."""
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace or "/")
        # Ids start at 1; python-socketio keeps its id counter under 0.
        if sid is None or not id or id not in self.manager.callbacks.get(sid, {}):
            return
        await super().ack_received(eio_sid, namespace, id, data)

    async def send_socketio_packet(self, eio_sid: str, pkt: sio_packet.Packet) -> None:
        """A Socket.IO packet to one client, through Engine.IO's public send_packet (a binary
        packet is its header, then one message per attachment)."""
        encoded = pkt.encode()
        for part in encoded if isinstance(encoded, list) else [encoded]:
            await self.eio.send_packet(eio_sid, eio_packet.Packet(eio_packet.MESSAGE, part))

    async def end_connection(self, sid: str, namespace: str) -> None:
        """Close the client's whole connection now (not only this namespace), on any transport."""
        eio_sid = self.manager.eio_sid_from_sid(sid, namespace)
        if eio_sid is not None:
            await end_session(self.eio.sockets.get(eio_sid))


class _OrjsonCodec:
    """python-socketio calls json.dumps/json.loads; orjson is several times faster."""

    @staticmethod
    def dumps(obj: Any, **_kwargs: Any) -> str:
        return jsonwire.dumps(obj).decode()

    @staticmethod
    def loads(text: str | bytes, **_kwargs: Any) -> Any:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            # orjson refuses a lone surrogate ("\ud800"), which JSON allows and a browser's
            # JSON.stringify writes: the event gets its invalid_payload answer, not a closed
            # connection. Anything the standard parser refuses too is a malformed packet.
            return json.loads(text)


def create_socketio_server(
    settings: Settings, origins: OriginPolicy | None = None, *, hub: Hub | None = None
) -> socketio.AsyncServer:
    """`hub`: where its connections' rooms live (app[HUB], beside the SSE streams)."""
    # The server's own origin and the listed ones (a list alone would refuse the server's own).
    policy = origins or OriginPolicy(settings.server.cors_origins)
    # Every library internal we touch, checked once: one WARNING if any is missing or changed,
    # and the stock transport (engine_internals.py, docs/upstream-hooks.md).
    found = check_upstream(socket_classes=(LeanWebSocket, StockSocket))
    return SocketIOServer(
        hub=hub,
        allowed=usable_transports(found),
        websocket_compression=settings.delivery.websocket_compression,
        max_buffered=settings.delivery.max_buffered_kib * 1024,
        async_mode="aiohttp",
        cors_allowed_origins=policy.allows_engineio,
        cors_credentials=True,
        max_http_buffer_size=settings.limits.max_message_bytes,
        json=_OrjsonCodec,
        logger=False,
        engineio_logger=False,
        transports=["websocket", "polling"],
        ping_interval=settings.delivery.ping_interval,
        ping_timeout=settings.delivery.ping_timeout,
    )


def attach(sio: socketio.AsyncServer, app: web.Application) -> None:
    sio.attach(app, socketio_path="socket.io")
