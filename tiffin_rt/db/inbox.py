"""Queries on tiffin_rt.inbox: each user's notifications and their read state."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import orjson

from tiffin_rt.core.inbox import InboxItem, ReadResult

log = logging.getLogger(__name__)

Db = asyncpg.Pool | asyncpg.Connection

_COLUMNS = "event_id, payload::text AS payload, created_at, read_at"


def _item(row: asyncpg.Record) -> InboxItem:
    payload: Any = orjson.loads(row["payload"])
    return InboxItem(
        id=row["event_id"],
        payload=payload if isinstance(payload, dict) else {},
        created_at=row["created_at"],
        read_at=row["read_at"],
    )


async def page(
    db: Db, user_id: str, *, limit: int, before: int | None = None, unread_only: bool = False
) -> list[InboxItem]:
    """Newest first; `before` is the id of the last item of the previous page."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM tiffin_rt.inbox WHERE user_id = $1"
        " AND ($2::bigint IS NULL OR event_id < $2)"
        " AND (NOT $3 OR read_at IS NULL)"
        " ORDER BY event_id DESC LIMIT $4",
        user_id,
        before,
        unread_only,
        limit,
    )
    return [_item(r) for r in rows]


async def newest_unread(db: Db, user_id: str, limit: int) -> list[InboxItem]:
    """The newest `limit` unread notifications, oldest first."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM tiffin_rt.inbox WHERE user_id = $1 AND read_at IS NULL"
        " ORDER BY event_id DESC LIMIT $2",
        user_id,
        limit,
    )
    return [_item(r) for r in reversed(rows)]


async def unread_count(db: Db, user_id: str) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM tiffin_rt.inbox WHERE user_id = $1 AND read_at IS NULL",
            user_id,
        )
    )


async def exists(db: Db, user_id: str, event_id: int) -> bool:
    return bool(
        await db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM tiffin_rt.inbox WHERE user_id = $1 AND event_id = $2)",
            user_id,
            event_id,
        )
    )


async def mark_read(db: Db, user_id: str, ids: list[int] | None) -> ReadResult:
    """Mark `ids` (None: all) read; other devices hear of it through a logged event."""
    row = await db.fetchrow(
        "SELECT marked, unread FROM tiffin_rt.mark_notifications_read($1, $2::bigint[])",
        user_id,
        ids,
    )
    assert row is not None
    return ReadResult(marked=list(row["marked"]), unread=int(row["unread"]))
