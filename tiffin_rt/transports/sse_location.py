"""GET /api/notifications/orders/{id}/location: the order's rider positions as Server-Sent Events.

Same token and room policy as the status stream (transports/sse.py). The first event is the
last known position (when there is one), then every new one, latest wins: a stream whose
client has not taken what it was sent keeps only the newest position for it (superseding,
counted). Positions are not in the event log: no `id:`, nothing to resume; a reconnecting
`EventSource` starts again from the newest. The stream ends with `event: end` when the order
is delivered or cancelled, when the order changes hands away from the watcher, or at the
token's expiry; an order already finished answers 204 (an EventSource then stops).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
from aiohttp import HttpVersion11, web
from aiohttp_sse import sse_response

from tiffin_rt import metrics
from tiffin_rt.access import AccessDenied, Admits
from tiffin_rt.auth import Identity
from tiffin_rt.core.hub import TOKEN_EXPIRED, EndReason
from tiffin_rt.core.rooms import Room
from tiffin_rt.db.errors import DB_ERRORS
from tiffin_rt.keys import ORDER_QUERIES, POOL, ROOM_ACCESS, SETTINGS, request_identity
from tiffin_rt.tracking.service import Position, RiderTracking
from tiffin_rt.transports.departures import client_gone
from tiffin_rt.transports.http_auth import json_error
from tiffin_rt.transports.sse import SSE_DEPARTURES, http_chunk
from tiffin_rt.transports.sse_guard import end_stream, token_deadline

log = logging.getLogger(__name__)

ROUTE = "/api/notifications/orders/{id}/location"
RIDER_TRACKING = web.AppKey("rider_tracking", RiderTracking)


class Encoded:
    """A position as both wire forms carry it, encoded once for every stream."""

    __slots__ = ("chunk", "plain", "seq")

    def __init__(self, position: Position) -> None:
        self.seq = position.seq
        self.plain = b"data: %s\r\n\r\n" % orjson.dumps(position.message)
        self.chunk = http_chunk(self.plain)


class LocationStream:
    """One open stream: written at once while its client keeps up, else the newest waits."""

    def __init__(
        self, who: Identity, request: web.BaseRequest, *, retry: float, streams: LocationStreams
    ) -> None:
        self.who = who
        self._request = request
        self._retry = retry
        self._streams = streams
        self._transport: asyncio.Transport | None = None
        self._chunked = True
        self._sent_seq = 0
        self._waiting: Encoded | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._ended: asyncio.Future[EndReason | None] = asyncio.get_running_loop().create_future()
        self._expiry: asyncio.TimerHandle | None = None

    def send(self, message: Encoded) -> None:
        if self._ended.done() or message.seq <= self._sent_seq:
            return
        if self._transport is None or self._behind():
            self._hold(message)
            return
        self._write(message)

    def go_live(self, first: Encoded | None) -> None:
        """The head is written: the newest of `first` and what came meanwhile goes out now."""
        self._transport = self._request.transport
        self._chunked = self._request.version >= HttpVersion11
        waiting, self._waiting = self._waiting, None
        if first is not None and (waiting is None or first.seq > waiting.seq):
            waiting = first
        if waiting is not None:
            self._write(waiting)

    def drop_waiting(self) -> None:
        self._waiting = None

    def expire_at(self, deadline: float | None) -> None:
        if deadline is not None and not self._ended.done():
            self._expiry = asyncio.get_running_loop().call_at(deadline, self.end, TOKEN_EXPIRED)

    def _behind(self) -> bool:
        transport = self._transport
        return transport is not None and transport.get_write_buffer_size() > 0

    def _hold(self, message: Encoded) -> None:
        waiting = self._waiting
        if waiting is not None:
            if waiting.seq >= message.seq:
                return
            self._streams.superseded += 1
        self._waiting = message
        if self._transport is not None and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._retry, self._try_again)

    def _try_again(self) -> None:
        self._timer = None
        waiting = self._waiting
        if waiting is None or self._ended.done():
            return
        if self._behind():
            self._timer = asyncio.get_running_loop().call_later(self._retry, self._try_again)
            return
        self._waiting = None
        self._streams.sent_late += 1
        self._write(waiting)

    def _write(self, message: Encoded) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            self.end()
            return
        self._sent_seq = message.seq
        transport.write(message.chunk if self._chunked else message.plain)
        self._streams.sent += 1

    def end(self, reason: EndReason | None = None) -> None:
        if not self._ended.done():
            self._ended.set_result(reason)
        self._waiting = None
        for timer in (self._timer, self._expiry):
            if timer is not None:
                timer.cancel()
        self._timer = self._expiry = None

    async def ended(self) -> EndReason | None:
        return await self._ended


class LocationStreams:
    """Open location streams by order: the SSE side of RiderTracking (its Watchers), and, for
    the authorizer, streams to end when the order changes hands (access.RoomMembers)."""

    def __init__(self) -> None:
        self._orders: dict[str, set[LocationStream]] = defaultdict(set)
        self.sent = 0
        self.superseded = 0
        self.sent_late = 0

    def __len__(self) -> int:
        return sum(len(s) for s in self._orders.values())

    def describe(self) -> dict[str, int]:
        return {
            "streams": len(self),
            "sent": self.sent,
            "superseded": self.superseded,
            "sentLate": self.sent_late,
        }

    @contextmanager
    def subscribed(self, order_id: str, stream: LocationStream) -> Iterator[None]:
        self._orders[order_id].add(stream)
        try:
            yield
        finally:
            streams = self._orders.get(order_id)
            if streams is not None:
                streams.discard(stream)
                if not streams:
                    del self._orders[order_id]

    def publish(self, position: Position) -> None:
        streams = self._orders.get(position.order_id)
        if not streams:
            return
        encoded = Encoded(position)
        for stream in list(streams):
            stream.send(encoded)

    def send_to(self, sid: str, position: Position) -> None:
        """Socket.IO joiners only."""

    def close_order(self, order_id: str, status: str) -> None:
        for stream in list(self._orders.get(order_id, ())):
            stream.end(("order_closed", f"order {order_id} is {status}; no more positions"))

    def forget(self, order_id: str) -> None:
        for stream in list(self._orders.get(order_id, ())):
            stream.drop_waiting()

    def evict(self, room: Room, admits: Admits) -> None:
        if room.kind != "order":
            return
        for stream in list(self._orders.get(room.key, ())):
            if not admits(stream.who):
                stream.end(("forbidden", "you may no longer watch this order"))

    def close_all(self) -> None:
        for streams in list(self._orders.values()):
            for stream in list(streams):
                stream.end()


LOCATION_STREAMS = web.AppKey("location_streams", LocationStreams)


async def order_location_stream(request: web.Request) -> web.StreamResponse:
    app = request.app
    settings = app[SETTINGS]
    who = request_identity(request)
    access = app[ROOM_ACCESS]
    try:
        room = access.order_room(request.match_info["id"])
    except AccessDenied as exc:
        metrics.refused("sse_location", "bad_request")
        return json_error(400, "bad_request", str(exc))
    order_id = room.key
    streams, tracking = app[LOCATION_STREAMS], app[RIDER_TRACKING]
    stream = LocationStream(
        who, request, retry=settings.tracking.slow_client_retry_ms / 1000, streams=streams
    )
    with streams.subscribed(order_id, stream), app[SSE_DEPARTURES].watch(request, stream.end):
        try:
            try:
                snapshot = await app[ORDER_QUERIES].fetch(app[POOL], order_id)
            except DB_ERRORS as exc:
                log.warning(
                    "SSE location %s: database unavailable: %s", order_id, type(exc).__name__
                )
                return json_error(503, "unavailable", "the database is unavailable; try again")
            if client_gone(request):
                return web.Response(status=499)
            try:
                access.admit(who, room, snapshot.parties if snapshot else None)
            except AccessDenied as exc:
                metrics.refused("sse_location", exc.code)
                return json_error(404 if exc.code == "not_found" else 403, exc.code, exc.message)
            assert snapshot is not None
            if snapshot.status in settings.notifications.terminal_statuses:
                return web.Response(status=204)
            latest = await tracking.latest(order_id)
            async with sse_response(
                request, ping_interval=settings.notifications.sse_ping_interval
            ) as response:
                stream.expire_at(token_deadline(who, settings.auth.leeway))
                try:
                    await response.write(b"")  # the head: from now on positions are written
                    stream.go_live(Encoded(latest) if latest is not None else None)
                    reason = await stream.ended()
                    if reason is not None and not client_gone(request):
                        await end_stream(response, *reason)
                except ConnectionResetError:
                    log.debug("SSE location client on order %s left mid-write", order_id)
            return response
        finally:
            stream.end()


def setup_location_sse(app: web.Application) -> LocationStreams:
    streams = app[LOCATION_STREAMS] = LocationStreams()
    app.router.add_get(ROUTE, order_location_stream)
    return streams
