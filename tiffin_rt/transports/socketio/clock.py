"""One loop timer for every connection's ping (and pong deadline) instead of a timer each.

Every connection of a server waits the same `ping_interval` before its ping and the same
`ping_timeout` for the answer, so entries added in time order are due in that order: a deque
and one loop timer serve them all. A uvloop timer handle costs about 600 bytes; an entry here
is a tuple. An entry whose owner moved on (answered, closed) is skipped when it comes up.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from tiffin_rt.transports.socketio.deadlines import TIMER_TOLERANCE

log = logging.getLogger(__name__)

T = TypeVar("T")


class FixedDelayClock(Generic[T]):
    """`fire(item, due)` runs `delay` seconds after `add(item)` returned `due`."""

    __slots__ = ("_fire", "_queue", "_timer", "delay")

    def __init__(self, delay: float, fire: Callable[[T, float], None]) -> None:
        self.delay = delay
        self._fire = fire
        self._queue: deque[tuple[float, T]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, item: T) -> float:
        """Schedule `item`; the returned due time identifies this entry to its owner."""
        loop = asyncio.get_running_loop()
        due = loop.time() + self.delay
        self._queue.append((due, item))
        if self._timer is None:
            self._timer = loop.call_at(due, self._run)
        return due

    def close(self) -> None:
        self._queue.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _run(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        queue = self._queue
        now = loop.time() + TIMER_TOLERANCE
        while queue and queue[0][0] <= now:
            due, item = queue.popleft()
            try:
                self._fire(item, due)
            except Exception:
                log.exception("clock callback for %r failed", item)
        if queue and self._timer is None:
            self._timer = loop.call_at(queue[0][0], self._run)
