"""create_app(settings): the one place that wires resources, transports and routes."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import asyncpg
import socketio
from aiohttp import web

from tiffin_rt.access import RoomAccess
from tiffin_rt.admin.http import setup_admin
from tiffin_rt.auth import TokenVerifier
from tiffin_rt.background import cancel_and_wait, task_context
from tiffin_rt.batching import setup_batching
from tiffin_rt.chat_wiring import setup_support
from tiffin_rt.cluster import CLUSTER_BUS, open_bus
from tiffin_rt.cluster.bus import LocalEmit
from tiffin_rt.config import Settings
from tiffin_rt.core.hub import Hub
from tiffin_rt.core.payments import PAYMENT_STATUS, PaymentAudit
from tiffin_rt.core.router import Router
from tiffin_rt.db import migrate
from tiffin_rt.db.embedded import EmbeddedPostgres
from tiffin_rt.db.listener import EventListener, ListenerOptions
from tiffin_rt.db.orders import OrderQueries
from tiffin_rt.db.pool import close_pool, create_pool
from tiffin_rt.db.pruner import prune_forever
from tiffin_rt.drain import DRAIN, Drain, drain_connections, shutdown_done
from tiffin_rt.keys import (
    DSN,
    HUB,
    LISTENER,
    ORDER_QUERIES,
    POOL,
    RATE_LIMITS,
    ROOM_ACCESS,
    ROUTER,
    SETTINGS,
    SOCKETIO,
    VERIFIER,
)
from tiffin_rt.kitchen_wiring import setup_kitchen
from tiffin_rt.logcontext import request_ids
from tiffin_rt.logs import quiet_client_faults
from tiffin_rt.metrics.http import setup_metrics
from tiffin_rt.push.wiring import setup_push
from tiffin_rt.ratelimit import RateLimits
from tiffin_rt.tracking_wiring import notifications_namespace, setup_tracking
from tiffin_rt.transports.health import setup_health
from tiffin_rt.transports.http_auth import auth_middlewares
from tiffin_rt.transports.inbox_http import setup_inbox_http
from tiffin_rt.transports.origins import OriginPolicy, setup_cors
from tiffin_rt.transports.payment_webhook import setup_payment_webhook
from tiffin_rt.transports.socketio.notifications import (
    NOTIFICATION_GATEWAY,
    DeliverySink,
    NotificationGateway,
)
from tiffin_rt.transports.socketio.resume import SocketResume
from tiffin_rt.transports.socketio.server import attach, create_socketio_server
from tiffin_rt.transports.sse import setup_sse
from tiffin_rt.web import setup_web

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The server cannot start; the message says why in one line."""


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    embedded: EmbeddedPostgres | None = None
    dsn = settings.database.dsn
    if not dsn:
        embedded = EmbeddedPostgres(data_dir=settings.database.embedded_dir)
        try:
            dsn = await asyncio.to_thread(embedded.start)
        except Exception as exc:
            raise StartupError(f"cannot start the embedded PostgreSQL: {exc}") from exc
    app[DSN] = dsn
    try:
        yield
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


async def _migrate(dsn: str, settings: Settings) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        if settings.database.auto_migrate:
            await migrate.upgrade(conn, settings.orders, settings.payments, settings.batching)
        installed = await conn.fetchval("SELECT to_regclass('tiffin_rt.events') IS NOT NULL")
    except migrate.SchemaError as exc:
        raise StartupError(str(exc)) from exc
    finally:
        await conn.close()
    if not installed:
        raise StartupError(
            "the tiffin_rt schema is not installed: run `tiffin-rt db upgrade` "
            "or set database.auto_migrate: true"
        )


async def _pool(app: web.Application) -> AsyncIterator[None]:
    """The query pool, and what reads through it: order lookups and room authorization."""
    settings = app[SETTINGS]
    try:
        await _migrate(app[DSN], settings)
        pool = await create_pool(app[DSN], settings.database)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise StartupError(f"database.dsn: cannot connect: {exc}") from exc
    try:
        queries = await OrderQueries.create(pool, settings.orders)
        app[POOL] = pool
        app[ORDER_QUERIES] = queries
        app[ROOM_ACCESS] = RoomAccess(
            pool=pool, orders=queries, hub=app[HUB], cache_ttl=settings.limits.order_cache_ttl
        )
        yield
    finally:
        await close_pool(pool, settings.server.shutdown_timeout)


def _listener_cursor(app: web.Application) -> int | None:
    """The last event handed to the router (None until the listener first connected)."""
    listener = app.get(LISTENER)
    return listener.cursor if listener is not None else None


async def _notifications(app: web.Application) -> AsyncIterator[None]:
    """/notifications, the order sinks and the gateway: built on the pool, on the router
    before the listener starts."""
    settings, router = app[SETTINGS], app[ROUTER]
    sio: socketio.AsyncServer = app[SOCKETIO]
    pool, access = app[POOL], app[ROOM_ACCESS]
    resume = SocketResume(sio, pool, settings, cursor=functools.partial(_listener_cursor, app))
    notifications = notifications_namespace(
        app, resume=resume, verifier=app[VERIFIER], access=access, limits=app[RATE_LIMITS]
    )
    sio.register_namespace(notifications)
    router.add_sink(access)  # before the delivering sinks: an evicted client gets nothing more
    # one message per event, for the order's SSE streams and the /notifications rooms
    router.add_sink(
        DeliverySink(
            sio.manager,
            terminal_statuses=settings.notifications.terminal_statuses,
            hold=resume.handoffs.hold,
        )
    )
    router.add_sink(resume.handoffs)  # last: marks each batch as delivered everywhere
    app[NOTIFICATION_GATEWAY] = NotificationGateway(pool, order_ids=app[ORDER_QUERIES].id_format)
    try:
        yield
    finally:
        await notifications.close()


async def _listener(app: web.Application) -> AsyncIterator[None]:
    """Started once every sink is on the router, so no event is delivered to a partial set."""
    db = app[SETTINGS].database
    listener = EventListener(
        dsn=app[DSN],
        delivery=app[ROUTER],
        options=ListenerOptions(
            heartbeat_interval=db.heartbeat_interval,
            heartbeat_timeout=db.heartbeat_timeout,
            command_timeout=db.command_timeout,
            reconnect_min_delay=db.reconnect_min_delay,
            reconnect_max_delay=db.reconnect_max_delay,
            gap_timeout=db.gap_timeout,
            late_event_window=db.late_event_window,
        ),
        channels=app[SETTINGS].notifications.extra_channels,
        order_ids=app[ORDER_QUERIES].id_format,
    )
    app[LISTENER] = listener
    task = asyncio.create_task(listener.run(), name="tiffin_rt-listener")
    try:
        await asyncio.wait_for(listener.wait_connected(), timeout=15)
    except TimeoutError:
        log.warning("event listener not connected yet; /readyz reports it")
    try:
        yield
    finally:
        await cancel_and_wait(task)
        await app[ROUTER].close()


def _prune_events(app: web.Application) -> Coroutine[Any, Any, None]:
    db = app[SETTINGS].database
    return prune_forever(app[POOL], db.retention_days, db.prune_interval)


async def _cluster(app: web.Application) -> AsyncIterator[None]:
    """The broker (cluster.broker); a node starts without it and keeps trying to reach it."""
    bus = app[CLUSTER_BUS]
    await bus.start()
    try:
        async with asyncio.timeout(app[SETTINGS].cluster.node_timeout):
            await bus.wait_connected()
    except TimeoutError:
        log.warning("cluster broker (%s) not reachable yet; retrying in the background", bus.kind)
    try:
        yield
    finally:
        await bus.stop()


def _emitter(sio: Any) -> LocalEmit:
    """The bus's way to this node's Socket.IO connections."""

    async def emit(
        event: str, data: Any, rooms: list[str], namespace: str, skip_sid: str | None
    ) -> None:
        await sio.emit(event, data, to=rooms, namespace=namespace, skip_sid=skip_sid)

    return emit


def create_app(settings: Settings) -> web.Application:
    """Every long-lived resource and task is a cleanup context, started in the order below and
    torn down in reverse. The one shutdown signal, drain_connections (drain.py), runs before
    aiohttp waits server.shutdown_timeout for open handlers: it ends streams and sessions
    first."""
    quiet_client_faults()
    verifier = TokenVerifier(settings.auth)
    bus = open_bus(settings.cluster)
    limits = RateLimits(settings.limits, shared=bus.user_limits)
    origins = OriginPolicy(settings.server.cors_origins)
    app = web.Application(
        middlewares=[
            request_ids,
            *auth_middlewares(verifier, settings.auth.cookie_name, limits, origins),
        ],
        client_max_size=settings.limits.max_message_bytes,
    )
    app[SETTINGS] = settings
    app[VERIFIER] = verifier
    app[RATE_LIMITS] = limits
    app[ROUTER] = Router()
    app[ROUTER].add_sink(PaymentAudit(), kinds={PAYMENT_STATUS})  # logs odd payment rows
    app[HUB] = Hub()
    sio = create_socketio_server(settings, origins, hub=app[HUB])
    app[CLUSTER_BUS] = bus
    bus.attach(_emitter(sio))
    app[SOCKETIO] = sio
    attach(sio, app)

    # The cluster bus before /notifications and the support chat: they emit and count through it.
    app.cleanup_ctx.extend([_database, _pool, _cluster])
    setup_tracking(app)  # rider tracking: before /notifications, whose namespace takes it
    app.cleanup_ctx.append(_notifications)
    setup_batching(app)  # its sink and timers, on the pool, before the listener
    setup_support(app)  # its namespace and sink, on the pool, before the listener
    setup_kitchen(app)  # the kitchen queue's sink and room hook, before the listener
    setup_push(app)  # Web Push: its sink and workers, on the pool, before the listener
    setup_metrics(app)  # its lag sink last on the router, before the listener
    app.cleanup_ctx.extend([_listener, task_context("tiffin_rt-pruner", _prune_events)])
    setup_health(app)
    setup_sse(app)
    setup_web(app, settings)
    setup_inbox_http(app)
    setup_admin(app)
    setup_payment_webhook(app)
    app[DRAIN] = Drain()
    app.on_shutdown.append(drain_connections)
    app.on_cleanup.append(shutdown_done)  # after every cleanup context (aiohttp runs them first)
    setup_cors(app, origins)  # last: every REST and SSE route exists
    return app
