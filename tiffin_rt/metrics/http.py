"""GET /metrics: Prometheus's text format through prometheus-client, behind metrics.token."""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.aiohttp import make_aiohttp_handler

from tiffin_rt import metrics
from tiffin_rt.config import MetricsSettings
from tiffin_rt.keys import ROUTER, SETTINGS
from tiffin_rt.metrics.collector import LISTENER_LAG, AppCollector
from tiffin_rt.metrics.lag import ListenerLag
from tiffin_rt.transports.http_auth import json_error

log = logging.getLogger(__name__)

ROUTE = "/metrics"


def app_registry(app: web.Application) -> CollectorRegistry:
    """This app's metrics and the process's (CPU, memory, open files, garbage collections)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AppCollector(app))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def token_matches(request: web.BaseRequest, expected: str) -> bool:
    """`Authorization: Bearer <metrics.token>`, compared in constant time."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Header bytes that are not UTF-8 arrive as lone surrogates: compared as the bytes they were.
    return hmac.compare_digest(
        given.strip().encode("utf-8", "surrogateescape"), expected.encode("utf-8")
    )


def metrics_handler(settings: MetricsSettings, registry: CollectorRegistry) -> Handler:
    render = make_aiohttp_handler(registry, disable_compression=True)

    async def scrape(request: web.Request) -> web.StreamResponse:
        if settings.token and not token_matches(request, settings.token):
            metrics.refused("metrics", "unauthorized")
            log.info("GET /metrics from %s refused: no or wrong metrics.token", request.remote)
            return json_error(
                401,
                "unauthorized",
                "GET /metrics needs metrics.token as a Bearer token",
                {"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        return await render(request)

    return scrape


async def _listener_lag(app: web.Application) -> AsyncIterator[None]:
    """The lag sink goes last on the router: an event is observed once every transport has it."""
    lag = ListenerLag()
    app[LISTENER_LAG] = lag
    app[ROUTER].add_sink(lag)
    yield


def setup_metrics(app: web.Application) -> None:
    """With metrics.enabled: the route, and the lag sink (before the listener starts)."""
    settings = app[SETTINGS].metrics
    if not settings.enabled:
        return
    app.router.add_get(ROUTE, metrics_handler(settings, app_registry(app)))
    app.cleanup_ctx.append(_listener_lag)
