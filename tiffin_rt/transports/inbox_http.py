"""REST for the inbox: GET /api/notifications, POST .../{id}/read, POST .../read-all."""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from tiffin_rt.background import task_context
from tiffin_rt.core.errors import ClientError
from tiffin_rt.core.inbox import inbox_message
from tiffin_rt.core.parse import MAX_BIGINT, InvalidNumber, parse_int, parse_optional_int
from tiffin_rt.db import inbox
from tiffin_rt.db.pruner import prune_forever
from tiffin_rt.keys import POOL, SETTINGS, request_identity
from tiffin_rt.transports.http_auth import answers_refusals

LIST_ROUTE = "/api/notifications"
READ_ROUTE = "/api/notifications/{id}/read"
READ_ALL_ROUTE = "/api/notifications/read-all"

log = logging.getLogger(__name__)

_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no", "")
# Answered when the database fails (see http_auth.answers_refusals).
_UNAVAILABLE = "the inbox is unavailable; try again"


def _int_param(request: web.Request, name: str, low: int, high: int) -> int | None:
    try:
        return parse_optional_int(request.query.get(name), name, low=low, high=high)
    except InvalidNumber as exc:
        raise ClientError("bad_request", str(exc)) from None


def _bool_param(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "").lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ClientError("bad_request", f"{name}: true or false (got {raw[:20]!r})")


async def list_notifications(request: web.Request) -> web.Response:
    """Newest first; pass the answer's nextBefore as `before` for the next page."""
    who = request_identity(request)
    settings = request.app[SETTINGS].inbox
    limit = _int_param(request, "limit", 1, settings.max_page_size) or settings.page_size
    before = _int_param(request, "before", 1, MAX_BIGINT)
    unread_only = _bool_param(request, "unread")
    pool = request.app[POOL]
    items = await inbox.page(
        pool, who.user_id, limit=limit + 1, before=before, unread_only=unread_only
    )
    more = len(items) > limit
    items = items[:limit]
    return web.json_response(
        {
            "notifications": [inbox_message(i) for i in items],
            "unread": await inbox.unread_count(pool, who.user_id),
            "nextBefore": items[-1].id if more else None,
        }
    )


async def read_one(request: web.Request) -> web.Response:
    who = request_identity(request)
    try:
        event_id = parse_int(request.match_info["id"], "notification id", low=1)
    except InvalidNumber as exc:
        raise ClientError("bad_request", str(exc)) from None
    pool = request.app[POOL]
    if not await inbox.exists(pool, who.user_id, event_id):
        raise ClientError("not_found", f"no notification {event_id} in your inbox")
    result = await inbox.mark_read(pool, who.user_id, [event_id])
    return web.json_response(
        {"id": event_id, "read": True, "marked": len(result.marked), "unread": result.unread}
    )


async def read_all(request: web.Request) -> web.Response:
    who = request_identity(request)
    result = await inbox.mark_read(request.app[POOL], who.user_id, None)
    return web.json_response({"marked": len(result.marked), "unread": result.unread})


def _prune_inbox(app: web.Application) -> Coroutine[Any, Any, None]:
    settings = app[SETTINGS].inbox
    return prune_forever(
        app[POOL], settings.retention_days, settings.prune_interval, "tiffin_rt.inbox"
    )


def setup_inbox_http(app: web.Application) -> None:
    """The inbox routes, and pruning of notifications older than inbox.retention_days."""
    app.cleanup_ctx.append(task_context("tiffin_rt-inbox-pruner", _prune_inbox))  # after the pool
    answers = answers_refusals(unavailable=_UNAVAILABLE)
    app.router.add_get(LIST_ROUTE, answers(list_notifications))
    app.router.add_post(READ_ALL_ROUTE, answers(read_all))
    app.router.add_post(READ_ROUTE, answers(read_one))
