"""Fans each event from the log out to every transport that carries it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from tiffin_rt.core.events import Event

log = logging.getLogger(__name__)


class Sink(Protocol):
    """A transport's receiving end: it decides by event.kind what, if anything, to send."""

    async def deliver(self, events: Sequence[Event]) -> None: ...


class Router:
    def __init__(self) -> None:
        self._sinks: list[Sink] = []
        self.delivered = 0

    def add_sink(self, sink: Sink) -> None:
        self._sinks.append(sink)

    async def deliver(self, events: Sequence[Event]) -> None:
        """Called by the listener with a batch in log order; a failing sink spares the others."""
        for sink in self._sinks:
            try:
                await sink.deliver(events)
            except Exception:
                log.exception(
                    "sink %s failed on events %s..%s",
                    type(sink).__name__,
                    events[0].id,
                    events[-1].id,
                )
        self.delivered += len(events)
