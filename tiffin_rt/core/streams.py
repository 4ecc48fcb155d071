"""Per-order subscriber registry for streaming transports such as SSE."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StreamMessage:
    """One event, already encoded for the wire; `final` ends the stream after it is sent."""

    event_id: int
    data: str
    final: bool = False


# Not an event: tells a stream to end at once.
CLOSE = StreamMessage(event_id=-1, data="", final=True)


class OrderStreams:
    """Who is watching which order; each watcher has a queue of pre-encoded messages."""

    def __init__(self) -> None:
        self._watchers: dict[str, set[asyncio.Queue[StreamMessage]]] = defaultdict(set)

    @contextmanager
    def watch(self, order_id: str) -> Iterator[asyncio.Queue[StreamMessage]]:
        queue: asyncio.Queue[StreamMessage] = asyncio.Queue()
        self._watchers[order_id].add(queue)
        try:
            yield queue
        finally:
            watchers = self._watchers.get(order_id)
            if watchers is not None:
                watchers.discard(queue)
                if not watchers:
                    del self._watchers[order_id]

    def publish(self, order_id: str, message: StreamMessage) -> int:
        watchers = self._watchers.get(order_id)
        if not watchers:
            return 0
        for queue in watchers:
            queue.put_nowait(message)
        return len(watchers)

    def close_all(self) -> None:
        """Ask every stream to end now (server shutdown); clients reconnect and resume."""
        for watchers in self._watchers.values():
            for queue in watchers:
                queue.put_nowait(CLOSE)

    def watching(self, order_id: str) -> bool:
        return order_id in self._watchers

    def __len__(self) -> int:
        return sum(len(w) for w in self._watchers.values())
