"""Reading the event log."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg
import orjson

from tiffin_rt.core.events import Event

EVENT_COLUMNS = "id, kind, created_at, rooms, payload::text AS payload, order_id, customer_id"


def row_to_event(row: asyncpg.Record) -> Event:
    payload: Any = orjson.loads(row["payload"])
    return Event(
        id=row["id"],
        kind=row["kind"],
        created_at=row["created_at"],
        rooms=tuple(row["rooms"]),
        payload=payload if isinstance(payload, dict) else {"value": payload},
        order_id=row["order_id"],
        customer_id=row["customer_id"],
    )


async def events_after(conn: asyncpg.Connection, after_id: int, limit: int) -> list[Event]:
    rows = await conn.fetch(
        f"SELECT {EVENT_COLUMNS} FROM tiffin_rt.events WHERE id > $1 ORDER BY id LIMIT $2",
        after_id,
        limit,
    )
    return [row_to_event(r) for r in rows]


async def events_by_id(conn: asyncpg.Connection, ids: Iterable[int]) -> list[Event]:
    rows = await conn.fetch(
        f"SELECT {EVENT_COLUMNS} FROM tiffin_rt.events WHERE id = ANY($1::bigint[]) ORDER BY id",
        list(ids),
    )
    return [row_to_event(r) for r in rows]


async def last_event_id(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM tiffin_rt.events"))


async def running_transactions(conn: asyncpg.Connection) -> list[str]:
    """Transaction ids in progress now: a log gap can only be one of these, or rolled back."""
    rows = await conn.fetch("SELECT x::text AS x FROM pg_snapshot_xip(pg_current_snapshot()) x")
    return [r["x"] for r in rows]


async def still_running(conn: asyncpg.Connection, xids: list[str]) -> list[str]:
    """Those of `xids` still in progress."""
    if not xids:
        return []
    rows = await conn.fetch(
        "SELECT x FROM unnest($1::text[]) x WHERE pg_xact_status(x::xid8) = 'in progress'", xids
    )
    return [r["x"] for r in rows]


async def any_still_running(conn: asyncpg.Connection, xids: list[str]) -> bool:
    if not xids:
        return False
    return bool(
        await conn.fetchval(
            "SELECT bool_or(pg_xact_status(x::xid8) = 'in progress') FROM unnest($1::text[]) x",
            xids,
        )
    )
