"""Batching for busy periods, wired: the sink that schedules each user's digest when the log
shows events held for it, the timers, and the pruning of the rate table (README: Batching).

Which events are held is decided by the database (migration 0006, db/digest_triggers.py) and
kept in the log, so live delivery and replay agree; this only decides *when* to ask the
database for a due digest. Every node asks; one writes it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence

import asyncpg
from aiohttp import web

from tiffin_rt.background import BackgroundTasks
from tiffin_rt.config import BatchingSettings
from tiffin_rt.core.digest import held_rooms, log_kinds
from tiffin_rt.core.events import Event
from tiffin_rt.db.digests import flush_digest, forget_old, users_waiting
from tiffin_rt.db.errors import DB_ERRORS
from tiffin_rt.keys import POOL, ROUTER, SETTINGS

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0


class DigestFlusher:
    """A router sink: for each user an event is held for, one timer at the end of its window."""

    def __init__(self, pool: asyncpg.Pool, batching: BatchingSettings) -> None:
        self._pool = pool
        self._window = batching.window_seconds
        self._items = batching.digest_items
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._flushing: dict[str, float] = {}  # user -> earliest due asked for meanwhile
        self._tasks = BackgroundTasks("digest")
        self.written = 0

    def deliver(self, events: Sequence[Event]) -> None:
        now = time.time()
        for event in events:
            for room in held_rooms(event):
                due_in = event.created_at.timestamp() + self._window - now
                self.schedule(room.removeprefix("user-"), min(max(due_in, 0.0), self._window))

    def schedule(self, user_id: str, delay: float) -> None:
        loop = asyncio.get_running_loop()
        if user_id in self._flushing:
            wanted = loop.time() + delay
            self._flushing[user_id] = min(self._flushing[user_id], wanted)
            return
        timer = self._timers.get(user_id)
        if timer is not None:
            if timer.when() <= loop.time() + delay:
                return
            timer.cancel()
        self._timers[user_id] = loop.call_later(delay, self._fire, user_id)

    def _fire(self, user_id: str) -> None:
        self._timers.pop(user_id, None)
        self._flushing[user_id] = float("inf")
        self._tasks.spawn(self._flush(user_id))

    async def _flush(self, user_id: str) -> None:
        next_in: float | None
        try:
            next_in = await flush_digest(self._pool, user_id, self._window, self._items)
        except DB_ERRORS as exc:
            log.warning("digest for user %.80r: %s; retrying", user_id, type(exc).__name__)
            next_in = RETRY_SECONDS
        finally:
            asked = self._flushing.pop(user_id, float("inf"))
        loop = asyncio.get_running_loop()
        if asked != float("inf"):
            later = max(asked - loop.time(), 0.0)
            next_in = later if next_in is None else min(next_in, later)
        if next_in is not None:
            self.schedule(user_id, next_in)

    async def start(self) -> None:
        """Users whose held items wait for a digest (every node may have been down)."""
        try:
            for user_id in await users_waiting(self._pool):
                self.schedule(user_id, 0.0)
        except DB_ERRORS as exc:
            log.warning("digests waiting from before could not be read: %s", type(exc).__name__)

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        await self._tasks.cancel_all()

    async def prune_forever(self) -> None:
        while True:
            await asyncio.sleep(max(60.0, 6 * self._window))
            try:
                await forget_old(self._pool, self._window)
            except DB_ERRORS as exc:
                log.warning("pruning digest rows failed: %s", type(exc).__name__)


DIGEST_FLUSHER = web.AppKey("digest_flusher", DigestFlusher)


async def _batching(app: web.Application) -> AsyncIterator[None]:
    batching = app[SETTINGS].batching
    flusher = DigestFlusher(app[POOL], batching)
    app[DIGEST_FLUSHER] = flusher
    app[ROUTER].add_sink(flusher, kinds=log_kinds(batching.kinds))
    await flusher.start()
    pruner = asyncio.create_task(flusher.prune_forever(), name="tiffin_rt-digest-pruner")
    try:
        yield
    finally:
        pruner.cancel()
        await asyncio.gather(pruner, return_exceptions=True)
        await flusher.close()


def setup_batching(app: web.Application) -> None:
    """With batching.enabled: after the pool, before the listener (so no held event is missed)."""
    if app[SETTINGS].batching.enabled:
        app.cleanup_ctx.append(_batching)
