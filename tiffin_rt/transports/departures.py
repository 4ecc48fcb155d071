"""Clients that leave while their request waits: noticed within a second, on one loop timer.

`tiffin-rt serve` runs aiohttp without handler cancellation (as `web.run_app` does), so a
handler waiting for something to send (an SSE stream, a long-polling GET) is not told when its
client goes away; it would hold the connection, the user's connection slot and its session
until something came to send. A waiting handler registers here; one timer checks every
registered request's transport once a second and calls the handler's `on_gone` for each whose
client has gone. (aiohttp has no public disconnect hook: aio-libs/aiohttp#3105; a closed or
closing transport is what aiohttp-sse checks too.)
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from aiohttp import web

log = logging.getLogger(__name__)


class Departures:
    """The waiting requests of one application, checked together."""

    CHECK_INTERVAL = 1.0

    def __init__(self, interval: float = CHECK_INTERVAL) -> None:
        self._interval = interval
        self._watched: dict[int, tuple[web.BaseRequest, Callable[[], None]]] = {}
        self._keys = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._watched)

    @contextmanager
    def watch(self, request: web.BaseRequest, on_gone: Callable[[], None]) -> Iterator[None]:
        """While the block runs, `on_gone()` is called once if the request's client leaves."""
        key = next(self._keys)
        self._watched[key] = (request, on_gone)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self._check)
        try:
            yield
        finally:
            self._watched.pop(key, None)

    def _check(self) -> None:
        self._timer = None
        gone = [key for key, (request, _) in self._watched.items() if client_gone(request)]
        for key in gone:
            _, on_gone = self._watched.pop(key)
            try:
                on_gone()
            except Exception:
                log.exception("releasing a request whose client left failed")
        if self._watched:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self._check)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._watched.clear()


def client_gone(request: web.BaseRequest) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
