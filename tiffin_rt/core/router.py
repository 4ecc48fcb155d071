"""Fans each event from the log out to every transport that carries it, in the caller's tick.

The listener hands each batch over from the NOTIFY callback itself; sinks that write at once
(the authorizer, the hub, the Socket.IO rooms of WebSocket connections) are run before
`deliver` returns, so an event crosses no task and no queue on its way to the sockets. A sink
with something to await returns an awaitable: the rest of that batch's sinks, and every later
batch, then run in order in one task, so no sink ever sees events out of log order.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Protocol

from tiffin_rt.core.events import Event

log = logging.getLogger(__name__)


class Sink(Protocol):
    """A transport's receiving end: it decides by event.kind what, if anything, to send;
    it returns an awaitable only when it could not finish at once."""

    def deliver(self, events: Sequence[Event]) -> Awaitable[None] | None: ...


def send_in_order(
    events: Sequence[Event], send: Callable[[Event], Awaitable[None] | None]
) -> Awaitable[None] | None:
    """A sink's `deliver` from its per-event `send`: every event sent before it returns, unless
    one must be awaited; then the rest of the batch after it, as the awaitable for the router."""
    for index, event in enumerate(events):
        later = send(event)
        if later is not None:
            return _send_rest(later, events[index + 1 :], send)
    return None


async def _send_rest(
    later: Awaitable[None],
    rest: Sequence[Event],
    send: Callable[[Event], Awaitable[None] | None],
) -> None:
    await later
    for event in rest:
        more = send(event)
        if more is not None:
            await more


class Router:
    def __init__(self) -> None:
        self._sinks: list[Sink] = []
        self.delivered = 0
        # Batches a sink could not finish at once (a stock Engine.IO socket, /support): they
        # and the batches behind them went through the router's task.
        self.deferred = 0
        # Batches (and the sink to resume at) waiting behind a sink that had to await.
        self._backlog: deque[tuple[Sequence[Event], int]] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._started: Awaitable[None] | None = None  # what the worker was started with
        self._settled = asyncio.Event()
        self._settled.set()

    def add_sink(
        self, sink: Sink, *, kinds: Collection[str] | None = None, first: bool = False
    ) -> None:
        """Add `sink`; with `kinds`, it is only called for batches holding one of them (so a
        sink that always awaits holds nothing else back); `first`: before every other sink
        (one that completes the events the others read, such as batching's hold decision)."""
        wrapped = sink if kinds is None else _OnlyKinds(sink, frozenset(kinds))
        self._sinks.insert(0 if first else len(self._sinks), wrapped)

    @property
    def backlog(self) -> int:
        """Batches not yet through every sink (0 while every sink keeps up at once)."""
        return len(self._backlog)

    def deliver(self, events: Sequence[Event]) -> None:
        """Called by the listener with a batch in log order; a failing sink spares the others."""
        if not events:
            return
        if self._backlog:
            self._backlog.append((events, 0))
            return
        self._run(events, 0)

    async def settled(self) -> None:
        """Until every batch handed over so far has been through every sink."""
        await self._settled.wait()

    def _run(self, events: Sequence[Event], start: int) -> None:
        for index in range(start, len(self._sinks)):
            pending = self._call(index, events)
            if pending is not None:
                self._backlog.appendleft((events, index + 1))
                self.deferred += 1
                self._settled.clear()
                self._started = pending
                self._worker = asyncio.get_running_loop().create_task(
                    self._drain(pending), name="tiffin_rt-router"
                )
                return
        self.delivered += len(events)

    def _call(self, index: int, events: Sequence[Event]) -> Awaitable[None] | None:
        sink = self._sinks[index]
        try:
            return sink.deliver(events)
        except Exception:
            self._failed(sink, events)
            return None

    async def _drain(self, pending: Awaitable[None] | None) -> None:
        """Finish the sink that had to await, then everything queued behind it, in order."""
        try:
            while self._backlog:
                if pending is not None:
                    try:
                        await pending
                    except Exception:
                        log.exception("a sink failed while finishing a batch")
                    pending = None
                events, start = self._backlog.popleft()
                for index in range(start, len(self._sinks)):
                    pending = self._call(index, events)
                    if pending is not None:
                        self._backlog.appendleft((events, index + 1))
                        break
                else:
                    self.delivered += len(events)
        finally:
            self._worker = None
            self._started = None
            self._backlog.clear()  # empty unless cancelled (shutdown)
            self._settled.set()

    def _failed(self, sink: Sink, events: Sequence[Event]) -> None:
        name = sink._sink if isinstance(sink, _OnlyKinds) else sink
        log.exception(
            "sink %s failed on events %s..%s", type(name).__name__, events[0].id, events[-1].id
        )

    async def close(self) -> None:
        """Stop delivering what is still queued (shutdown)."""
        worker, self._worker = self._worker, None
        self._backlog.clear()
        self._settled.set()
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        started, self._started = self._started, None
        if inspect.iscoroutine(started):
            started.close()  # a worker cancelled before it ran never awaited it



class _OnlyKinds:
    def __init__(self, sink: Sink, kinds: frozenset[str]) -> None:
        self._sink = sink
        self._kinds = kinds

    def deliver(self, events: Sequence[Event]) -> Awaitable[None] | None:
        if any(event.kind in self._kinds for event in events):
            return self._sink.deliver(events)
        return None
