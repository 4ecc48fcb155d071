"""Deletes event-log rows older than the configured retention, in the background."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

log = logging.getLogger(__name__)


async def prune_once(pool: asyncpg.Pool, retention_days: float) -> int:
    result: str = await pool.execute(
        "DELETE FROM tiffin_rt.events WHERE created_at < now() - make_interval(secs => $1)",
        retention_days * 86400.0,
    )
    return int(result.split()[-1])


async def prune_forever(pool: asyncpg.Pool, retention_days: float, interval: float) -> None:
    while True:
        try:
            removed = await prune_once(pool, retention_days)
            if removed:
                log.info("pruned %d event(s) older than %g days", removed, retention_days)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("pruning the event log failed: %s", exc)
        await asyncio.sleep(interval)
