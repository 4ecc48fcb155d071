"""REST for the support chat: conversation lists, history pages and presence."""

from __future__ import annotations

from aiohttp import web

from tiffin_rt.core.chat import ChatError, Limits, history_request
from tiffin_rt.core.parse import InvalidNumber, parse_int
from tiffin_rt.db.chat_store import SupportStore, Who
from tiffin_rt.keys import request_identity
from tiffin_rt.transports.http_auth import answers_refusals
from tiffin_rt.transports.socketio.chat_namespace import Presence

# Answered when the database fails (see http_auth.answers_refusals).
_UNAVAILABLE = "the database is unavailable; try again"

SUPPORT_STORE = web.AppKey("support_store", SupportStore)
SUPPORT_LIMITS = web.AppKey("support_limits", Limits)
SUPPORT_PRESENCE = web.AppKey("support_presence", Presence)


def _who(request: web.Request) -> Who:
    identity = request_identity(request)
    return Who(identity.user_id, identity.role)


async def list_conversations(request: web.Request) -> web.Response:
    status = request.query.get("status", "open")
    if status not in ("open", "closed", "all"):
        raise ChatError("invalid_payload", "status must be open, closed or all")
    summaries = await request.app[SUPPORT_STORE].summaries(_who(request), status)
    return web.json_response({"conversations": [s.payload() for s in summaries]})


async def conversation_messages(request: web.Request) -> web.Response:
    try:
        conversation_id = parse_int(request.match_info["id"], "conversation id", low=1)
    except InvalidNumber as exc:
        raise ChatError(
            "invalid_payload", f"a conversation id is a positive integer: {exc}"
        ) from None
    query = request.query
    page = history_request(
        conversation_id,
        query.get("before"),
        query.get("after"),
        query.get("limit"),
        request.app[SUPPORT_LIMITS],
    )
    messages, has_more = await request.app[SUPPORT_STORE].history(_who(request), page)
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
    answers = answers_refusals(unavailable=_UNAVAILABLE)
    app.router.add_get("/api/support/conversations", answers(list_conversations))
    app.router.add_get("/api/support/conversations/{id}/messages", answers(conversation_messages))
