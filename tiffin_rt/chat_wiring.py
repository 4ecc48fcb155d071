"""Wires the live support chat: storage, the /support namespace, its sink, REST, timers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import socketio
from aiohttp import web

from tiffin_rt.core.chat import SUPPORT_KINDS
from tiffin_rt.db.chat_store import AgentsOnline, SupportStore
from tiffin_rt.keys import POOL, ROOM_ACCESS, ROUTER, SETTINGS, VERIFIER
from tiffin_rt.ratelimit import RateLimits
from tiffin_rt.transports.chat_http import setup_support_http
from tiffin_rt.transports.socketio.chat_namespace import (
    Presence,
    SupportNamespace,
    SupportSink,
    chat_limits,
)

log = logging.getLogger(__name__)

# How often this node refreshes its agents' presence rows (they go stale after 30 s).
PRESENCE_INTERVAL = 10.0


async def _every(seconds: float, work: Callable[[], Awaitable[None]], what: str) -> None:
    while True:
        try:
            await work()
        except Exception as exc:
            log.warning("support %s failed: %s: %s", what, type(exc).__name__, exc)
        await asyncio.sleep(seconds)


def setup_support(app: web.Application, sio: socketio.AsyncServer, limits: RateLimits) -> None:
    """Call after the core cleanup contexts are registered: it needs the pool and the router."""
    settings = app[SETTINGS].support
    store = SupportStore()
    presence = Presence(sio, AgentsOnline(store, node_id=uuid.uuid4().hex))
    namespace = SupportNamespace(
        verifier=app[VERIFIER],
        limits=limits,
        store=store,
        access=app[ROOM_ACCESS],
        presence=presence,
        settings=settings,
    )
    sio.register_namespace(namespace)
    app[ROUTER].add_sink(SupportSink(sio, presence, settings), kinds=SUPPORT_KINDS)
    setup_support_http(app, store, chat_limits(settings), presence)

    async def support_ctx(app: web.Application) -> AsyncIterator[None]:
        store.bind(app[POOL])
        tasks = [
            asyncio.create_task(
                _every(min(0.5, settings.typing_timeout / 4), namespace.expire_typing, "typing"),
                name="tiffin_rt-support-typing",
            ),
            asyncio.create_task(
                _every(PRESENCE_INTERVAL, presence.heartbeat, "presence"),
                name="tiffin_rt-support-presence",
            ),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await namespace.close()
            with contextlib.suppress(Exception):
                await presence.stop()

    app.cleanup_ctx.append(support_ctx)
