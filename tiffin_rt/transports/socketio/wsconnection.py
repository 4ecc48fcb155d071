"""A WebSocket connection of its own after the handshake: an asyncio.Protocol on the transport.

aiohttp keeps, for the life of a WebSocket, the parsed upgrade request, its request handler and
parser, two tasks and the coroutine frames of every middleware and of Engine.IO's connect path
(about 12 KiB per idle connection, measured). Here aiohttp answers nothing: the 101 response is
written on its transport, the transport is moved to `WebSocketConnection`, and aiohttp's handler
is told the connection is gone, so its request, frames and task are freed (the two aiohttp
internals this takes, A1 and A2, are in engine_internals.py). What is left per
connection is this protocol object and a sans-IO `wsproto` connection (about 1.7 KB).

The RFC 6455 frames are wsproto's (masking, fragments, control frames, UTF-8, close codes);
this module moves bytes between it and the transport. A message larger than the limit closes
with 1009 before more of it is buffered; what wsproto finds malformed closes with its code
(1002 protocol error, 1007 invalid UTF-8); a client's close frame is answered with its code.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Callable
from typing import Protocol, cast

from aiohttp import web
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import LocalProtocolError, generate_accept_token

from tiffin_rt.transports.socketio.engine_internals import release_request_handler, unread_tail

NORMAL_CLOSURE = 1000
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
    return generate_accept_token(key.encode())


def switching_protocols(accept: bytes) -> bytes:
    return (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


class WebSocketConnection(asyncio.Protocol):
    """Feeds the transport's bytes to wsproto and hands whole messages to `sink`."""

    __slots__ = (
        "_closing",
        "_limit",
        "_lost",
        "_parts",
        "_paused",
        "_size",
        "_ws",
        "sink",
        "transport",
    )

    def __init__(self, sink: MessageSink, transport: asyncio.Transport, *, max_message: int):
        self.sink: MessageSink | None = sink
        self.transport = transport
        self._ws = Connection(ConnectionType.SERVER)
        self._limit = max_message
        self._parts: list[str | bytes] | None = None  # a message arriving in several pieces
        self._size = 0
        self._closing = False
        self._paused = False
        self._lost: asyncio.Future[None] | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_lost(self, exc: BaseException | None) -> None:
        self._closing = True
        self._parts = None
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.on_lost()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._ws.receive_data(data)
        if not self._paused:
            self._handle_events()

    def _handle_events(self) -> None:
        """What wsproto parsed, until paused: frames not taken yet stay in its buffer."""
        ws = self._ws
        for event in ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                self._piece(event.data, event.message_finished)
            elif isinstance(event, Ping):
                self.transport.write(ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                # The client's close frame is echoed; a malformed frame is answered with
                # wsproto's code (1002 protocol error, 1007 invalid UTF-8).
                self.close(event.code)
            if self._closing or self._paused:
                return

    def _piece(self, data: str | bytes | bytearray, finished: bool) -> None:
        size = self._size + (len(data.encode()) if isinstance(data, str) else len(data))
        if size > self._limit:
            self.close(MESSAGE_TOO_BIG)  # before buffering more of it
            return
        if not finished:
            if self._parts is None:
                self._parts = []
            self._parts.append(data if isinstance(data, str) else bytes(data))
            self._size = size
            return
        parts, self._parts, self._size = self._parts or [], None, 0
        message: str | bytes
        if isinstance(data, str):
            message = "".join(cast(list[str], parts)) + data
        else:
            message = b"".join(cast(list[bytes], parts)) + data
        if self.sink is not None:
            self.sink.on_message(message)

    # -- flow control (the sink has too many messages waiting) -----------------------------

    def pause_reading(self) -> None:
        if not self._paused and not self._closing:
            self._paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused and not self._closing:
            self._paused = False
            self.transport.resume_reading()
            self._handle_events()

    # -- closing -----------------------------------------------------------------------------

    def close(self, code: int = NORMAL_CLOSURE) -> None:
        """Send a close frame (once) and close the transport once what is buffered is sent."""
        if self._closing:
            return
        self._closing = True
        self._parts = None
        transport = self.transport
        if transport.is_closing():
            return
        with contextlib.suppress(LocalProtocolError):  # a close frame went out already
            transport.write(self._ws.send(CloseConnection(code=code)))
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
    transport = request.transport
    if transport is None or transport.is_closing():
        return None
    # Bytes that came after the upgrade request (a client should wait for the 101 first).
    tail = unread_tail(request)
    transport.write(switching_protocols(accept))
    connection = connect(transport)
    transport.set_protocol(connection)
    transport.resume_reading()
    release_request_handler(request)
    if tail:
        connection.data_received(tail)
    return connection
