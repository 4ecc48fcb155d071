"""Wires the live support chat: storage, the /support namespace, its sink, REST, timers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import socketio
from aiohttp import web

from tiffin_rt.background import cancel_and_wait
from tiffin_rt.cluster import CLUSTER_BUS
from tiffin_rt.core.chat import AGENTS_ROOM, SUPPORT_KINDS
from tiffin_rt.db.chat_store import SupportStore
from tiffin_rt.keys import POOL, RATE_LIMITS, ROOM_ACCESS, ROUTER, SETTINGS, SOCKETIO, VERIFIER
from tiffin_rt.transports.chat_http import (
    SUPPORT_LIMITS,
    SUPPORT_PRESENCE,
    SUPPORT_STORE,
    setup_support_http,
)
from tiffin_rt.transports.socketio.chat_namespace import (
    Presence,
    SupportNamespace,
    SupportSink,
    chat_limits,
)

log = logging.getLogger(__name__)


async def _every(seconds: float, work: Callable[[], Awaitable[None]], what: str) -> None:
    while True:
        try:
            await work()
        except Exception as exc:
            log.warning("support %s failed: %s: %s", what, type(exc).__name__, exc)
        await asyncio.sleep(seconds)


async def _support(app: web.Application) -> AsyncIterator[None]:
    """The store on the pool, the namespace and its sink, and the typing timer."""
    settings = app[SETTINGS].support
    sio: socketio.AsyncServer = app[SOCKETIO]
    store = SupportStore(app[POOL])
    bus = app[CLUSTER_BUS]  # typing and presence cross nodes through it
    presence = Presence(sio, bus)
    bus.watch_presence(AGENTS_ROOM, presence.recount)
    namespace = SupportNamespace(
        verifier=app[VERIFIER],
        limits=app[RATE_LIMITS],
        store=store,
        access=app[ROOM_ACCESS],
        presence=presence,
        bus=bus,
        settings=settings,
    )
    sio.register_namespace(namespace)
    app[ROUTER].add_sink(SupportSink(sio), kinds=SUPPORT_KINDS)
    app[SUPPORT_STORE] = store
    app[SUPPORT_PRESENCE] = presence
    typing = asyncio.create_task(
        _every(min(0.5, settings.typing_timeout / 4), namespace.expire_typing, "typing"),
        name="tiffin_rt-support-typing",
    )
    try:
        yield
    finally:
        await cancel_and_wait(typing)
        await namespace.close()


def setup_support(app: web.Application) -> None:
    """Register after the pool's cleanup context and before the listener's: the sink must be
    on the router before the first event is delivered."""
    app[SUPPORT_LIMITS] = chat_limits(app[SETTINGS].support)
    setup_support_http(app)
    app.cleanup_ctx.append(_support)
