"""Wiring of Web Push into the app: routes always, workers and the router sink when enabled."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from tiffin_rt.keys import HUB, POOL, ROUTER, SETTINGS
from tiffin_rt.push.digests import DigestPushes
from tiffin_rt.push.keys import PUSH
from tiffin_rt.push.service import PushService
from tiffin_rt.transports.push_http import setup_push_http
from tiffin_rt.transports.socketio.notifications import NAMESPACE


async def _push(app: web.Application) -> AsyncIterator[None]:
    """On the pool, before the listener starts: its sink sees every notification."""
    settings = app[SETTINGS].push
    if not settings.enabled:
        yield
        return
    hub = app[HUB]  # where /notifications connections' rooms are

    def is_online(user_id: str) -> bool:
        """A /notifications connection on this node would get the notification live."""
        room = f"user-{user_id}"
        return hub.has_room(NAMESPACE, room)

    service = PushService(settings, app[POOL], is_online)
    dispatcher = await service.start()
    # batching: a held notification is not pushed to its user, the digest is (once)
    app[ROUTER].add_sink(DigestPushes(dispatcher), kinds=DigestPushes.KINDS)
    app[PUSH] = service
    try:
        yield
    finally:
        await service.stop()


def setup_push(app: web.Application) -> None:
    app.cleanup_ctx.append(_push)
    setup_push_http(app)
