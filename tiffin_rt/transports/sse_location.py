"""GET /api/notifications/orders/{id}/location: the order's rider positions as Server-Sent Events.

Same token and room policy as the status stream (transports/sse.py). Each stream is a hub client
(core/hub.py) in the order's room of the `LOCATION` namespace: positions reach it through
`Hub.publish`, and the authorizer's `Hub.evict` ends it when the order changes hands away from
the watcher. The first event is the last known position (when there is one), then every new
one, latest wins: a stream whose client has not taken what it was sent keeps only the newest
position for it (superseding, counted). Positions are not in the event log: no `id:`, nothing
to resume; a reconnecting `EventSource` starts again from the newest. The stream ends with
`event: end` when the order is delivered or cancelled, when the order changes hands away from
the watcher, or at the token's expiry; an order already finished answers 204 (an EventSource
then stops).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
from aiohttp import HttpVersion11, web
from aiohttp_sse import sse_response

from tiffin_rt import metrics
from tiffin_rt.access import AccessDenied
from tiffin_rt.auth import Identity
from tiffin_rt.core.hub import EVICTED, TOKEN_EXPIRED, EndReason, Hub, Message
from tiffin_rt.core.rooms import room_for_order
from tiffin_rt.keys import HUB, ROOM_ACCESS, SETTINGS, request_identity
from tiffin_rt.tracking.service import Position, RiderTracking
from tiffin_rt.transports.departures import client_gone
from tiffin_rt.transports.http_auth import json_error
from tiffin_rt.transports.sse import SSE_DEPARTURES, http_chunk
from tiffin_rt.transports.sse_guard import end_stream, token_deadline

log = logging.getLogger(__name__)

ROUTE = "/api/notifications/orders/{id}/location"
RIDER_TRACKING = web.AppKey("rider_tracking", RiderTracking)

# The hub namespace of rider location streams (rooms `order-<id>`), apart from the status
# streams' (`hub.SSE`), which get every order event; the same name labels them on /metrics.
LOCATION = "sse_location"
EVENT = "riderLocation"


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionMessage(Message):
    """A rider position as the hub carries it: `data` and `chunk` its SSE event, `seq` its
    place among this node's positions (latest wins). Not in the log: `event_id` stays 0, so
    nothing takes it for an event to resume from."""

    seq: int


def position_message(position: Position) -> PositionMessage:
    """A position encoded once for every stream watching its order."""
    data = b"data: %s\r\n\r\n" % orjson.dumps(position.message)
    return PositionMessage(
        event_id=0, data=data, chunk=http_chunk(data), name=EVENT, seq=position.seq
    )


class LocationStream:
    """One open stream, a hub client: written at once while its client keeps up, else the
    newest position waits (one timer retries)."""

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
        self._waiting: PositionMessage | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._ended: asyncio.Future[EndReason | None] = asyncio.get_running_loop().create_future()
        self._expiry: asyncio.TimerHandle | None = None

    def tick_writer(self) -> None:
        """None: the hub hands each position to `send` at once."""

    def send(self, message: Message) -> None:
        """A position (only positions are published to `LOCATION`): written, or kept as the
        newest while the client is behind or the stream is not live yet."""
        if (
            not isinstance(message, PositionMessage)
            or self._ended.done()
            or message.seq <= self._sent_seq
        ):
            return
        if self._transport is None or self._behind():
            self._hold(message)
            return
        self._write(message)

    def go_live(self, first: PositionMessage | None) -> None:
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

    def _hold(self, message: PositionMessage) -> None:
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

    def _write(self, message: PositionMessage) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            self.end()
            return
        self._sent_seq = message.seq
        transport.write(message.chunk if self._chunked else message.data)
        self._streams.sent += 1

    def end(self, reason: EndReason | None = None) -> None:
        if not self._ended.done():
            self._ended.set_result(reason)
        self._waiting = None
        for timer in (self._timer, self._expiry):
            if timer is not None:
                timer.cancel()
        self._timer = self._expiry = None

    def evicted(self, room: str) -> None:
        """The order changed hands away from the watcher (the authorizer, through the hub)."""
        self.end(EVICTED)

    async def ended(self) -> EndReason | None:
        return await self._ended


class LocationStreams:
    """The SSE side of RiderTracking (its Watchers): positions published through the hub to
    the order's location streams, and what the streams did with them (/healthz, /metrics)."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self.sent = 0
        self.superseded = 0
        self.sent_late = 0

    def __len__(self) -> int:
        return self._hub.count(LOCATION)

    def describe(self) -> dict[str, int]:
        return {
            "streams": len(self),
            "sent": self.sent,
            "superseded": self.superseded,
            "sentLate": self.sent_late,
        }

    def _streams(self, order_id: str) -> Iterator[LocationStream]:
        for client in list(self._hub.members(LOCATION, room_for_order(order_id))):
            if isinstance(client, LocationStream):
                yield client

    def publish(self, position: Position) -> None:
        room = room_for_order(position.order_id)
        if self._hub.has_room(LOCATION, room):  # encoded only when someone watches
            self._hub.publish(LOCATION, room, position_message(position))

    def send_to(self, sid: str, position: Position) -> None:
        """Socket.IO joiners only."""

    def close_order(self, order_id: str, status: str) -> None:
        for stream in self._streams(order_id):
            stream.end(("order_closed", f"order {order_id} is {status}; no more positions"))

    def forget(self, order_id: str) -> None:
        for stream in self._streams(order_id):
            stream.drop_waiting()


LOCATION_STREAMS = web.AppKey("location_streams", LocationStreams)


async def order_location_stream(request: web.Request) -> web.StreamResponse:
    app = request.app
    settings = app[SETTINGS]
    who = request_identity(request)
    access = app[ROOM_ACCESS]
    try:
        room = access.order_room(request.match_info["id"])
    except AccessDenied as exc:
        metrics.refused(LOCATION, "bad_request")
        return json_error(400, "bad_request", str(exc))
    order_id = room.key
    streams, tracking = app[LOCATION_STREAMS], app[RIDER_TRACKING]
    stream = LocationStream(
        who, request, retry=settings.tracking.slow_client_retry_ms / 1000, streams=streams
    )
    with (
        app[HUB].subscribed(LOCATION, room.name, stream),
        app[SSE_DEPARTURES].watch(request, stream.end),
    ):
        try:
            try:
                # through the authorizer: a late order event older than this read ends nothing
                snapshot = await access.current(order_id)
            except AccessDenied:
                log.warning("SSE location %s: database unavailable", order_id)
                return json_error(503, "unavailable", "the database is unavailable; try again")
            if client_gone(request):
                return web.Response(status=499)
            try:
                access.admit(who, room, snapshot.parties if snapshot else None)
            except AccessDenied as exc:
                metrics.refused(LOCATION, exc.code)
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
                    stream.go_live(position_message(latest) if latest is not None else None)
                    reason = await stream.ended()
                    if reason is not None and not client_gone(request):
                        await end_stream(response, *reason)
                except ConnectionResetError:
                    log.debug("SSE location client on order %s left mid-write", order_id)
            return response
        finally:
            stream.end()


def setup_location_sse(app: web.Application) -> LocationStreams:
    streams = app[LOCATION_STREAMS] = LocationStreams(app[HUB])
    app.router.add_get(ROUTE, order_location_stream)
    return streams
