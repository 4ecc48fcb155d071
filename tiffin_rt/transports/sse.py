"""GET /api/notifications/orders/{id}/status: an order's status as Server-Sent Events."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager

import orjson
from aiohttp import HttpVersion11, web
from aiohttp_sse import sse_response

from tiffin_rt import metrics
from tiffin_rt.access import AccessDenied
from tiffin_rt.auth import Identity
from tiffin_rt.core.events import (
    ORDER_STATUS,
    Event,
    current_status_message,
)
from tiffin_rt.core.hub import EVICTED, SSE, TOKEN_EXPIRED, EndReason, Message
from tiffin_rt.core.payments import PAYMENT_STATUS
from tiffin_rt.core.replay import InvalidEventId
from tiffin_rt.keys import (
    HUB,
    LISTENER,
    POOL,
    ROOM_ACCESS,
    SETTINGS,
    request_identity,
)
from tiffin_rt.transports.departures import Departures, client_gone
from tiffin_rt.transports.http_auth import json_error
from tiffin_rt.transports.sse_guard import end_stream, token_deadline
from tiffin_rt.transports.sse_replay import (
    PAYMENT,
    nothing_left,
    requested_resume,
    send_missed,
)

log = logging.getLogger(__name__)

ROUTE = "/api/notifications/orders/{id}/status"
# What an SSE message is, counted under the Socket.IO event that carries the same payload.
ORDER_STATUS_UPDATE = "orderStatusUpdate"

# Streams whose client has gone, told to end within a second: aiohttp cancels no handler when
# its client leaves (`tiffin-rt serve` runs without handler cancellation), so a stream waiting
# for its order's next event would otherwise hold its connection count until that event came.
SSE_DEPARTURES = web.AppKey("sse_departures", Departures)


# An SSE event as written: its bytes, the same as one HTTP chunk, and whether it ends the stream.
StreamParts = tuple[bytes, bytes, bool]


def sse_event(data: bytes, event_id: int, name: bytes = b"") -> bytes:
    """One event as aiohttp-sse writes it (`id:` only for events in the log; `event:` only
    for named events, which `EventSource.onmessage` does not receive)."""
    head = b"event: %s\r\n" % name if name else b""
    if event_id:
        return head + b"id: %d\r\ndata: %s\r\n\r\n" % (event_id, data)
    return head + b"data: %s\r\n\r\n" % data


def http_chunk(body: bytes) -> bytes:
    """`body` as one chunk of a chunked HTTP/1.1 response (what aiohttp's writer sends)."""
    return b"%x\r\n%s\r\n" % (len(body), body)


def stream_parts(event: Event, body: bytes, terminal: frozenset[str]) -> StreamParts | None:
    """An order event as its SSE streams get it, from its payload's JSON (`body`, serialised
    once for every transport): the SSE event, the same as an HTTP chunk, and whether it ends
    the stream (a terminal status); None for an event no order stream carries."""
    if event.kind == PAYMENT_STATUS:
        data = sse_event(body, event.id, PAYMENT)
        return data, http_chunk(data), False
    if event.kind != ORDER_STATUS:
        return None
    data = sse_event(body, event.id)
    status = event.payload.get("status")
    return data, http_chunk(data), isinstance(status, str) and status in terminal


class SseClient:
    """One SSE stream in the hub, written to by the hub from the moment it goes live.

    Until then (the order is being read, missed events replayed) messages are kept, and those
    the handler already sent are skipped when it goes live: no gap, no duplicate. Past
    `max_buffered` bytes kept, or written and not yet taken by the client, the stream is cut
    (the client resumes from Last-Event-ID). The handler waits for `ended()` and closes.
    """

    def __init__(
        self,
        who: Identity,
        request: web.BaseRequest,
        *,
        max_buffered: int,
        on_overflow: Callable[[], None],
    ) -> None:
        self.who = who
        self._request = request
        self._max_buffered = max_buffered
        self._on_overflow = on_overflow
        self._pending: list[Message] | None = []
        self._pending_bytes = 0
        self._transport: asyncio.Transport | None = None
        self._chunked = True
        self._last_sent = 0
        # Events at or below `_last_sent` the handler's read or replay did not cover: ids above
        # `_floor` outside `_covered` (committed after the read, with a lower id) still go out.
        self._floor: int | None = None
        self._covered: frozenset[int] = frozenset()
        self._ended: asyncio.Future[EndReason | None] = asyncio.get_running_loop().create_future()
        self._expiry: asyncio.TimerHandle | None = None

    def expire_at(self, deadline: float | None) -> None:
        """End with `token_expired` at this loop time (one timer, not a task per message)."""
        if deadline is not None and not self._ended.done():
            self._expiry = asyncio.get_running_loop().call_at(deadline, self.end, TOKEN_EXPIRED)

    def tick_writer(self) -> None:
        """None: the hub writes each message to the stream at once (`send`)."""

    def send(self, message: Message) -> None:
        metrics.delivered(message.name, "sse", 1)
        if self._ended.done():
            return
        if self._pending is not None:
            self._pending.append(message)
            self._pending_bytes += len(message.data)
            if self._pending_bytes > self._max_buffered:
                self._fell_behind()
            return
        self._write(message)

    def go_live(
        self, last_sent: int, *, floor: int | None = None, covered: frozenset[int] = frozenset()
    ) -> None:
        """The handler has sent everything up to `last_sent`: from now on the hub writes. An
        event at or below it is still written when its id is above `floor` and not in
        `covered` (what the handler's read or replay held): it committed after them, out of id
        order (a payment or a gateway update committed before an order change with a lower
        id). Without `floor`, nothing at or below `last_sent` is written."""
        self._last_sent = last_sent
        self._floor = floor
        self._covered = covered
        # Not isinstance(asyncio.Transport): uvloop's transports (`tiffin-rt serve`) are not.
        self._transport = self._request.transport
        self._chunked = self._request.version >= HttpVersion11
        pending, self._pending = self._pending or [], None
        for message in pending:
            if self._ended.done():
                return
            self._write(message)

    def _write(self, message: Message) -> None:
        event_id = message.event_id
        if event_id:
            if event_id > self._last_sent:
                self._last_sent = event_id
            elif self._floor is None or event_id <= self._floor or event_id in self._covered:
                return  # the replay or the first event already had it
        transport = self._transport
        if transport is None or transport.is_closing():
            self.end()
            return
        if self._chunked and message.chunk:
            transport.write(message.chunk)
        elif self._chunked:
            transport.write(http_chunk(message.data))
        else:
            transport.write(message.data)
        if transport.get_write_buffer_size() > self._max_buffered:
            self._fell_behind()
        elif message.final:
            self.end()

    def _fell_behind(self) -> None:
        self.end()
        self._on_overflow()

    def end(self, reason: EndReason | None = None) -> None:
        if not self._ended.done():
            self._ended.set_result(reason)
        self._pending = None
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def evicted(self, room: str) -> None:
        self.end(EVICTED)

    async def ended(self) -> EndReason | None:
        return await self._ended


@contextmanager
def ending(client: SseClient) -> Iterator[None]:
    """However the handler leaves, the client is ended (its expiry timer too)."""
    try:
        yield
    finally:
        client.end()


def _left(order_id: str) -> web.StreamResponse:
    """The client went away while the stream was being set up: nothing is written to it."""
    log.debug("SSE client on order %s left before its stream started", order_id)
    return web.Response(status=499)


async def order_status_stream(request: web.Request) -> web.StreamResponse:
    app = request.app
    settings = app[SETTINGS]
    who = request_identity(request)
    pool = app[POOL]
    terminal = set(settings.notifications.terminal_statuses)
    try:
        room = app[ROOM_ACCESS].order_room(request.match_info["id"])
        resume_from = requested_resume(request)
    except (AccessDenied, InvalidEventId) as exc:
        metrics.refused("sse", "bad_request")
        return json_error(400, "bad_request", str(exc))
    order_id = room.key

    def fell_behind() -> None:
        metrics.slow_consumer_dropped("sse")
        log.warning(
            "SSE client on order %s fell more than %d KiB behind; disconnected"
            " (it resumes from Last-Event-ID)",
            order_id,
            settings.delivery.max_buffered_kib,
        )
        if request.transport is not None:
            request.transport.abort()

    hub = app[HUB]
    client = SseClient(
        who,
        request,
        max_buffered=settings.delivery.max_buffered_kib * 1024,
        on_overflow=fell_behind,
    )
    listener = app.get(LISTENER)
    with (
        hub.subscribed(SSE, room.name, client),
        app[SSE_DEPARTURES].watch(request, client.end),
        ending(client),
    ):
        # Taken as it subscribed: every event the stream gets has a larger id.
        floor = listener.floor if listener is not None else None
        # Subscribed first, then read: anything committed in between is kept or in the read.
        # Read through the authorizer, so an order event older than this read (delivered late
        # by a listener waiting behind a running transaction) does not end the stream.
        try:
            snapshot = await app[ROOM_ACCESS].current(order_id, seen_after=floor)
        except AccessDenied:
            log.warning("SSE order %s: database unavailable", order_id)
            return json_error(503, "unavailable", "the database is unavailable; try again")
        if client_gone(request):
            return _left(order_id)
        try:
            app[ROOM_ACCESS].admit(who, room, snapshot.parties if snapshot else None)
        except AccessDenied as exc:
            metrics.refused("sse", exc.code)
            return json_error(404 if exc.code == "not_found" else 403, exc.code, exc.message)
        assert snapshot is not None
        if resume_from is not None and nothing_left(snapshot, resume_from, terminal):
            return web.Response(status=204)

        metrics.connected("sse")
        async with sse_response(
            request, ping_interval=settings.notifications.sse_ping_interval
        ) as stream:
            # Ended by the authorizer (the order changed hands), the departures timer (the
            # client left), a terminal status, falling behind, or the token's expiry.
            client.expire_at(token_deadline(who, settings.auth.leeway))
            try:
                replayed = None
                if resume_from is not None:
                    replayed = await send_missed(
                        stream,
                        pool,
                        order_id=snapshot.order_id,
                        after=resume_from,
                        terminal=terminal,
                        limit=settings.replay.max_events,
                        retry_ms=settings.notifications.sse_retry_ms,
                    )
                if replayed is not None:
                    last_sent = replayed.last_sent
                    if replayed.finished:
                        return stream
                    floor, covered = resume_from, replayed.covered
                else:
                    covered = snapshot.seen or frozenset()
                    first = current_status_message(snapshot)
                    last_sent = first["eventId"]
                    await stream.send(
                        orjson.dumps(first).decode(),
                        id=str(last_sent),
                        retry=settings.notifications.sse_retry_ms,
                    )
                    metrics.delivered(ORDER_STATUS_UPDATE, "sse", 1)
                    if snapshot.status in terminal:
                        return stream
                await stream.write(b"")  # the head, if nothing was sent yet: the hub writes bodies
                client.go_live(last_sent, floor=floor, covered=covered)
                reason = await client.ended()
                if reason is not None and not client_gone(request):
                    await end_stream(stream, *reason)
            except ConnectionResetError:
                log.debug("SSE client on order %s left mid-write", order_id)
        return stream


async def _departures(app: web.Application) -> AsyncIterator[None]:
    app[SSE_DEPARTURES] = departures = Departures()
    yield
    departures.close()


def setup_sse(app: web.Application) -> None:
    app.router.add_get(ROUTE, order_status_stream)
    app.cleanup_ctx.append(_departures)
