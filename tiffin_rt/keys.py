"""Typed application state keys (aiohttp's AppKey), one per shared resource."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from tiffin_rt.access import RoomAccess
from tiffin_rt.auth import Identity, TokenVerifier
from tiffin_rt.config import Settings
from tiffin_rt.core.hub import Hub
from tiffin_rt.core.router import Router
from tiffin_rt.db.listener import EventListener
from tiffin_rt.db.orders import OrderQueries
from tiffin_rt.ratelimit import RateLimits

SETTINGS = web.AppKey("settings", Settings)
DSN = web.AppKey("dsn", str)
POOL = web.AppKey("pool", asyncpg.Pool)
ORDER_QUERIES = web.AppKey("order_queries", OrderQueries)
ROOM_ACCESS = web.AppKey("room_access", RoomAccess)
LISTENER = web.AppKey("listener", EventListener)
ROUTER = web.AppKey("router", Router)
HUB = web.AppKey("hub", Hub)
VERIFIER = web.AppKey("verifier", TokenVerifier)
RATE_LIMITS = web.AppKey("rate_limits", RateLimits)
SOCKETIO = web.AppKey("socketio", Any)

# Set on each authenticated HTTP request by the auth middleware.
IDENTITY_KEY = web.RequestKey("identity", Identity)


def request_identity(request: web.Request) -> Identity:
    identity: Identity = request[IDENTITY_KEY]
    return identity
