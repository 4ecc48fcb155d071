"""Helpers for the replay and inbox tests: a Socket.IO client that records every event in one
ordered log, and status changes committed the way an order backend would."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import socketio
from aiohttp import web

from tests.helpers import Recorder, disconnecting, eventually, marker_arrived, recording_client
from tiffin_rt.keys import LISTENER

NAMESPACE = "/notifications"
EVENTS = (
    "orderStatusUpdate",
    "notification",
    "notificationRead",
    "unreadCount",
    "inbox",
    "resync",
)


@dataclass
class Log(Recorder):
    """Every server event a client received, in arrival order."""

    entries: list[tuple[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, name: str, data: Any) -> None:
        self.entries.append((name, data))
        self.changed.set()

    def of(self, name: str) -> list[Any]:
        return [data for n, data in self.entries if n == name]

    def event_ids(self) -> list[int]:
        return [d["eventId"] for n, d in self.entries if isinstance(d, dict) and "eventId" in d]

    async def settled(
        self, name: str, count: int, db: asyncpg.Connection, user_id: str
    ) -> list[Any]:
        """Wait for `count` events `name`, then for a marker logged after them (so any more that
        were coming have arrived), and return them all."""
        await self.wait_for(name, count)
        await marker_arrived(db, user_id, self)
        return self.of(name)


async def connect(
    url: str, tok: str, *, last_event_id: Any = None
) -> tuple[socketio.AsyncClient, Log]:
    auth: dict[str, Any] = {"token": tok}
    if last_event_id is not None:
        auth["lastEventId"] = last_event_id
    return await recording_client(url, NAMESPACE, EVENTS, auth, Log())


def connected(
    url: str, tok: str, *, last_event_id: Any = None
) -> AbstractAsyncContextManager[tuple[socketio.AsyncClient, Log]]:
    """`connect`, disconnecting on the way out."""
    return disconnecting(connect(url, tok, last_event_id=last_event_id))


async def set_statuses(db: asyncpg.Connection, order_id: int, statuses: list[str]) -> list[int]:
    """Commit one status change per status; returns their event ids."""
    ids = []
    for status in statuses:
        await db.execute("UPDATE orders SET status = $2 WHERE id = $1", order_id, status)
        ids.append(
            await db.fetchval(
                "SELECT max(id) FROM tiffin_rt.events WHERE order_id = $1", str(order_id)
            )
        )
    return ids


FIVE = ["confirmed", "preparing", "ready", "preparing", "ready"]


async def delivered_live(app: web.Application, event_id: int) -> None:
    """Wait until the server's listener has delivered `event_id` to the clients then connected,
    so that a client connecting afterwards cannot receive it live."""
    await eventually(lambda: (app[LISTENER].cursor or 0) >= event_id)
    await asyncio.sleep(0)
