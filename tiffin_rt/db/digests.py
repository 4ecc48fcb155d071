"""The digest queries: decide which events are held, write a user's due digest, find users with
held items, forget old rows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg

from tiffin_rt.config import BatchingSettings
from tiffin_rt.core.digest import BATCHABLE, batched, log_kinds, mark_held
from tiffin_rt.core.events import Event
from tiffin_rt.db.events_query import EVENT_COLUMNS, row_to_event

Db = asyncpg.Pool | asyncpg.Connection


@dataclass(frozen=True, slots=True)
class Hold:
    """Whether one event is held for one user, and the digest that carried it (if written)."""

    event_id: int
    user_id: str
    held: bool | None  # None: not decided yet
    digest_id: int | None


async def decide_holds(
    db: Db, event_ids: Iterable[int], *, window: float | None, max_per_window: int
) -> list[Hold]:
    """The decision for each (event, user) recorded for batching, made now where nobody made it
    yet (first writer wins); `window` None only reads what was decided (batching off here)."""
    ids = list(event_ids)
    if not ids:
        return []
    rows = await db.fetch(
        "SELECT * FROM tiffin_rt.decide_holds($1::bigint[], $2, $3)", ids, window, max_per_window
    )
    return [
        Hold(r["item_event_id"], r["item_user_id"], r["item_held"], r["item_digest_id"])
        for r in rows
    ]


async def hold_events(db: Db, events: Iterable[Event], batching: BatchingSettings) -> list[Hold]:
    """Decide (or, with batching off, read) the holds of these events and mark them `heldFor`
    in the events; the same answer for the listener, a replay and the inbox on connect."""
    names = batching.kinds if batching.enabled else list(BATCHABLE)
    kinds = frozenset(log_kinds(names))
    pending = [e for e in events if batched(e, kinds)]
    holds = await decide_holds(
        db,
        (e.id for e in pending),
        window=batching.window_seconds if batching.enabled else None,
        max_per_window=batching.max_per_window,
    )
    mark_held(pending, ((h.event_id, h.user_id) for h in holds if h.held is True))
    return holds


async def flush_digest(pool: asyncpg.Pool, user_id: str, window: float, items: int) -> float | None:
    """Write the user's digest if its window has ended; seconds until the next one is due
    (None: nothing is held for the user)."""
    due: float | None = await pool.fetchval(
        "SELECT tiffin_rt.flush_digest($1, $2, $3)", user_id, window, items
    )
    return due


async def decide_undecided(pool: asyncpg.Pool, window: float, max_per_window: int) -> int:
    """At start-up: decide the items no listener decided (every node was down when they were
    logged), so their digest is written too."""
    decided: int = await pool.fetchval(
        "SELECT count(*) FROM tiffin_rt.decide_holds(ARRAY(SELECT DISTINCT event_id"
        " FROM tiffin_rt.digest_items WHERE held IS NULL), $1, $2)",
        window,
        max_per_window,
    )
    return decided


async def users_waiting(pool: asyncpg.Pool) -> list[str]:
    """Users with held items no digest carried yet (e.g. every node was down at its window)."""
    rows = await pool.fetch(
        "SELECT DISTINCT user_id FROM tiffin_rt.digest_items WHERE held AND digest_id IS NULL"
    )
    return [r["user_id"] for r in rows]


async def forget_old(pool: Db, window: float) -> int:
    """Rows that can no longer count toward a rate nor wait for a digest. A held row stays as
    long as its event is in the log: a replay reads the hold from it (no row: not held)."""
    result: str = await pool.execute(
        "DELETE FROM tiffin_rt.digest_items d WHERE d.at < now() - make_interval(secs => $1)"
        " AND (d.held IS NOT TRUE OR (d.digest_id IS NOT NULL AND NOT EXISTS"
        " (SELECT 1 FROM tiffin_rt.events e WHERE e.id = d.event_id)))",
        window + 60.0,
    )
    return int(result.split()[-1])


async def release_held(pool: asyncpg.Pool, items: int) -> int:
    """Batching is off: undecided items stay unheld, waiting ones go out in a digest now."""
    written: int = await pool.fetchval("SELECT tiffin_rt.release_held($1)", items)
    return written


async def digests_by_id(db: Db, ids: Iterable[int]) -> list[Event]:
    """The digest events that carried held items (those still in the log), in id order."""
    rows = await db.fetch(
        f"SELECT {EVENT_COLUMNS} FROM tiffin_rt.events"
        " WHERE id = ANY($1::bigint[]) AND kind = 'notification_digest' ORDER BY id",
        list(ids),
    )
    return [row_to_event(r) for r in rows]
