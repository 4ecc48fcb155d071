"""The digest queries: write a user's due digest, find users with held items, forget old rows."""

from __future__ import annotations

import asyncpg


async def flush_digest(pool: asyncpg.Pool, user_id: str, window: float, items: int) -> float | None:
    """Write the user's digest if its window has ended; seconds until the next one is due
    (None: nothing is held for the user)."""
    due: float | None = await pool.fetchval(
        "SELECT tiffin_rt.flush_digest($1, $2, $3)", user_id, window, items
    )
    return due


async def users_waiting(pool: asyncpg.Pool) -> list[str]:
    """Users with held items no digest carried yet (e.g. every node was down at its window)."""
    rows = await pool.fetch(
        "SELECT DISTINCT user_id FROM tiffin_rt.digest_items WHERE held AND digest_id IS NULL"
    )
    return [r["user_id"] for r in rows]


async def forget_old(pool: asyncpg.Pool, window: float) -> int:
    """Rows that can no longer count toward a rate nor wait for a digest."""
    result: str = await pool.execute(
        "DELETE FROM tiffin_rt.digest_items"
        " WHERE at < now() - make_interval(secs => $1) AND (NOT held OR digest_id IS NOT NULL)",
        window + 60.0,
    )
    return int(result.split()[-1])
