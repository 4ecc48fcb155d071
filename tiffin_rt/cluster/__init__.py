"""Several nodes as one: the broker that moves ephemeral events between them (`cluster.broker`).

`open_bus` imports only the configured backend: `local` (no broker, one node), `redis`
(redis-py's asyncio client) or `amqp` (aio-pika, RabbitMQ).
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from aiohttp import web

from tiffin_rt.cluster.backend import BrokerBackend
from tiffin_rt.cluster.bus import ClusterBus
from tiffin_rt.config import ClusterSettings

REDIS_SCHEMES = ("redis", "rediss", "unix")
AMQP_SCHEMES = ("amqp", "amqps")

# The bus of an app: `await app[CLUSTER_BUS].emit("riderLocation", data, to=[room], namespace=ns)`.
CLUSTER_BUS = web.AppKey("cluster_bus", ClusterBus)


def open_bus(settings: ClusterSettings) -> ClusterBus:
    node_id = uuid.uuid4().hex[:12]
    kind, backend = _backend(settings, node_id)
    return ClusterBus(
        backend,
        node_id=node_id,
        kind=kind,
        name=settings.name,
        heartbeat_interval=settings.heartbeat_interval,
        node_timeout=settings.node_timeout,
    )


def _backend(settings: ClusterSettings, node_id: str) -> tuple[str, BrokerBackend]:
    scheme = urlsplit(settings.broker).scheme
    if not settings.broker:
        from tiffin_rt.cluster.local import LocalBackend

        return "none", LocalBackend()
    if scheme in REDIS_SCHEMES:
        from tiffin_rt.cluster.redis import RedisBackend

        return "redis", RedisBackend(settings.broker, node_timeout=settings.node_timeout)
    if scheme in AMQP_SCHEMES:
        from tiffin_rt.cluster.amqp import AmqpBackend

        return "amqp", AmqpBackend(
            settings.broker,
            exchange=settings.name,
            node_id=node_id,
            node_timeout=settings.node_timeout,
        )
    raise ValueError(f"cluster.broker: no backend for {scheme!r}")  # config refuses it first


__all__ = ["CLUSTER_BUS", "ClusterBus", "open_bus"]
