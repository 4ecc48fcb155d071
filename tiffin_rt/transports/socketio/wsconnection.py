"""A WebSocket connection of its own after the handshake: an asyncio.Protocol on the transport.

aiohttp keeps, for the life of a WebSocket, the parsed upgrade request, its request handler and
parser, two tasks and the coroutine frames of every middleware and of Engine.IO's connect path
(about 12 KiB per idle connection, measured). Here aiohttp answers nothing: the 101 response is
written on its transport, the transport is moved to `WebSocketConnection`, and aiohttp's handler
is told the connection is gone, so its request, frames and task are freed. What is left per
connection is this protocol object and the bytes of a frame still arriving.

Server side of RFC 6455 without extensions: client frames must be masked and carry no RSV bits;
fragmented messages are joined; pings are answered; a close frame is echoed. A message larger
than the limit closes with 1009, invalid UTF-8 with 1007, anything else malformed with 1002.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Callable
from typing import Protocol

from aiohttp import web

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT = 0x1
_BINARY = 0x2
_CLOSE = 0x8
_PING = 0x9
_PONG = 0xA

NORMAL_CLOSURE = 1000
PROTOCOL_ERROR = 1002
INVALID_TEXT = 1007
MESSAGE_TOO_BIG = 1009


class MessageSink(Protocol):
    """What a WebSocketConnection hands its messages to (the Engine.IO socket)."""

    def on_message(self, data: str | bytes) -> None: ...

    def on_lost(self) -> None: ...


def handshake_accept(request: web.Request) -> bytes:
    """Sec-WebSocket-Accept for a valid upgrade request; 400 otherwise (as aiohttp answers)."""
    version = request.headers.get("Sec-WebSocket-Version", "")
    if version not in ("13", "8", "7"):
        raise web.HTTPBadRequest(text=f"Unsupported version: {version}")
    key = request.headers.get("Sec-WebSocket-Key", "")
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        valid = False
    if not valid:
        raise web.HTTPBadRequest(text=f"Handshake error: {key!r}")
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest())


def switching_protocols(accept: bytes) -> bytes:
    return (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


def close_frame(code: int) -> bytes:
    return bytes((0x80 | _CLOSE, 2)) + code.to_bytes(2, "big")


def _sendable(code: int) -> bool:
    """A close code that may appear in a close frame (RFC 6455 section 7.4)."""
    return (1000 <= code <= 1011 and code not in (1004, 1005, 1006)) or 3000 <= code < 5000


def _unmask(data: bytes, mask: bytes) -> bytes:
    size = len(data)
    if not size:
        return data
    key = (mask * ((size + 3) // 4))[:size]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


class WebSocketConnection(asyncio.Protocol):
    """Reads client frames from the transport and hands whole messages to `sink`."""

    __slots__ = (
        "_buffer",
        "_closing",
        "_limit",
        "_lost",
        "_opcode",
        "_parts",
        "_paused",
        "sink",
        "transport",
    )

    def __init__(self, sink: MessageSink, transport: asyncio.Transport, *, max_message: int):
        self.sink: MessageSink | None = sink
        self.transport = transport
        self._limit = max_message
        self._buffer = b""
        self._parts: list[bytes] | None = None
        self._opcode = 0
        self._closing = False
        self._paused = False
        self._lost: asyncio.Future[None] | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_lost(self, exc: BaseException | None) -> None:
        self._closing = True
        self._buffer = b""
        self._parts = None
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.on_lost()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        buf = self._buffer + data if self._buffer else data
        if self._paused:
            self._buffer = buf
            return
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            first = buf[pos]
            second = buf[pos + 1]
            if first & 0x70 or not second & 0x80:  # RSV bits without an extension, or unmasked
                self.close(PROTOCOL_ERROR)
                return
            opcode = first & 0x0F
            length = second & 0x7F
            head = 2
            if length == 126:
                if end - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if end - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if opcode >= _CLOSE:
                if length > 125 or not first & 0x80:
                    self.close(PROTOCOL_ERROR)
                    return
            elif length + sum(map(len, self._parts or ())) > self._limit:
                self.close(MESSAGE_TOO_BIG)  # before buffering it
                return
            start = pos + head + 4
            if end - start < length:
                break
            payload = _unmask(buf[start : start + length], buf[pos + head : start])
            pos = start + length
            self._frame(opcode, bool(first & 0x80), payload)
            if self._closing:
                return
            if self._paused:
                break  # the rest waits here until the sink has caught up
        self._buffer = buf[pos:] if pos < end else b""

    # -- flow control (the sink has too many messages waiting) -----------------------------

    def pause_reading(self) -> None:
        if not self._paused and not self._closing:
            self._paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused and not self._closing:
            self._paused = False
            self.transport.resume_reading()
            if self._buffer:
                self.data_received(b"")

    # -- frames ------------------------------------------------------------------------------

    def _frame(self, opcode: int, fin: bool, payload: bytes) -> None:
        if opcode in (_TEXT, _BINARY):
            if self._parts is not None:
                self.close(PROTOCOL_ERROR)  # a new message inside a fragmented one
            elif fin:
                self._message(opcode, payload)
            else:
                self._parts = [payload]
                self._opcode = opcode
        elif opcode == 0:
            if self._parts is None:
                self.close(PROTOCOL_ERROR)
                return
            self._parts.append(payload)
            if fin:
                parts, self._parts = self._parts, None
                self._message(self._opcode, b"".join(parts))
        elif opcode == _PING:
            self.transport.write(bytes((0x80 | _PONG, len(payload))) + payload)
        elif opcode == _PONG:
            pass
        elif opcode == _CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else NORMAL_CLOSURE
            self.close(code if _sendable(code) else PROTOCOL_ERROR)
        else:
            self.close(PROTOCOL_ERROR)

    def _message(self, opcode: int, payload: bytes) -> None:
        if self.sink is None:
            return
        if opcode == _TEXT:
            try:
                text = payload.decode()
            except UnicodeDecodeError:
                self.close(INVALID_TEXT)
                return
            self.sink.on_message(text)
        else:
            self.sink.on_message(payload)

    # -- closing -----------------------------------------------------------------------------

    def close(self, code: int = NORMAL_CLOSURE) -> None:
        """Send a close frame (once) and close the transport once what is buffered is sent."""
        if self._closing:
            return
        self._closing = True
        self._buffer = b""
        self._parts = None
        transport = self.transport
        if not transport.is_closing():
            transport.write(close_frame(code))
            transport.close()

    async def wait_closed(self) -> None:
        """Until the transport is gone (what was buffered written, or the peer gone)."""
        if self.sink is None:
            return
        if self._lost is None:
            self._lost = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._lost)

    def abort(self) -> None:
        self._closing = True
        self.transport.abort()


class HandedOver(web.StreamResponse):
    """What aiohttp 'sends' for a WebSocket handed to WebSocketConnection: nothing more."""

    def __init__(self) -> None:
        super().__init__(status=101)

    async def prepare(self, request: web.BaseRequest) -> None:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


def take_over(
    request: web.BaseRequest,
    accept: bytes,
    connect: Callable[[asyncio.Transport], WebSocketConnection],
) -> WebSocketConnection | None:
    """Answer 101 on the request's transport and move the transport to a WebSocketConnection.

    aiohttp's handler is then told that its connection is lost, with the transport detached so
    it is not closed: it forgets the request and ends its task as for a client that went away.
    None when the client is already gone.
    """
    handler = request.protocol
    transport = request.transport
    if transport is None or transport.is_closing():
        return None
    # Bytes that came after the upgrade request (a client should wait for the 101 first).
    tail = bytes(getattr(handler, "_message_tail", b"") or b"")
    transport.write(switching_protocols(accept))
    connection = connect(transport)
    transport.set_protocol(connection)
    transport.resume_reading()
    handler.transport = None
    handler.connection_lost(None)
    if tail:
        connection.data_received(tail)
    return connection
