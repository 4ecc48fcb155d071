"""GET /api/notifications/orders/{id}/status: an order's status as Server-Sent Events."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

import orjson
from aiohttp import web
from aiohttp_sse import sse_response

from tiffin_rt.access import AccessDenied, Admits
from tiffin_rt.auth import Identity
from tiffin_rt.core.events import (
    ORDER_STATUS,
    Event,
    current_status_message,
    order_status_message,
)
from tiffin_rt.core.replay import InvalidEventId
from tiffin_rt.core.rooms import Room
from tiffin_rt.core.streams import OrderStreams, StreamMessage
from tiffin_rt.db.inbox import DB_ERRORS
from tiffin_rt.keys import (
    ORDER_QUERIES,
    ORDER_STREAMS,
    POOL,
    ROOM_ACCESS,
    SETTINGS,
    request_identity,
)
from tiffin_rt.transports.departures import Departures, client_gone
from tiffin_rt.transports.http_auth import json_error
from tiffin_rt.transports.sse_guard import end_stream, token_deadline
from tiffin_rt.transports.sse_replay import nothing_left, requested_resume, send_missed

log = logging.getLogger(__name__)

ROUTE = "/api/notifications/orders/{id}/status"

# Streams whose client has gone, told to end within a second: aiohttp cancels no handler when
# its client leaves (`tiffin-rt serve` runs without handler cancellation), so a stream waiting
# for its order's next event would otherwise hold its connection count until that event came.
SSE_DEPARTURES = web.AppKey("sse_departures", Departures)


class SseSink:
    """Encodes each order event once and hands it to every stream watching that order."""

    def __init__(self, streams: OrderStreams, terminal_statuses: Sequence[str]) -> None:
        self._streams = streams
        self._terminal = frozenset(terminal_statuses)

    async def deliver(self, events: Sequence[Event]) -> None:
        for event in events:
            if event.kind != ORDER_STATUS or event.order_id is None:
                continue
            if not self._streams.watching(event.order_id):
                continue
            message = order_status_message(event)
            self._streams.publish(
                event.order_id,
                StreamMessage(
                    event_id=event.id,
                    data=orjson.dumps(message).decode(),
                    final=message["status"] in self._terminal,
                ),
            )


class SseStreams:
    """SSE streams as the authorizer sees them: a stream the policy no longer admits ends."""

    def __init__(self, streams: OrderStreams) -> None:
        self._streams = streams

    def evict(self, room: Room, admits: Admits) -> None:
        if room.kind == "order":
            self._streams.evict(room.key, lambda who: isinstance(who, Identity) and admits(who))


def _left(order_id: str) -> web.StreamResponse:
    """The client went away while the stream was being set up: nothing is written to it."""
    log.debug("SSE client on order %s left before its stream started", order_id)
    return web.Response(status=499)


async def order_status_stream(request: web.Request) -> web.StreamResponse:
    app = request.app
    settings = app[SETTINGS]
    who = request_identity(request)
    queries, pool = app[ORDER_QUERIES], app[POOL]
    terminal = set(settings.notifications.terminal_statuses)
    try:
        room = app[ROOM_ACCESS].order_room(request.match_info["id"])
        resume_from = requested_resume(request)
    except (AccessDenied, InvalidEventId) as exc:
        return json_error(400, "bad_request", str(exc))
    order_id = room.key

    def fell_behind() -> None:
        log.warning(
            "SSE client on order %s fell more than %d KiB behind; disconnected"
            " (it resumes from Last-Event-ID)",
            order_id,
            settings.delivery.max_buffered_kib,
        )
        if request.transport is not None:
            request.transport.abort()

    streams = app[ORDER_STREAMS]
    with (
        streams.watch(order_id, on_overflow=fell_behind, who=who) as queue,
        app[SSE_DEPARTURES].watch(request, lambda: streams.end(queue)),
    ):
        # Subscribed first, then read: anything committed in between is in the queue or the read.
        try:
            snapshot = await queries.fetch(pool, order_id)
        except DB_ERRORS as exc:
            log.warning("SSE order %s: database unavailable: %s", order_id, type(exc).__name__)
            return json_error(503, "unavailable", "the database is unavailable; try again")
        if client_gone(request):
            return _left(order_id)
        try:
            app[ROOM_ACCESS].admit(who, room, snapshot.parties if snapshot else None)
        except AccessDenied as exc:
            return json_error(404 if exc.code == "not_found" else 403, exc.code, exc.message)
        assert snapshot is not None
        if resume_from is not None and nothing_left(snapshot, resume_from, terminal):
            return web.Response(status=204)

        async with sse_response(
            request, ping_interval=settings.notifications.sse_ping_interval
        ) as stream:
            expiry = asyncio.timeout_at(token_deadline(who, settings.auth.leeway))
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
                else:
                    first = current_status_message(snapshot)
                    last_sent = first["eventId"]
                    await stream.send(
                        orjson.dumps(first).decode(),
                        id=str(last_sent),
                        retry=settings.notifications.sse_retry_ms,
                    )
                    if snapshot.status in terminal:
                        return stream
                # Ended by the authorizer (EVICTED) when the order changes hands, by the
                # departures timer when the client leaves, at the token's expiry here.
                async with expiry:
                    while stream.is_connected():
                        message = await queue.get()
                        if message.reason is not None:
                            await end_stream(stream, *message.reason)
                            break
                        if message.event_id < 0:
                            break
                        if message.event_id == 0:
                            # from a backend's own NOTIFY channel: no log id, nothing to resume
                            await stream.send(message.data)
                        elif message.event_id > last_sent:
                            await stream.send(message.data, id=str(message.event_id))
                            last_sent = message.event_id
                        else:
                            continue
                        if message.final:
                            break
            except TimeoutError:
                if not expiry.expired():
                    raise  # a stalled client's send (aiohttp-sse aborted it)
                if stream.is_connected():
                    await end_stream(stream, "token_expired", "the token expired")
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
