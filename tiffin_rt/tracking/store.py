"""Each order's last position in PostgreSQL, written in batches: at most once every
`tracking.store_interval` seconds per rider, whatever the rider sends."""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from tiffin_rt.db.errors import DB_ERRORS
from tiffin_rt.db.rider_positions import StoredPosition, prune_positions, save_positions

log = logging.getLogger(__name__)


class PositionWriter:
    """Keeps the newest position of each order until its rider is due for a write."""

    # How often due positions are looked for (seconds); the interval per rider is the setting.
    TICK = 0.5

    def __init__(self, pool: asyncpg.Pool, *, interval: float, trail: bool) -> None:
        self._pool = pool
        self._interval = interval
        self._trail = trail
        self._pending: dict[str, StoredPosition] = {}  # by order
        self._written: dict[str, float] = {}  # rider -> when last written (monotonic)
        self.rows_written = 0
        self.statements = 0
        self.failures = 0

    def offer(self, position: StoredPosition) -> None:
        self._pending[position.update.order_id] = position

    def forget(self, order_id: str) -> None:
        """The order finished or changed rider: its unwritten position is not kept."""
        self._pending.pop(order_id, None)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.TICK)
            await self.flush()

    async def flush(self, *, everything: bool = False) -> int:
        """Write what is due (everything: at shutdown); the number of positions written."""
        now = time.monotonic()
        written, interval = self._written, self._interval
        due = [
            p
            for p in self._pending.values()
            if everything or now - written.get(p.rider_id, -interval) >= interval
        ]
        if not due:
            self._sweep(now)
            return 0
        for p in due:
            del self._pending[p.update.order_id]
            written[p.rider_id] = now
        try:
            await save_positions(self._pool, due, self._trail)
        except DB_ERRORS as exc:
            self.failures += 1
            log.warning("rider positions not stored (retried): %s: %s", type(exc).__name__, exc)
            for p in due:  # unless a newer one came meanwhile
                self._pending.setdefault(p.update.order_id, p)
            return 0
        self.rows_written += len(due) * (2 if self._trail else 1)
        self.statements += 2 if self._trail else 1
        self._sweep(now)
        return len(due)

    def _sweep(self, now: float) -> None:
        """Riders written longer than an interval ago no longer hold anything back."""
        if len(self._written) > 2 * len(self._pending) + 1000:
            cutoff = now - self._interval
            self._written = {r: t for r, t in self._written.items() if t > cutoff}


async def prune_forever(pool: asyncpg.Pool, hours: float, interval: float) -> None:
    """The trail, and last positions nobody updated, past `tracking.trail_retention_hours`."""
    while True:
        try:
            removed = await prune_positions(pool, hours, hours)
            if removed:
                log.info("pruned %d rider position(s) older than %g hours", removed, hours)
        except DB_ERRORS as exc:
            log.warning("pruning rider positions failed: %s: %s", type(exc).__name__, exc)
        await asyncio.sleep(interval)
