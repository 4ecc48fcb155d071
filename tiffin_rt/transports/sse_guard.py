"""When an open SSE stream must end on its own: its token's expiry (the authorizer ends it when
the order changes hands, see access.RoomAccess)."""

from __future__ import annotations

import asyncio
import time

import orjson
from aiohttp_sse import EventSourceResponse

from tiffin_rt.auth import Identity

# The named event a stream ends with when it may no longer run (EventSource: addEventListener).
END_EVENT = "end"


def token_deadline(who: Identity, leeway: float) -> float | None:
    """The loop time at which the stream's token has expired (None: it never does)."""
    if who.expires_at is None:
        return None
    return asyncio.get_running_loop().time() + (who.expires_at + leeway - time.time())


async def end_stream(stream: EventSourceResponse, code: str, message: str) -> None:
    payload = orjson.dumps({"code": code, "message": message}).decode()
    await stream.send(payload, event=END_EVENT)
