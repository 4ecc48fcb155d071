"""SSE resumption: what an order's stream missed, from Last-Event-ID (or ?lastEventId=)."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass

import asyncpg
import orjson
from aiohttp import web
from aiohttp_sse import EventSourceResponse

from tiffin_rt import metrics
from tiffin_rt.core.events import ORDER_STATUS, Event, order_status_message
from tiffin_rt.core.payments import PAYMENT_STATUS, payment_status_message
from tiffin_rt.core.replay import parse_last_event_id, resumable
from tiffin_rt.db import replay
from tiffin_rt.db.errors import DB_ERRORS
from tiffin_rt.db.orders import OrderSnapshot

log = logging.getLogger(__name__)

# Polyfills that cannot set headers send the id in the query string instead.
QUERY_PARAMETER = "lastEventId"

# What an order's stream carries: its status (unnamed events) and its payments (named).
ORDER_STREAM_KINDS = (ORDER_STATUS, PAYMENT_STATUS)
PAYMENT = b"paymentStatusUpdate"


def requested_resume(request: web.Request) -> int | None:
    """The id the client saw last (the header wins), or None; InvalidEventId when malformed."""
    header = request.headers.get("Last-Event-ID")
    raw = header if header else request.query.get(QUERY_PARAMETER)
    return parse_last_event_id(raw)


def nothing_left(snapshot: OrderSnapshot, after: int, terminal: Collection[str]) -> bool:
    """The order is finished and the client saw its last event: answer 204 so that
    EventSource stops reconnecting instead of reopening a stream that would end at once."""
    return snapshot.status in terminal and (snapshot.last_event_id or 0) <= after


@dataclass(frozen=True, slots=True)
class Replayed:
    last_sent: int
    finished: bool
    # the ids the replay read (what the stream has at or below last_sent, above the resume id)
    covered: frozenset[int] = frozenset()


async def send_missed(
    stream: EventSourceResponse,
    pool: asyncpg.Pool,
    *,
    order_id: str,
    after: int,
    terminal: Collection[str],
    limit: int,
    retry_ms: int,
) -> Replayed | None:
    """Send the order's events after `after`, in order; None after a `resync` event, when
    they can no longer all be sent (pruned, or more than `limit`): send the current state."""
    reason = None
    events: list[Event] = []
    try:
        if not resumable(after, await replay.log_bounds(pool)):
            reason, message = "expired", "events after Last-Event-ID are no longer kept"
        else:
            events = await replay.order_events_after(
                pool, order_id, after, limit + 1, kinds=ORDER_STREAM_KINDS
            )
            if len(events) > limit:
                reason, message = "too_many", f"more than {limit} events were missed"
    except DB_ERRORS as exc:
        log.warning("replaying order %s after event %d failed: %r", order_id, after, exc)
        reason, message = "unavailable", "the event log could not be read"
    if reason is not None:
        metrics.resynced("sse", reason)
        payload = {"reason": reason, "message": message, "lastEventId": after}
        await stream.send(orjson.dumps(payload).decode(), event="resync", retry=retry_ms)
        return None
    last_sent = after
    metrics.replayed("sse", len(events))
    for index, event in enumerate(events):
        retry = retry_ms if index == 0 else None
        if event.kind == PAYMENT_STATUS:
            payment = orjson.dumps(payment_status_message(event)).decode()
            await stream.send(payment, id=str(event.id), event=PAYMENT.decode(), retry=retry)
            last_sent = event.id
            metrics.delivered("paymentStatusUpdate", "sse", 1)
            continue
        data = order_status_message(event)
        await stream.send(orjson.dumps(data).decode(), id=str(event.id), retry=retry)
        last_sent = event.id
        metrics.delivered("orderStatusUpdate", "sse", 1)
        if data["status"] in terminal:
            return Replayed(last_sent, finished=True)
    return Replayed(last_sent, finished=False, covered=frozenset(e.id for e in events))
