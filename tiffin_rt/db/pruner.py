"""Deletes event-log rows older than the configured retention, in the background."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from tiffin_rt.db.errors import DB_ERRORS

log = logging.getLogger(__name__)


# Tables with a created_at column that are pruned by age, and what their rows are called.
PRUNABLE = {
    "tiffin_rt.events": "event",
    "tiffin_rt.inbox": "notification",
    "tiffin_rt.push_claims": "push claim",
}
# A large first prune may take longer than database.command_timeout allows a request.
PRUNE_TIMEOUT = 600.0


async def prune_once(
    pool: asyncpg.Pool, retention_days: float, table: str = "tiffin_rt.events"
) -> int:
    if table not in PRUNABLE:
        raise ValueError(f"not a prunable table: {table}")
    result: str = await pool.execute(
        f"DELETE FROM {table} WHERE created_at < now() - make_interval(secs => $1)",
        retention_days * 86400.0,
        timeout=PRUNE_TIMEOUT,
    )
    return int(result.split()[-1])


async def prune_forever(
    pool: asyncpg.Pool, retention_days: float, interval: float, table: str = "tiffin_rt.events"
) -> None:
    while True:
        try:
            removed = await prune_once(pool, retention_days, table)
            if removed:
                log.info(
                    "pruned %d %s(s) older than %g days", removed, PRUNABLE[table], retention_days
                )
        except DB_ERRORS as exc:
            log.warning("pruning %s failed: %s: %s", table, type(exc).__name__, exc)
        await asyncio.sleep(interval)
