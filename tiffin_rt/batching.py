"""Batching for busy periods, wired: the first router sink, which decides in log order which
events are held; the sink that schedules each user's digest when events are held for it, the
timers, and the pruning of the rate table (README: Batching, docs/batching.md).

The trigger only records each batched event (db/digest_triggers.py); the hold is decided by
tiffin_rt.decide_holds (migration 0011) from committed rows, first writer wins, so every
node, live or replay, agrees. The flusher only decides *when* to ask the database for a due
digest. Every node asks; one writes it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Sequence

import asyncpg
from aiohttp import web

from tiffin_rt.background import BackgroundTasks
from tiffin_rt.config import BatchingSettings
from tiffin_rt.core.digest import batched, held_rooms, log_kinds
from tiffin_rt.core.events import Event
from tiffin_rt.db.digests import (
    decide_undecided,
    flush_digest,
    forget_old,
    hold_events,
    release_held,
    users_waiting,
)
from tiffin_rt.db.errors import DB_ERRORS
from tiffin_rt.keys import POOL, ROUTER, SETTINGS

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0


class HoldDecider:
    """The first router sink: before any other sink sees a batch holding batched events, one
    query decides which are held (in id order, as the listener hands them over) and marks
    them `heldFor`; later batches wait behind it, so log order is kept."""

    RETRY_DELAYS = (0.05, 0.25, 1.0)

    def __init__(self, pool: asyncpg.Pool, batching: BatchingSettings) -> None:
        self._pool = pool
        self._batching = batching
        self._kinds = frozenset(log_kinds(batching.kinds))
        self.decided = 0
        self.failed = 0

    def deliver(self, events: Sequence[Event]) -> Awaitable[None] | None:
        if not any(batched(e, self._kinds) for e in events):
            return None
        return self._decide(events)

    async def _decide(self, events: Sequence[Event]) -> None:
        for delay in (*self.RETRY_DELAYS, None):
            try:
                holds = await hold_events(self._pool, events, self._batching)
            except DB_ERRORS as exc:
                if delay is None:
                    self.failed += 1
                    log.warning(
                        "holds for events %d..%d undecided (%s): delivered as they are",
                        events[0].id,
                        events[-1].id,
                        type(exc).__name__,
                    )
                    return
                await asyncio.sleep(delay)
            else:
                self.decided += len(holds)
                return


class DigestFlusher:
    """A router sink: for each user an event is held for, one timer at the end of its window."""

    def __init__(self, pool: asyncpg.Pool, batching: BatchingSettings) -> None:
        self._pool = pool
        self._window = batching.window_seconds
        self._items = batching.digest_items
        self._max = batching.max_per_window
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
            await decide_undecided(self._pool, self._window, self._max)
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
HOLD_DECIDER = web.AppKey("hold_decider", HoldDecider)


async def _batching(app: web.Application) -> AsyncIterator[None]:
    batching = app[SETTINGS].batching
    decider = HoldDecider(app[POOL], batching)
    app[HOLD_DECIDER] = decider
    if batching.enabled:  # off, nothing new is recorded: no query before each live batch
        app[ROUTER].add_sink(decider, first=True)
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


async def _release(app: web.Application) -> AsyncIterator[None]:
    """Batching turned off: what was held when it was on still goes out, in one digest per
    user now, instead of waiting for a flusher that no longer runs."""
    try:
        written = await release_held(app[POOL], app[SETTINGS].batching.digest_items)
    except DB_ERRORS as exc:
        log.warning("held items from before could not be released: %s", type(exc).__name__)
    else:
        if written:
            log.info("batching is off: wrote the digests of %d user(s) held before", written)
    yield


def setup_batching(app: web.Application) -> None:
    """After the pool, before the listener (so no held event is missed)."""
    app.cleanup_ctx.append(_batching if app[SETTINGS].batching.enabled else _release)
