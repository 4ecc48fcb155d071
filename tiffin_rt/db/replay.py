"""Reading what a client missed from the event log."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from tiffin_rt.core.events import ORDER_STATUS, Event
from tiffin_rt.core.replay import LogBounds
from tiffin_rt.db.events_query import EVENT_COLUMNS, row_to_event

Db = asyncpg.Pool | asyncpg.Connection


async def log_bounds(db: Db) -> LogBounds:
    row = await db.fetchrow("SELECT min(id) AS oldest, max(id) AS newest FROM tiffin_rt.events")
    assert row is not None
    return LogBounds(row["oldest"], row["newest"])


async def events_for_rooms(
    db: Db,
    *,
    after: int,
    ceiling: int | None,
    rooms: Sequence[str],
    exclude_rooms: Sequence[str] = (),
    limit: int,
) -> list[Event]:
    """Events after `after` (up to `ceiling`) addressed to any of `rooms` and none of
    `exclude_rooms` (those already reached the connection), in id order, at most `limit`."""
    rows = await db.fetch(
        f"SELECT {EVENT_COLUMNS} FROM tiffin_rt.events"
        " WHERE id > $1 AND ($2::bigint IS NULL OR id <= $2)"
        " AND rooms && $3::text[] AND NOT rooms && $4::text[]"
        " ORDER BY id LIMIT $5",
        after,
        ceiling,
        list(rooms),
        list(exclude_rooms),
        limit,
    )
    return [row_to_event(r) for r in rows]


async def order_events_after(
    db: Db, order_id: str, after: int, limit: int, *, kinds: Sequence[str] = (ORDER_STATUS,)
) -> list[Event]:
    """An order's events of `kinds` (its status) after `after`, in id order, at most `limit`."""
    rows = await db.fetch(
        f"SELECT {EVENT_COLUMNS} FROM tiffin_rt.events"
        " WHERE order_id = $1 AND kind = ANY($2::text[]) AND id > $3 ORDER BY id LIMIT $4",
        order_id,
        list(kinds),
        after,
        limit,
    )
    return [row_to_event(r) for r in rows]
