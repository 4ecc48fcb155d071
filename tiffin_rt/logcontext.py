"""Which request or connection a log line is about (logs.py writes it in JSON lines).

The request id is set by `request_ids` (every HTTP request, SSE and Engine.IO's included), the
connection id by the Socket.IO namespaces when they handle a connection's event: each runs in
a task of its own, so a line logged there carries the id of that request or connection.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

from aiohttp import web
from aiohttp.typedefs import Handler

REQUEST_ID: ContextVar[str | None] = ContextVar("tiffin_rt_request_id", default=None)
CONNECTION_ID: ContextVar[str | None] = ContextVar("tiffin_rt_connection_id", default=None)

# An X-Request-ID from a proxy (nginx's $request_id, a UUID) is kept; anything else is replaced.
_PROXY_ID = re.compile(r"[0-9A-Za-z-]{8,64}")
REQUEST_ID_HEADER = "X-Request-ID"


@web.middleware
async def request_ids(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request gets an id, echoed in X-Request-ID and on every line logged for it."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = given if _PROXY_ID.fullmatch(given) else uuid.uuid4().hex[:16]
    REQUEST_ID.set(request_id)
    CONNECTION_ID.set(None)
    response = await handler(request)
    if not response.prepared:
        response.headers[REQUEST_ID_HEADER] = request_id
    return response
