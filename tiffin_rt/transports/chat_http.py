"""REST for the support chat: conversation lists, history pages and presence."""

from __future__ import annotations

import logging

from aiohttp import web

from tiffin_rt.core.chat import ChatError, Limits, history_request
from tiffin_rt.core.parse import InvalidNumber, parse_int
from tiffin_rt.db.chat_store import (
    DATABASE_ERRORS,
    INPUT_ERRORS,
    SupportStore,
    Who,
    input_error_name,
)
from tiffin_rt.keys import request_identity
from tiffin_rt.transports.http_auth import json_error
from tiffin_rt.transports.socketio.chat_namespace import Presence

_STATUS = {"forbidden": 403, "not_found": 404, "unavailable": 503}

log = logging.getLogger(__name__)

SUPPORT_STORE = web.AppKey("support_store", SupportStore)
SUPPORT_LIMITS = web.AppKey("support_limits", Limits)
SUPPORT_PRESENCE = web.AppKey("support_presence", Presence)


def _who(request: web.Request) -> Who:
    identity = request_identity(request)
    return Who(identity.user_id, identity.role)


def _refused(exc: ChatError) -> web.Response:
    return json_error(_STATUS.get(exc.code, 400), exc.code, exc.message)


def _bad_input(exc: Exception) -> web.Response:
    log.warning("support REST: the database refused the input (%s)", input_error_name(exc))
    return json_error(400, "invalid_payload", "the request holds data that cannot be stored")


def _database_down(exc: Exception) -> web.Response:
    log.warning("support REST failed on the database: %s", exc)
    return json_error(503, "unavailable", "the database is unavailable; try again")


async def list_conversations(request: web.Request) -> web.Response:
    status = request.query.get("status", "open")
    if status not in ("open", "closed", "all"):
        return json_error(400, "invalid_payload", "status must be open, closed or all")
    try:
        summaries = await request.app[SUPPORT_STORE].summaries(_who(request), status)
    except ChatError as exc:
        return _refused(exc)
    except INPUT_ERRORS as exc:
        return _bad_input(exc)
    except DATABASE_ERRORS as exc:
        return _database_down(exc)
    return web.json_response({"conversations": [s.payload() for s in summaries]})


async def conversation_messages(request: web.Request) -> web.Response:
    try:
        conversation_id = parse_int(request.match_info["id"], "conversation id", low=1)
    except InvalidNumber as exc:
        return json_error(400, "invalid_payload", f"a conversation id is a positive integer: {exc}")
    query = request.query
    try:
        page = history_request(
            conversation_id,
            query.get("before"),
            query.get("after"),
            query.get("limit"),
            request.app[SUPPORT_LIMITS],
        )
        messages, has_more = await request.app[SUPPORT_STORE].history(_who(request), page)
    except ChatError as exc:
        return _refused(exc)
    except INPUT_ERRORS as exc:
        return _bad_input(exc)
    except DATABASE_ERRORS as exc:
        return _database_down(exc)
    return web.json_response(
        {
            "conversationId": page.conversation_id,
            "messages": [m.payload() for m in messages],
            "hasMore": has_more,
        }
    )


async def presence(request: web.Request) -> web.Response:
    return web.json_response(request.app[SUPPORT_PRESENCE].payload())


def setup_support_http(app: web.Application) -> None:
    """The routes; the store and presence they read are set by chat_wiring's cleanup context."""
    app.router.add_get("/api/support/presence", presence)
    app.router.add_get("/api/support/conversations", list_conversations)
    app.router.add_get("/api/support/conversations/{id}/messages", conversation_messages)
