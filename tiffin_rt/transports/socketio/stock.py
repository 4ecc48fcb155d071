"""The stock Engine.IO socket (long-polling, WebSocket upgraded from it, compressed), bounded.

python-engineio puts every packet for a socket on an unbounded asyncio.Queue. Long-polling
takes them with the client's next GET; the WebSocket writer task takes all of them at once and
sends them one by one, waiting whenever the transport's buffer is full. A client that stops
polling, or stops reading its WebSocket, lets that queue grow without end. Here the queue counts
its bytes and the socket counts the batch last taken from it (what the writer or the last GET
still holds); past `delivery.max_buffered_kib` together, the connection is dropped with one
warning, as a lean WebSocket (websocket.py) and an SSE stream are: the client reconnects and
resumes from its last event id, so it misses nothing.

It overrides python-engineio's socket methods `poll`, `send`, `close` and the long-polling
handlers (public, undocumented; their shapes are checked at startup with the private
touchpoints in engine_internals.py, where the queue's byte count lives too).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio.async_socket import AsyncSocket
from engineio.payload import Payload

from tiffin_rt import metrics
from tiffin_rt.transports.socketio.engine_guard import guarded_post
from tiffin_rt.transports.socketio.engine_internals import CountingQueue

log = logging.getLogger(__name__)

# The most packets one long-polling answer carries: python-engineio's client (the official
# python-socketio client) refuses a longer payload ("Unexpected packet from server") and drops
# the connection, so a burst or a replay of more would drop it again at every reconnect.
MAX_PACKETS_PER_POLL = Payload.max_decode_packets


def packet_size(pkt: eio_packet.Packet | None) -> int:
    """About the bytes a packet takes on the wire: its data and its type."""
    if pkt is None:
        return 0
    data = pkt.data
    if isinstance(data, bytes):
        return len(data) + 1
    if isinstance(data, str):
        return (len(data) if data.isascii() else len(data.encode())) + 1
    return 1  # a control packet (or the handshake's small JSON)


class PacketQueue(CountingQueue[eio_packet.Packet | None]):
    """A socket's packets not yet taken for sending, and how many bytes they hold."""

    def item_size(self, item: eio_packet.Packet | None) -> int:
        return packet_size(item)

    def discard(self) -> None:
        """Forget every packet waiting (the connection is being dropped)."""
        while not self.empty():
            self.get_nowait()
            self.task_done()


class StockSocket(AsyncSocket):  # type: ignore[misc]
    """python-engineio's socket with `delivery.max_buffered_kib` on its unsent packets."""

    # Set by engineio's BaseSocket.__init__ (untyped upstream).
    server: Any
    sid: str
    queue: Any
    last_ping: float | None
    closing: bool
    closed: bool

    # Bytes of the last batch taken from the queue: held by the WebSocket writer until it has
    # sent them all (it takes the next batch only then), or in the last polling response.
    in_flight: int = 0
    # A stock WebSocket's transport (set by the WebSocket driver): cut when the client is behind.
    ws_transport: asyncio.Transport | None = None
    overflowed: bool = False

    @property
    def unsent(self) -> int:
        queue = self.queue
        queued = queue.queued_bytes if isinstance(queue, PacketQueue) else 0
        return int(queued) + self.in_flight

    async def handle_get_request(self, environ: dict[str, Any]) -> Any:
        """A long-polling GET; if its client leaves while it waits, the session ends.

        As socket.io's own server does ("poll connection closed prematurely"): without it a
        client that vanished held its session, its user's connection slot and its rooms until
        the ping timeout, since aiohttp does not cancel the waiting handler (see departures.py).
        """
        request = environ.get("aiohttp.request")
        if request is None or self.upgrading or self.upgraded or "HTTP_UPGRADE" in environ:
            return await super().handle_get_request(environ)
        with self.server.departures.watch(request, self._poller_left):
            return await super().handle_get_request(environ)

    def _poller_left(self) -> None:
        log.info("%s: the long-polling client left mid-poll; closing its session", self.sid)
        self.server.spawn(
            self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
        )

    async def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        """Closed without a close packet (the client's own close, a dropped connection): a GET
        still waiting is answered at once instead of after ping_interval + ping_timeout."""
        closing_now = not self.closed and not self.closing
        await super().close(wait=wait, abort=abort, reason=reason)
        if abort and closing_now:
            self.queue.put_nowait(None)

    async def poll(self) -> list[eio_packet.Packet]:
        """python-engineio's poll, taking at most MAX_PACKETS_PER_POLL: the rest wait in the
        queue (still counted against the limit) for the next GET, or the writer's next batch."""
        self.in_flight = 0
        queue = self.queue
        try:
            first = await asyncio.wait_for(
                queue.get(), self.server.ping_interval + self.server.ping_timeout
            )
            queue.task_done()
        except (TimeoutError, asyncio.CancelledError):
            raise eio_exceptions.QueueEmpty() from None
        if first is None:
            return []
        packets: list[eio_packet.Packet] = [first]
        while len(packets) < MAX_PACKETS_PER_POLL:
            try:
                pkt = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            queue.task_done()
            if pkt is None:  # the session closes after this batch
                queue.put_nowait(None)
                break
            packets.append(pkt)
        self.in_flight = sum(map(packet_size, packets))
        return packets

    async def handle_post_request(self, environ: dict[str, Any]) -> None:
        """A malformed or oversized POST is answered 400/413 at once (engine_guard.py)."""
        await guarded_post(self, environ)

    async def send(self, pkt: eio_packet.Packet) -> None:
        if self.overflowed:
            return
        await super().send(pkt)
        self._check_limit()

    def send_now(self, pkt: eio_packet.Packet) -> None:
        """`send` without awaiting, for room emits: the queue is unbounded, so putting a
        packet on it never waits. As python-engineio's `send`, a client past its ping timeout
        is closed (with a close packet) instead; a closed socket is sent nothing."""
        if self.overflowed or self.closed:
            return
        last_ping = self.last_ping
        if last_ping and time.time() - last_ping > self.server.ping_timeout:
            if not self.closing:
                self.server.spawn(
                    self.close(wait=False, abort=False, reason=self.server.reason.PING_TIMEOUT)
                )
            return
        self.queue.put_nowait(pkt)
        self._check_limit()

    def _check_limit(self) -> None:
        limit: int = self.server.max_buffered
        unsent = self.unsent
        if unsent > limit and not self.closed:
            self._overflow(unsent, limit)

    def _overflow(self, unsent: int, limit: int) -> None:
        """Too far behind: drop what waits and the connection; the client resumes from its id."""
        self.overflowed = True
        log.warning(
            "%s: client is %d bytes behind (limit %d); disconnecting it", self.sid, unsent, limit
        )
        metrics.slow_consumer_dropped("websocket" if self.upgraded else "polling")
        if isinstance(self.queue, PacketQueue):
            self.queue.discard()
        self.in_flight = 0
        if self.ws_transport is not None:
            self.ws_transport.abort()  # a writer waiting for the buffer to drain gives up
        self.server.spawn(self._drop())

    async def _drop(self) -> None:
        await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_ERROR)
        if self.server.sockets.get(self.sid) is self:
            # Its next poll is answered 400 (unknown session) and the client reconnects.
            del self.server.sockets[self.sid]
