"""Many per-connection deadlines on one loop timer: a heap instead of a sleeping task each.

A sleeping task per connection costs about 1 KiB (task, coroutine frame, timer handle); an
entry here is a small tuple. Cancelled entries are skipped when they come up, and the heap is
rebuilt once they outnumber the live ones, so churn cannot grow it without bound.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

# Fire what is due within this much of now, as asyncio's own loop does (clock resolution).
TIMER_TOLERANCE = 0.001


class Deadlines(Generic[K]):
    """At most one pending deadline per key; `fire(key)` runs in the loop when it is due."""

    def __init__(self, fire: Callable[[K], None]) -> None:
        self._fire = fire
        self._heap: list[tuple[float, int, K]] = []
        self._live: dict[K, int] = {}
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def set(self, key: K, delay: float) -> None:
        """Due in `delay` seconds (now if not positive); replaces the key's earlier deadline."""
        loop = asyncio.get_running_loop()
        seq = next(self._seq)
        due = loop.time() + max(0.0, delay)
        self._live[key] = seq
        heapq.heappush(self._heap, (due, seq, key))
        if len(self._heap) > 2 * len(self._live) + 64:
            self._compact()
        if self._heap[0][1] == seq:
            self._arm(loop)

    def cancel(self, key: K) -> None:
        self._live.pop(key, None)

    def clear(self) -> None:
        self._live.clear()
        self._heap.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _compact(self) -> None:
        live = self._live
        # In place: _run may be iterating this very list when a callback sets a deadline.
        self._heap[:] = [entry for entry in self._heap if live.get(entry[2]) == entry[1]]
        heapq.heapify(self._heap)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._heap:
            self._timer = loop.call_at(self._heap[0][0], self._run)

    def _run(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        heap = self._heap
        live = self._live
        now = loop.time() + TIMER_TOLERANCE
        while heap and heap[0][0] <= now:
            _, seq, key = heapq.heappop(heap)
            if live.get(key) != seq:
                continue  # cancelled or replaced
            del live[key]
            try:
                self._fire(key)
            except Exception:
                log.exception("deadline callback for %r failed", key)
        while heap and live.get(heap[0][2]) != heap[0][1]:
            heapq.heappop(heap)
        if heap and self._timer is None:
            self._arm(loop)
