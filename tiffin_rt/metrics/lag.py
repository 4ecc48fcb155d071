"""Listener lag: how long after it was written to the log each event was through every sink."""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence

from tiffin_rt.core.events import Event

# Seconds. A NOTIFY reaches the listener about 0.4 ms after the commit on one machine.
LAG_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class ListenerLag:
    """A router sink, the last: now minus each event's `created_at`.

    `created_at` is `clock_timestamp()` when `tiffin_rt.append_event` inserted the row, inside
    the committing transaction; PostgreSQL keeps no commit time unless track_commit_timestamp
    is on, and reading it would be a query per event. So the figure is an upper bound of the
    time since the commit: it includes what the transaction did after the insert. Events of a
    backend's own channels (id 0: not in the log) carry no such time and are not observed. A
    database clock ahead of this host's is counted as no lag.

    Buckets are plain counts here (one bisect per event, no lock); the collector turns them
    into Prometheus's cumulative buckets at scrape time.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.bucket_counts = [0] * (len(LAG_BUCKETS) + 1)
        self.total_seconds = 0.0
        self.observed = 0
        self.last_lag: float | None = None  # of the last event observed (the admin view)

    def deliver(self, events: Sequence[Event]) -> None:
        now = self._clock()
        counts = self.bucket_counts
        total = 0.0
        observed = 0
        for event in events:
            if not event.id:
                continue
            lag = max(0.0, now - event.created_at.timestamp())
            counts[bisect.bisect_left(LAG_BUCKETS, lag)] += 1
            total += lag
            observed += 1
        if observed:
            self.last_lag = lag
        self.total_seconds += total
        self.observed += observed

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus's buckets: (upper bound, events at or below it), +Inf last."""
        running = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip((*map(str, LAG_BUCKETS), "+Inf"), self.bucket_counts, strict=True):
            running += count
            buckets.append((bound, running))
        return buckets
