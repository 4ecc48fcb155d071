"""What keeps an open SSE stream authorized: the token's expiry and the room policy."""

from __future__ import annotations

import asyncio
import time

import orjson
from aiohttp_sse import EventSourceResponse

from tiffin_rt.access import AccessDenied, RoomAccess
from tiffin_rt.auth import Identity
from tiffin_rt.core.streams import StreamMessage

# The named event a stream ends with when it may no longer run (EventSource: addEventListener).
END_EVENT = "end"


class StreamGuard:
    """One per stream: waits for messages no longer than the token lives, re-checks the order."""

    def __init__(self, *, who: Identity, order_id: str, access: RoomAccess, leeway: float) -> None:
        self._who = who
        self._order_id = order_id
        self._access = access
        self._deadline = None if who.expires_at is None else who.expires_at + leeway

    async def next(self, queue: asyncio.Queue[StreamMessage]) -> StreamMessage | None:
        """The next message, or None once the token has expired."""
        if self._deadline is None:
            return await queue.get()
        remaining = self._deadline - time.time()
        if remaining <= 0:
            return None
        try:
            return await asyncio.wait_for(queue.get(), remaining)
        except TimeoutError:
            return None

    async def allowed(self) -> bool:
        """The order's parties as of its latest event (a reassigned rider stops here)."""
        try:
            await self._access.check(self._who, f"order-{self._order_id}")
        except AccessDenied:
            return False
        return True


async def end_stream(stream: EventSourceResponse, code: str, message: str) -> None:
    payload = orjson.dumps({"code": code, "message": message}).decode()
    await stream.send(payload, event=END_EVENT)
