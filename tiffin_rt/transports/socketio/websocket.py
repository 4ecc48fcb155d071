"""A lean Engine.IO WebSocket transport: pre-built frames written straight to the socket.

Stock python-engineio keeps, per WebSocket connection, a packet queue, a writer task, a new
task for every message read and a task sleeping until each ping; under aiohttp it also keeps
the upgrade request and its handler chain alive for the connection's life. Here, once the
handshake is answered, the connection is its Engine.IO socket object plus a
`WebSocketConnection` protocol on the transport (wsconnection.py): messages are handled in
order by a task that exists only while some are waiting (a pong needs none), pings and pong
deadlines are entries in two server-wide clocks (clock.py), and writes go to the transport at
once. Compression stays off unless `delivery.websocket_compression` is set; then, and for
upgrades from long-polling, the stock transport is used unchanged. The library internals this
needs (the driver slot, the socket class switch, the disconnect event, aiohttp's handler) are
reached through engine_internals.py, checked at startup: if one is missing, every connection
is served by the stock transport.

Backpressure: a connection whose unsent bytes pass `low_water` is *behind*; what it is sent
meanwhile waits, every frame in order, in a per-connection backlog. Past `max_buffered` bytes
(kernel buffer and backlog together) the connection is dropped with one warning; the client
reconnects and resumes from the last event id it saw, so nothing is lost or merged.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from typing import Any

import engineio
from aiohttp import WSMsgType, web
from engineio import packet as eio_packet
from engineio.async_socket import AsyncSocket

from tiffin_rt import metrics
from tiffin_rt.logs import client_fault
from tiffin_rt.transports.socketio.engine_guard import PacketError, decode_client_packet
from tiffin_rt.transports.socketio.engine_internals import socket_of_handler
from tiffin_rt.transports.socketio.stock import StockSocket
from tiffin_rt.transports.socketio.wsconnection import (
    NORMAL_CLOSURE,
    HandedOver,
    WebSocketConnection,
    handshake_accept,
    take_over,
)

log = logging.getLogger(__name__)

_LEN1 = struct.Struct("!BB").pack
_LEN2 = struct.Struct("!BBH").pack
_LEN3 = struct.Struct("!BBQ").pack
_TEXT = 0x81
_BINARY = 0x82
_PING_FRAME = b"\x81\x012"
# Messages a client may have waiting before its socket stops reading from it (the frames
# after them wait in the kernel, and in WebSocketConnection's buffer, until it catches up).
MAX_PENDING_MESSAGES = 32
# How long close(wait=True) waits for the close frames to reach the client.
CLOSE_WAIT_SECONDS = 2.0


def ws_frame(payload: bytes, opcode: int = _TEXT) -> bytes:
    """One unmasked, uncompressed server frame; the same bytes serve every recipient."""
    size = len(payload)
    if size < 126:
        return _LEN1(opcode, size) + payload
    if size < 65536:
        return _LEN2(opcode, 126, size) + payload
    return _LEN3(opcode, 127, size) + payload


def echoable_close_code(code: object) -> bool:
    """A close code a server may send back: not one RFC 6455 reserves for local use."""
    return isinstance(code, int) and 1000 <= code < 5000 and code not in (1004, 1005, 1006, 1015)


def packet_frame(pkt: eio_packet.Packet) -> bytes:
    encoded = pkt.encode()
    if isinstance(encoded, bytes):
        return ws_frame(encoded, _BINARY)
    return ws_frame(encoded.encode())


class DeliveryLimits:
    """Per-server knobs for the lean transport."""

    __slots__ = ("low_water", "max_buffered")

    def __init__(self, *, max_buffered: int, low_water: int | None = None) -> None:
        self.max_buffered = max_buffered
        self.low_water = low_water if low_water is not None else min(64 * 1024, max_buffered // 4)


class LeanWebSocket(AsyncSocket):  # type: ignore[misc]
    """An Engine.IO socket whose packets are written straight to its WebSocket."""

    # Set by engineio's BaseSocket.__init__ (untyped upstream).
    server: Any
    sid: str
    queue: Any
    last_ping: float | None
    connected: bool
    upgraded: bool
    closing: bool
    closed: bool

    # Class defaults until the WebSocket is adopted; instances set their own when they differ.
    connection: WebSocketConnection | None = None
    transport: asyncio.Transport | None = None
    backlog: list[bytes] | None = None
    backlog_size: int = 0
    # The due time of this socket's live entry in the server's ping or pong clock; 0.0: none.
    ping_due: float = 0.0
    # Messages read but not handled yet; a task drains them while this is not None.
    pending: list[str | bytes] | None = None
    reader_task: asyncio.Task[None] | None = None

    def adopt(self, connection: WebSocketConnection, transport: asyncio.Transport) -> None:
        self.connection = connection
        self.transport = transport
        self.connected = True
        self.upgraded = True
        queued = self.queue
        # The OPEN packet (and anything else sent before the upgrade) waits in the queue.
        while not queued.empty():
            pkt = queued.get_nowait()
            queued.task_done()
            if pkt is not None:
                self.write(packet_frame(pkt))
        self.queue = _NO_QUEUE

    # -- reading (called by WebSocketConnection) -------------------------------------------

    def on_message(self, data: str | bytes) -> None:
        if self.closing or self.closed:
            return
        pending = self.pending
        if pending is None:
            if data == "3":  # a pong, the only message an idle client sends: no task for it
                self.schedule_ping()
                return
            self.pending = [data]
            self.reader_task = asyncio.get_running_loop().create_task(self._handle_pending())
            return
        pending.append(data)
        if len(pending) >= MAX_PENDING_MESSAGES and self.connection is not None:
            self.connection.pause_reading()

    def on_lost(self) -> None:
        self.connection = None
        if not self.closing and not self.closed:
            self.server.spawn(
                self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
            )

    async def _handle_pending(self) -> None:
        """Messages of this connection, one after another, in the order they arrived."""
        pending = self.pending
        try:
            while pending and not self.closed:
                data = pending.pop(0)
                if len(pending) <= MAX_PENDING_MESSAGES // 2 and self.connection is not None:
                    self.connection.resume_reading()
                try:
                    pkt = decode_client_packet(data)
                except PacketError as exc:
                    metrics.refused("engineio", "malformed_packet")
                    client_fault(
                        log,
                        "invalid Engine.IO packet (%s); closing %s",
                        exc,
                        self.sid,
                        session_ended=True,
                    )
                    await self.close(wait=False, abort=True)
                    break
                try:
                    await self.receive(pkt)
                except engineio.exceptions.UnknownPacketError:
                    pass
                except engineio.exceptions.SocketIsClosedError:
                    break
                except Exception:
                    log.exception("%s: error handling a packet", self.sid)
        finally:
            self.pending = None
            self.reader_task = None

    # -- writing -------------------------------------------------------------------------

    @property
    def unsent(self) -> int:
        """Bytes written but not yet taken by the kernel, and the backlog."""
        transport = self.transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        return buffered + self.backlog_size

    @property
    def writable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def write(self, data: bytes) -> None:
        """Write a packet now; frames still waiting for this socket go first, in order."""
        server = self.server
        if server.frames_queued:  # room emits of this tick (RoomFanout): written first
            server.write_queued()
        if not self.writable:
            return
        assert self.transport is not None
        backlog = self.backlog
        if backlog is None:
            self.transport.write(data)
            return
        self.backlog = None
        self.backlog_size = 0
        backlog.append(data)
        self.transport.write(b"".join(backlog))

    async def send(self, pkt: eio_packet.Packet) -> None:
        if self.transport is None:
            await super().send(pkt)  # not adopted yet: the queue, flushed by adopt()
            return
        if not await self.check_ping_timeout():
            return
        self.write(packet_frame(pkt))

    def deliver(self, data: bytes, limits: DeliveryLimits) -> bool:
        """Write `data` (frames) now, or keep it in the backlog while the client is behind.

        Returns True when the socket still has a backlog to flush later.
        """
        transport = self.transport
        if transport is None or not self.writable:
            return False
        buffered = transport.get_write_buffer_size()
        if self.backlog is None and buffered <= limits.low_water:
            transport.write(data)
            return False
        backlog = self.backlog
        if backlog is None:
            backlog = self.backlog = []
        backlog.append(data)
        self.backlog_size += len(data)
        if buffered + self.backlog_size > limits.max_buffered:
            log.warning(
                "%s: client is %d bytes behind (limit %d); disconnecting it",
                self.sid,
                buffered + self.backlog_size,
                limits.max_buffered,
            )
            self.backlog = None
            self.backlog_size = 0
            transport.abort()
            metrics.slow_consumer_dropped("websocket")
            return False
        return self.flush_backlog(limits)

    def flush_backlog(self, limits: DeliveryLimits) -> bool:
        """Write the backlog once the client has caught up; True while it still waits."""
        backlog = self.backlog
        transport = self.transport
        if backlog is None:
            return False
        if transport is None or not self.writable:
            self.backlog = None
            self.backlog_size = 0
            return False
        if transport.get_write_buffer_size() > limits.low_water:
            return True
        transport.write(b"".join(backlog))
        self.backlog = None
        self.backlog_size = 0
        return False

    # -- pings: entries in the server's two clocks, not a timer per connection -----------

    def schedule_ping(self) -> None:
        if self.last_ping:  # a ping was answered (or the connection just opened)
            self.last_ping = None
            self.ping_due = self.server.ping_clock.add(self)

    # An entry is this socket's live one only if its due time matches AND the socket is in that
    # clock's phase (waiting to ping: last_ping unset; waiting for a pong: set). The due time
    # alone is not enough: uvloop's loop.time() moves in whole milliseconds, so a stale pong
    # entry (ping_timeout after an answered ping) can be due at the very same time as the live
    # ping entry when ping_timeout is a multiple of ping_interval (20 = 4 x 5 in the bench).

    def ping_now(self, due: float) -> None:
        """From the ping clock: send the ping; the pong clock waits for its answer."""
        if self.last_ping or due != self.ping_due or self.closing or self.closed:
            return
        self.last_ping = time.time()
        self.write(_PING_FRAME)
        self.ping_due = self.server.pong_clock.add(self)

    def pong_overdue(self, due: float) -> None:
        """From the pong clock: no pong within ping_timeout, the client is gone."""
        if not self.last_ping or due != self.ping_due or self.closing or self.closed:
            return
        self.ping_due = 0.0
        self.server.spawn(
            self.close(wait=False, abort=False, reason=self.server.reason.PING_TIMEOUT)
        )

    # -- closing ---------------------------------------------------------------------------

    async def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        if self.closed or self.closing:
            return
        self.closing = True
        self.ping_due = 0.0
        try:
            await self.server.run_disconnect_handlers(
                self.sid, reason or self.server.reason.SERVER_DISCONNECT
            )
        finally:
            if not abort:
                self.write(packet_frame(eio_packet.Packet(eio_packet.CLOSE)))
            self.closed = True
            self.backlog = None
            self.pending = None
            if self.server.sockets.get(self.sid) is self:
                del self.server.sockets[self.sid]
            connection = self.connection
            if connection is not None:
                connection.close()
        if wait and connection is not None:
            try:
                async with asyncio.timeout(CLOSE_WAIT_SECONDS):
                    await connection.wait_closed()
            except TimeoutError:
                connection.abort()


class _NoQueue:
    """Stands in for the per-socket asyncio.Queue a lean socket never uses."""

    def empty(self) -> bool:
        return True

    def put_nowait(self, _item: object) -> None:
        return None

    async def put(self, _item: object) -> None:
        return None

    async def join(self) -> None:
        return None


_NO_QUEUE = _NoQueue()


async def _forget(socket: Any) -> None:
    """Close a stock socket whose WebSocket handler ended early, and forget it."""
    await socket.close(wait=False, abort=True, reason=socket.server.reason.TRANSPORT_CLOSE)
    if socket.server.sockets.get(socket.sid) is socket:
        del socket.server.sockets[socket.sid]


def websocket_driver(compress: bool) -> type[Any]:
    """The class Engine.IO instantiates for each WebSocket (engine_internals E1, E2)."""

    class WebSocketDriver:
        def __init__(self, handler: Any, server: engineio.AsyncServer) -> None:
            self.handler = handler
            self.server = server
            self._sock: web.WebSocketResponse | None = None

        async def __call__(self, environ: dict[str, Any]) -> web.StreamResponse:
            request: web.Request = environ["aiohttp.request"]
            socket = socket_of_handler(self.handler)
            if not isinstance(socket, LeanWebSocket) or socket.connected:
                # Compression, or an upgrade from polling: the stock transport.
                ws = web.WebSocketResponse(
                    max_msg_size=self.server.max_http_buffer_size,
                    compress=compress,
                    autoclose=False,  # a client's close frame is echoed by wait()
                )
                await ws.prepare(request)
                self._sock = ws
                if isinstance(socket, StockSocket):
                    socket.ws_transport = request.transport  # cut if it falls too far behind
                try:
                    await self.handler(self)
                finally:
                    if socket is not None and not socket.closed:
                        # The handler was cancelled (the client left): Engine.IO's own close
                        # at the end of it never ran.
                        self.server.spawn(_forget(socket))
                return ws
            limit = self.server.max_http_buffer_size
            try:
                accept = handshake_accept(request)
            except web.HTTPBadRequest:
                await socket.close(wait=False, abort=True)
                raise
            connection = take_over(
                request,
                accept,
                lambda transport: WebSocketConnection(socket, transport, max_message=limit),
            )
            if connection is None or connection.transport is None:
                await socket.close(wait=False, abort=True)
                return HandedOver()
            socket.adopt(connection, connection.transport)
            return HandedOver()

        # The stock handler's interface, used on the compressed / upgrade path.
        async def close(self) -> None:
            assert self._sock is not None
            await self._sock.close()

        async def send(self, message: str | bytes) -> None:
            assert self._sock is not None
            if isinstance(message, bytes):
                await self._sock.send_bytes(message)
            else:
                await self._sock.send_str(message)

        async def wait(self) -> str | bytes:
            assert self._sock is not None
            msg = await self._sock.receive()
            if msg.type is WSMsgType.CLOSE:
                # Its code echoed, as RFC 6455 asks and the lean transport does (aiohttp's
                # own answer is 1000 whatever the client sent).
                code = msg.data if echoable_close_code(msg.data) else NORMAL_CLOSURE
                await self._sock.close(code=code, drain=False)
                raise OSError()
            if not isinstance(msg.data, bytes | str):
                raise OSError()
            try:
                decode_client_packet(msg.data)
            except PacketError as exc:
                # Engine.IO's loop ends on OSError and closes the WebSocket.
                sid = getattr(socket_of_handler(self.handler), "sid", "?")
                metrics.refused("engineio", "malformed_packet")
                client_fault(
                    log, "invalid Engine.IO packet (%s); closing %s", exc, sid, session_ended=True
                )
                raise OSError() from None
            return msg.data

    return WebSocketDriver
