"""Queries on tiffin_rt.push_subscriptions and tiffin_rt.push_claims."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from tiffin_rt.core.push import PushSubscription

Db = asyncpg.Pool | asyncpg.Connection


@dataclass(frozen=True, slots=True)
class StoredSubscription:
    id: int
    user_id: str
    subscription: PushSubscription
    created_at: datetime
    user_agent: str | None = None


def _stored(row: asyncpg.Record) -> StoredSubscription:
    return StoredSubscription(
        id=row["id"],
        user_id=row["user_id"],
        subscription=PushSubscription(
            endpoint=row["endpoint"],
            p256dh=row["p256dh"],
            auth=row["auth"],
            expires_at=row["expires_at"],
        ),
        created_at=row["created_at"],
        user_agent=row["user_agent"],
    )


_COLUMNS = "id, user_id, endpoint, p256dh, auth, expires_at, created_at, user_agent"


async def save(
    pool: asyncpg.Pool,
    user_id: str,
    sub: PushSubscription,
    *,
    user_agent: str | None,
    keep: int,
) -> tuple[StoredSubscription, bool, int]:
    """Store (or refresh) a device's subscription for this user; an endpoint registered by
    another user before moves to this one (the browser's owner logged in as someone else).
    The user's least recently registered devices beyond `keep` are forgotten. Returns the
    device, True when new, and how many devices were forgotten for it."""
    async with pool.acquire() as conn, conn.transaction():
        # One registration of a user at a time: two at once each kept `keep` devices counting
        # its own row but not the other's uncommitted one, so the user ended with more.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('tiffin_rt.push'), hashtext($1))", user_id
        )
        row = await conn.fetchrow(
            "INSERT INTO tiffin_rt.push_subscriptions"
            " (user_id, endpoint, p256dh, auth, expires_at, user_agent)"
            " VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (endpoint) DO UPDATE SET user_id = EXCLUDED.user_id,"
            " p256dh = EXCLUDED.p256dh, auth = EXCLUDED.auth, expires_at = EXCLUDED.expires_at,"
            " user_agent = EXCLUDED.user_agent, updated_at = now()"
            f" RETURNING {_COLUMNS}, (xmax = 0) AS inserted",
            user_id,
            sub.endpoint,
            sub.p256dh,
            sub.auth,
            sub.expires_at,
            user_agent,
        )
        forgotten: str = await conn.execute(
            "DELETE FROM tiffin_rt.push_subscriptions WHERE user_id = $1 AND id NOT IN"
            " (SELECT id FROM tiffin_rt.push_subscriptions WHERE user_id = $1"
            "  ORDER BY updated_at DESC, id DESC LIMIT $2)",
            user_id,
            keep,
        )
    assert row is not None
    return _stored(row), bool(row["inserted"]), int(forgotten.split()[-1])


async def delete(db: Db, user_id: str, endpoint: str) -> int:
    result: str = await db.execute(
        "DELETE FROM tiffin_rt.push_subscriptions WHERE user_id = $1 AND endpoint = $2",
        user_id,
        endpoint,
    )
    return int(result.split()[-1])


async def for_user(db: Db, user_id: str) -> list[StoredSubscription]:
    """The user's devices that have not expired, newest first."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM tiffin_rt.push_subscriptions WHERE user_id = $1"
        " AND (expires_at IS NULL OR expires_at > now()) ORDER BY updated_at DESC, id DESC",
        user_id,
    )
    return [_stored(r) for r in rows]


async def forget(db: Db, subscription_id: int, endpoint: str) -> int:
    """The push service said the subscription is gone (404/410)."""
    result: str = await db.execute(
        "DELETE FROM tiffin_rt.push_subscriptions WHERE id = $1 AND endpoint = $2",
        subscription_id,
        endpoint,
    )
    return int(result.split()[-1])


async def still_registered(db: Db, stored: StoredSubscription) -> bool:
    """Whether this device is still the user's, with the keys a push was encrypted for (not
    unsubscribed, moved to another user on a shared browser, nor re-keyed)."""
    sub = stored.subscription
    found = await db.fetchval(
        "SELECT true FROM tiffin_rt.push_subscriptions WHERE id = $1 AND user_id = $2"
        " AND endpoint = $3 AND p256dh = $4 AND auth = $5",
        stored.id,
        stored.user_id,
        sub.endpoint,
        sub.p256dh,
        sub.auth,
    )
    return bool(found)


async def pushed(db: Db, subscription_id: int) -> None:
    await db.execute(
        "UPDATE tiffin_rt.push_subscriptions SET last_push_at = now() WHERE id = $1",
        subscription_id,
    )


async def claim(db: Db, event_id: int, user_id: str) -> bool:
    """True for the one node (of all that heard the event) that pushes it to this user."""
    claimed = await db.fetchval(
        "INSERT INTO tiffin_rt.push_claims (event_id, user_id) VALUES ($1, $2)"
        " ON CONFLICT DO NOTHING RETURNING true",
        event_id,
        user_id,
    )
    return bool(claimed)


async def claim_for_connected(db: Db, pairs: list[tuple[int, str]]) -> None:
    """Claim these (event, user) pairs without pushing: a node where the user is connected
    takes them first, so no node that does not see the connection pushes them. Only users with
    a device are written."""
    await db.execute(
        "INSERT INTO tiffin_rt.push_claims (event_id, user_id)"
        " SELECT e, u FROM unnest($1::bigint[], $2::text[]) AS t(e, u)"
        " WHERE EXISTS (SELECT 1 FROM tiffin_rt.push_subscriptions s WHERE s.user_id = t.u)"
        " ON CONFLICT DO NOTHING",
        [event for event, _ in pairs],
        [user for _, user in pairs],
    )
