"""A lean Engine.IO WebSocket transport: pre-built frames written straight to the socket.

Stock python-engineio keeps, per WebSocket connection, a packet queue, a writer task, a new
task for every message read and a task sleeping until each ping. Here a connection is its
Engine.IO socket object plus aiohttp's WebSocketResponse: the request's own task reads, pings
are loop timers, and writes go to the transport at once. Compression stays off unless
`delivery.websocket_compression` is set; then the stock transport is used unchanged.

Backpressure: a connection whose unsent bytes pass `low_water` is *behind*; what it is sent
meanwhile waits in a small per-connection backlog where a later order status replaces an
earlier one for the same order. Past `max_buffered` bytes the connection is dropped; the
client reconnects and resumes from the last event id it saw.
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

log = logging.getLogger(__name__)

_LEN1 = struct.Struct("!BB").pack
_LEN2 = struct.Struct("!BBH").pack
_LEN3 = struct.Struct("!BBQ").pack
_TEXT = 0x81
_BINARY = 0x82
_PING_FRAME = b"\x81\x012"


def ws_frame(payload: bytes, opcode: int = _TEXT) -> bytes:
    """One unmasked, uncompressed server frame; the same bytes serve every recipient."""
    size = len(payload)
    if size < 126:
        return _LEN1(opcode, size) + payload
    if size < 65536:
        return _LEN2(opcode, 126, size) + payload
    return _LEN3(opcode, 127, size) + payload


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


class FastSocket(AsyncSocket):  # type: ignore[misc]
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

    # Class defaults until the WebSocket is adopted; instances set their own in adopt().
    ws: web.WebSocketResponse | None = None
    transport: asyncio.Transport | None = None
    outbox: list[tuple[object, bytes]] | None = None
    backlog: dict[object, bytes] | None = None
    backlog_size: int = 0
    ping_timer: asyncio.TimerHandle | None = None
    reading: bool = False

    def adopt(self, ws: web.WebSocketResponse, transport: asyncio.Transport) -> None:
        self.ws = ws
        self.transport = transport
        self.reading = True
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

    # -- writing -------------------------------------------------------------------------

    @property
    def writable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def write(self, data: bytes) -> None:
        """Write a packet now; frames still waiting for this socket go first, in order."""
        if not self.writable:
            return
        assert self.transport is not None
        if self.backlog is None and self.outbox is None:
            self.transport.write(data)
            return
        parts: list[bytes] = []
        if self.backlog is not None:
            parts.extend(self.backlog.values())
            self.backlog = None
            self.backlog_size = 0
        if self.outbox is not None:
            parts.extend(frame for _, frame in self.outbox)
            self.outbox = None
        parts.append(data)
        self.transport.write(b"".join(parts))

    async def send(self, pkt: eio_packet.Packet) -> None:
        if self.transport is None:
            await super().send(pkt)  # not adopted yet: the queue, flushed by adopt()
            return
        if not await self.check_ping_timeout():
            return
        self.write(packet_frame(pkt))

    def deliver(self, frames: list[tuple[object, bytes]], limits: DeliveryLimits) -> bool:
        """Write frames now, or keep them in the backlog while the client is behind.

        Returns True when the socket still has a backlog to flush later.
        """
        transport = self.transport
        if transport is None or not self.writable:
            return False
        buffered = transport.get_write_buffer_size()
        if self.backlog is None and buffered <= limits.low_water:
            if len(frames) == 1:
                transport.write(frames[0][1])
            else:
                transport.write(b"".join(frame for _, frame in frames))
            return False
        backlog = self.backlog
        if backlog is None:
            backlog = self.backlog = {}
        for key, frame in frames:
            old = backlog.pop(key, None)
            if old is not None:
                self.backlog_size -= len(old)
            backlog[key] = frame
            self.backlog_size += len(frame)
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
        transport.write(b"".join(backlog.values()))
        self.backlog = None
        self.backlog_size = 0
        return False

    # -- pings: a loop timer per connection instead of a sleeping task ---------------------

    def schedule_ping(self) -> None:
        if self.last_ping:
            self.last_ping = None
            loop = asyncio.get_running_loop()
            self.ping_timer = loop.call_later(self.server.ping_interval, self._ping)

    def _ping(self) -> None:
        self.ping_timer = None
        if not self.closing and not self.closed:
            self.last_ping = time.time()
            self.write(_PING_FRAME)

    # -- closing ---------------------------------------------------------------------------

    async def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        if self.closed or self.closing:
            return
        self.closing = True
        if self.ping_timer is not None:
            self.ping_timer.cancel()
            self.ping_timer = None
        await self.server._trigger_event(
            "disconnect", self.sid, reason or self.server.reason.SERVER_DISCONNECT, run_async=False
        )
        if not abort:
            self.write(packet_frame(eio_packet.Packet(eio_packet.CLOSE)))
        self.closed = True
        self.backlog = None
        if not self.reading or self.ws is None or self.transport is None:
            return
        if wait:
            await self.ws.close()
        else:
            self.transport.close()


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


def websocket_driver(compress: bool) -> type[Any]:
    """The class Engine.IO instantiates for each WebSocket (its `_async['websocket']`)."""

    class FastWebSocket:
        def __init__(self, handler: Any, server: engineio.AsyncServer) -> None:
            self.handler = handler
            self.server = server
            self._sock: web.WebSocketResponse | None = None

        async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
            request: web.Request = environ["aiohttp.request"]
            ws = web.WebSocketResponse(
                max_msg_size=self.server.max_http_buffer_size, compress=compress
            )
            await ws.prepare(request)
            self._sock = ws
            socket = getattr(self.handler, "__self__", None)
            transport = request.transport
            if not isinstance(socket, FastSocket) or socket.connected or transport is None:
                # Compression, or an upgrade from polling: the stock transport.
                await self.handler(self)
                return ws
            socket.adopt(ws, transport)
            await _read(socket, ws, self.server)
            return ws

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
            if not isinstance(msg.data, bytes | str):
                raise OSError()
            return msg.data

    return FastWebSocket


async def _read(socket: FastSocket, ws: web.WebSocketResponse, server: Any) -> None:
    """The connection's only loop, in aiohttp's request task: read, dispatch, repeat."""
    timeout = server.ping_interval + server.ping_timeout
    limit = server.max_http_buffer_size
    try:
        while not socket.closed:
            try:
                msg = await ws.receive(timeout)
            except TimeoutError:
                break
            if msg.type is not WSMsgType.TEXT and msg.type is not WSMsgType.BINARY:
                break
            data = msg.data
            if data and len(data) > limit:
                break
            try:
                await socket.receive(eio_packet.Packet(encoded_packet=data))
            except engineio.exceptions.UnknownPacketError:
                pass
            except engineio.exceptions.SocketIsClosedError:
                break
            except Exception:
                log.exception("%s: error handling a packet", socket.sid)
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        socket.reading = False
        await socket.close(wait=False, abort=True, reason=server.reason.TRANSPORT_CLOSE)
        if not ws.closed and socket.transport is not None:
            socket.transport.close()
