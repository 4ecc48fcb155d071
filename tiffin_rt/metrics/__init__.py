"""What the server counts for GET /metrics: plain integers, bumped with one call where the thing
happens, read by the collector (collector.py) only when Prometheus scrapes.

Nothing here imports prometheus_client, aiohttp or socketio: any module (the core included) may
count. A count is one dict update, about 50 ns; counts are per process, like the process they
describe. State that exists anyway (open connections, the listener's cursor, the pool, the
broker) is not counted here: the collector reads it at scrape time.
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
# The listener: events by how they reached it ("notify": carried by the NOTIFY, "log": read
# from the log), reads of the log, and holes in the ids it waited for.
LISTENER_EVENTS: Counter[str] = Counter()
LISTENER_READS: Counter[str] = Counter()
GAP_WAITS: Counter[str] = Counter()


def connected(namespace: str) -> None:
    CONNECTS[namespace] += 1


def refused(namespace: str, reason: str) -> None:
    REFUSALS[namespace, reason] += 1


def delivered(kind: str, transport: str, recipients: int) -> None:
    if recipients:
        DELIVERED[kind, transport] += recipients


def rate_limited(limit: str) -> None:
    RATE_LIMITED[limit] += 1


def slow_consumer_dropped(transport: str) -> None:
    SLOW_DROPPED[transport] += 1


def replayed(transport: str, events: int) -> None:
    REPLAYS[transport] += 1
    REPLAYED_EVENTS[transport] += events


def resynced(transport: str, reason: str) -> None:
    RESYNCS[transport, reason] += 1


def listener_received(source: str, events: int) -> None:
    """`source`: "notify" (the NOTIFY carried the event) or "log" (read from the log)."""
    LISTENER_EVENTS[source] += events


def listener_read() -> None:
    LISTENER_READS["log"] += 1


def gap_wait(outcome: str) -> None:
    """A hole in the log's ids: "waited" (first seen), "rolled_back", "timed_out"."""
    GAP_WAITS[outcome] += 1
