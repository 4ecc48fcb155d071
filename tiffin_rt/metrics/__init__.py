"""What the server counts for GET /metrics: plain integers, bumped with one call where the thing
happens, read by the collector (collector.py) only when Prometheus scrapes.

Nothing here imports prometheus_client, aiohttp or socketio: any module (the core included) may
count. A count is one dict update, about 50 ns; counts are per process, like the process they
describe. State that exists anyway (open connections, the listener's cursor and reads, the pool,
the broker) is not counted here: the collector reads it at scrape time.
"""

from __future__ import annotations

from collections import Counter

# Accepted connections, by namespace ("/notifications", "/support", "sse").
CONNECTS: Counter[str] = Counter()
# Refused connections and requests, by (namespace or "http", reason).
REFUSALS: Counter[tuple[str, str]] = Counter()
# Messages written to clients, by (client-facing event name, transport), one per recipient.
DELIVERED: Counter[tuple[str, str]] = Counter()
# Rate-limit refusals, by the limit that refused (connect, handshake, event, user_event, ...).
RATE_LIMITED: Counter[str] = Counter()
# Connections cut for being more than delivery.max_buffered_kib behind, by transport.
SLOW_DROPPED: Counter[str] = Counter()
# Reconnecting clients sent what they missed, by transport ("socketio", "sse"), and the events.
REPLAYS: Counter[str] = Counter()
REPLAYED_EVENTS: Counter[str] = Counter()
# Reconnecting clients told to reload instead, by (transport, reason).
RESYNCS: Counter[tuple[str, str]] = Counter()


def connected(namespace: str) -> None:
    CONNECTS[namespace] += 1


def refused(namespace: str, reason: str) -> None:
    REFUSALS[namespace, reason] += 1


def delivered(kind: str, transport: str, recipients: int) -> None:
    if recipients:
        DELIVERED[kind, transport] += recipients


def delivered_stock(kind: str, socket: object) -> None:
    """A packet for one of python-engineio's own sockets: long-polling, or upgraded to it."""
    DELIVERED[kind, "websocket" if getattr(socket, "upgraded", False) else "polling"] += 1


def rate_limited(limit: str) -> None:
    RATE_LIMITED[limit] += 1


def slow_consumer_dropped(transport: str) -> None:
    SLOW_DROPPED[transport] += 1


def replayed(transport: str, events: int) -> None:
    REPLAYS[transport] += 1
    REPLAYED_EVENTS[transport] += events


def resynced(transport: str, reason: str) -> None:
    RESYNCS[transport, reason] += 1
