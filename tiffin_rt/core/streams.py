"""Per-order subscriber registry for streaming transports such as SSE."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tiffin_rt.core.policy import Principal


@dataclass(frozen=True, slots=True)
class StreamMessage:
    """One event, already encoded for the wire; `final` ends the stream after it is sent."""

    event_id: int
    data: str
    final: bool = False
    # On a message that ends the stream early: the `end` event's code and message.
    reason: tuple[str, str] | None = None


# Not an event: tells a stream to end at once.
CLOSE = StreamMessage(event_id=-1, data="", final=True)
# Not an event: the policy no longer admits the stream's client (the order changed hands).
EVICTED = StreamMessage(
    event_id=-1, data="", final=True, reason=("forbidden", "you may no longer watch this order")
)


class StreamQueue(asyncio.Queue[StreamMessage]):
    """A watcher's messages not yet taken by its stream, and how many bytes they hold."""

    def __init__(self, on_overflow: Callable[[], None], who: Principal | None = None) -> None:
        super().__init__()
        self.who = who
        self.queued_bytes = 0
        self.on_overflow = on_overflow
        self.ended = False

    def _put(self, item: StreamMessage) -> None:
        self.queued_bytes += len(item.data)
        super()._put(item)

    def _get(self) -> StreamMessage:
        item = super()._get()
        self.queued_bytes -= len(item.data)
        return item


def _ignore() -> None:
    pass


class OrderStreams:
    """Who is watching which order; each watcher has a queue of pre-encoded messages.

    A stream whose client stops reading stops taking messages; once its queue holds more
    than `max_buffered_bytes`, its on_overflow is called (the SSE handler drops the
    connection: the client reconnects with Last-Event-ID and resumes from the log) and it
    gets nothing more. A stream whose client has gone is told to end by `end()` (the transport
    notices the departure): no handler waits for an event that may never come while its
    connection, its user's connection count and its queue are held.
    """

    def __init__(self, max_buffered_bytes: int | None = None) -> None:
        self._watchers: dict[str, set[StreamQueue]] = defaultdict(set)
        self._max_buffered = max_buffered_bytes

    @contextmanager
    def watch(
        self,
        order_id: str,
        on_overflow: Callable[[], None] = _ignore,
        who: Principal | None = None,
    ) -> Iterator[StreamQueue]:
        queue = StreamQueue(on_overflow, who)
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
        limit = self._max_buffered
        for queue in watchers:
            if queue.ended:
                continue
            queue.put_nowait(message)
            if limit is not None and queue.queued_bytes > limit:
                _end(queue)
                queue.on_overflow()
        return len(watchers)

    def end(self, queue: StreamQueue) -> None:
        """Tell one stream to end now (its client has gone)."""
        if not queue.ended:
            _end(queue)

    def evict(self, order_id: str, admits: Callable[[Principal], bool]) -> None:
        """End now every stream of the order whose client `admits` refuses."""
        for queue in self._watchers.get(order_id, ()):
            if not queue.ended and queue.who is not None and not admits(queue.who):
                _end(queue, EVICTED)

    def close_all(self) -> None:
        """Ask every stream to end now (server shutdown); clients reconnect and resume."""
        for watchers in self._watchers.values():
            for queue in watchers:
                queue.put_nowait(CLOSE)

    def watching(self, order_id: str) -> bool:
        return order_id in self._watchers

    def __len__(self) -> int:
        return sum(len(w) for w in self._watchers.values())


def _end(queue: StreamQueue, last: StreamMessage = CLOSE) -> None:
    """Drop what the stream has not taken and make `last` its next message; it gets no more."""
    queue.ended = True
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(last)
