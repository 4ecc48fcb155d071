"""Wires the live kitchen queue: its queries on the pool, the router sink, the room hook on
/notifications and the task that reads and sends (transports/socketio/kitchen_queue.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import socketio
from aiohttp import web

from tiffin_rt.background import cancel_and_wait
from tiffin_rt.core.kitchen import ORDER_KINDS
from tiffin_rt.db.kitchen import KitchenQueries
from tiffin_rt.keys import POOL, ROUTER, SETTINGS, SOCKETIO
from tiffin_rt.transports.socketio.kitchen_queue import KitchenQueues
from tiffin_rt.transports.socketio.notifications import NAMESPACE, NotificationsNamespace

KITCHEN_QUEUES = web.AppKey("kitchen_queues", KitchenQueues)


async def _kitchen(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    sio: socketio.AsyncServer = app[SOCKETIO]
    queues = KitchenQueues(
        sio=sio,
        pool=app[POOL],
        queries=KitchenQueries(settings.orders, settings.kitchen),
        settings=settings.kitchen,
    )
    namespace = sio.namespace_handlers.get(NAMESPACE)
    if isinstance(namespace, NotificationsNamespace):
        namespace.room_entered.append(queues.entered)
    app[ROUTER].add_sink(queues, kinds=ORDER_KINDS)
    app[KITCHEN_QUEUES] = queues
    task = asyncio.create_task(queues.run(), name="tiffin_rt-kitchen-queue")
    try:
        yield
    finally:
        await cancel_and_wait(task)
        await queues.close()


def kitchen_health(app: web.Application) -> dict[str, Any] | None:
    """For /healthz: the kitchen queue's reads, messages by kind and failed reads."""
    queues = app.get(KITCHEN_QUEUES)
    return queues.describe() if queues is not None else None


def setup_kitchen(app: web.Application) -> None:
    """Register after /notifications' cleanup context and before the listener's."""
    if app[SETTINGS].kitchen.enabled:
        app.cleanup_ctx.append(_kitchen)
