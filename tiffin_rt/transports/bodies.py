"""A request body read whole, however it arrives, and bounded."""

from __future__ import annotations

from aiohttp import web


async def read_bounded(request: web.Request, limit: int) -> bytes | None:
    """The whole body (in several TCP segments, or chunked with no Content-Length); None past
    `limit` bytes, refused before reading when Content-Length says so. `content.read(n)` would
    return only what had arrived so far."""
    if (request.content_length or 0) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
