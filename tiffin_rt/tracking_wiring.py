"""Wires rider tracking: the tracker on the pool and the cluster bus, its Socket.IO and SSE
watchers, the position writer and pruner, and /notifications' locationUpdate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import socketio
from aiohttp import web

from tiffin_rt.background import cancel_and_wait
from tiffin_rt.cluster import CLUSTER_BUS
from tiffin_rt.db.rider_positions import PositionQueries
from tiffin_rt.keys import ORDER_QUERIES, POOL, ROUTER, SETTINGS, SOCKETIO
from tiffin_rt.tracking.service import RiderTracking
from tiffin_rt.tracking.store import PositionWriter, prune_forever
from tiffin_rt.transports.socketio.locations import SocketLocations
from tiffin_rt.transports.socketio.resume import ResumableNotificationsNamespace
from tiffin_rt.transports.socketio.tracking_namespace import TrackingNotificationsNamespace
from tiffin_rt.transports.sse_location import (
    LOCATION_STREAMS,
    RIDER_TRACKING,
    setup_location_sse,
)

SOCKET_LOCATIONS = web.AppKey("socket_locations", SocketLocations)


async def _tracking(app: web.Application) -> AsyncIterator[None]:
    """After the pool and the bus, before /notifications (its namespace takes the tracker)."""
    settings = app[SETTINGS]
    tracking_settings = settings.tracking
    pool = app[POOL]
    queries = await PositionQueries.create(pool, settings.orders, tracking_settings)
    writer = PositionWriter(
        pool, interval=tracking_settings.store_interval, trail=tracking_settings.trail
    )
    tracking = RiderTracking(
        settings=tracking_settings,
        terminal_statuses=settings.notifications.terminal_statuses,
        order_ids=app[ORDER_QUERIES].id_format,
        pool=pool,
        queries=queries,
        bus=app[CLUSTER_BUS],
        writer=writer,
    )
    sio: socketio.AsyncServer = app[SOCKETIO]
    locations = SocketLocations(sio, retry_seconds=tracking_settings.slow_client_retry_ms / 1000)
    tracking.add_watchers(locations)
    tracking.add_watchers(app[LOCATION_STREAMS])  # hub clients: the authorizer evicts them too
    app[ROUTER].add_sink(tracking)
    app[RIDER_TRACKING] = tracking
    app[SOCKET_LOCATIONS] = locations
    tasks = [
        asyncio.create_task(writer.run(), name="tiffin_rt-rider-positions"),
        asyncio.create_task(
            prune_forever(
                pool, tracking_settings.trail_retention_hours, tracking_settings.prune_interval
            ),
            name="tiffin_rt-rider-pruner",
        ),
    ]
    try:
        yield
    finally:
        for task in tasks:
            await cancel_and_wait(task)
        await writer.flush(everything=True)
        await locations.close()


def notifications_namespace(app: web.Application, **kwargs: Any) -> ResumableNotificationsNamespace:
    """/notifications, with locationUpdate when tracking is enabled."""
    if RIDER_TRACKING not in app:
        return ResumableNotificationsNamespace(**kwargs)
    return TrackingNotificationsNamespace(
        tracking=app[RIDER_TRACKING], locations=app[SOCKET_LOCATIONS], **kwargs
    )


def tracking_health(app: web.Application) -> dict[str, Any] | None:
    """For /healthz: positions accepted and refused, and what each transport did with them."""
    tracking = app.get(RIDER_TRACKING)
    if tracking is None:
        return None
    return {
        **tracking.describe(),
        "socketio": app[SOCKET_LOCATIONS].describe(),
        "sse": app[LOCATION_STREAMS].describe(),
    }


def setup_tracking(app: web.Application) -> None:
    """Before /notifications' cleanup context (see app.create_app)."""
    if not app[SETTINGS].tracking.enabled:
        return
    setup_location_sse(app)
    app.cleanup_ctx.append(_tracking)
