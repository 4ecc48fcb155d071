"""RabbitMQ as the broker (aio-pika): one direct exchange, one exclusive queue per node.

Nothing is persisted: messages are published transient, without publisher confirms, and the
node's queue (bound to every channel) disappears with its connection. RabbitMQ holds no
counters here: with this broker, connection and event limits are per node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustExchange
from yarl import URL

from tiffin_rt.cluster.backend import BrokerBackend, BrokerUnavailable, Deliver

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 1.0
RECONNECT_MIN_DELAY = 0.1
RECONNECT_MAX_DELAY = 2.0
# Messages waiting in a node's queue past this are dropped, oldest first (a stalled node).
QUEUE_MAX_LENGTH = 10_000


class AmqpBackend(BrokerBackend):
    """Connects, declares and consumes; on any loss of the connection, does it all again."""

    def __init__(self, url: str, *, exchange: str, node_id: str, node_timeout: float) -> None:
        parsed = URL(url)
        if "heartbeat" not in parsed.query:
            # RabbitMQ's default (60 s) would leave a silently dead broker unnoticed that long.
            parsed = parsed.update_query(heartbeat=max(1, int(node_timeout / 2)))
        self._url = parsed
        self._exchange_name = exchange
        self._queue_prefix = f"{exchange}.{node_id}"
        self._node_timeout = node_timeout
        self._exchange: AbstractRobustExchange | aio_pika.abc.AbstractExchange | None = None
        self._task: asyncio.Task[None] | None = None
        self._reconnects = 0

    @property
    def connected(self) -> bool:
        return self._exchange is not None

    @property
    def reconnects(self) -> int:
        return self._reconnects

    async def start(self, channels: Sequence[str], deliver: Deliver) -> None:
        self._task = asyncio.create_task(
            self._consume_forever(list(channels), deliver), name="tiffin_rt-amqp-consumer"
        )

    async def publish(self, channel: str, message: bytes) -> None:
        exchange = self._exchange
        if exchange is None:
            raise BrokerUnavailable("RabbitMQ is not connected")
        try:
            await asyncio.wait_for(
                exchange.publish(
                    aio_pika.Message(message, delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT),
                    routing_key=channel,
                ),
                COMMAND_TIMEOUT,
            )
        except (aio_pika.exceptions.AMQPError, OSError, TimeoutError, RuntimeError) as exc:
            raise BrokerUnavailable(f"RabbitMQ: {type(exc).__name__}: {exc}") from None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _consume_forever(self, channels: list[str], deliver: Deliver) -> None:
        delay = RECONNECT_MIN_DELAY
        connected_before = False
        attempt = 0

        async def on_message(message: AbstractIncomingMessage) -> None:
            deliver(message.routing_key or "", message.body)

        while True:
            connection: aio_pika.abc.AbstractConnection | None = None
            attempt += 1
            try:
                connection = await aio_pika.connect(self._url, timeout=self._node_timeout)
                lost = asyncio.Event()
                connection.close_callbacks.add(_setter(lost))
                channel = await connection.channel(publisher_confirms=False)
                channel.close_callbacks.add(_setter(lost))
                exchange = await channel.declare_exchange(
                    self._exchange_name, aio_pika.ExchangeType.DIRECT, durable=False
                )
                # A new name each time: RabbitMQ may still hold the last one (exclusive) until
                # it notices that connection died; that one goes when it does.
                queue = await channel.declare_queue(
                    f"{self._queue_prefix}.{attempt}",
                    exclusive=True,
                    auto_delete=True,
                    arguments={"x-max-length": QUEUE_MAX_LENGTH, "x-overflow": "drop-head"},
                )
                for name in channels:
                    await queue.bind(exchange, routing_key=name)
                await queue.consume(on_message, no_ack=True)
                self._exchange = exchange
                delay = RECONNECT_MIN_DELAY
                if connected_before:
                    self._reconnects += 1
                    log.info("RabbitMQ broker: consuming again")
                connected_before = True
                await lost.wait()
                log.warning("RabbitMQ broker connection lost; reconnecting")
            except Exception as exc:  # whatever it was, keep trying: the node must not go deaf
                if self._exchange is not None or not connected_before:
                    log.warning(
                        "RabbitMQ broker unreachable (%s: %s); reconnecting",
                        type(exc).__name__,
                        exc,
                    )
            finally:
                self._exchange = None
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(connection.close(), COMMAND_TIMEOUT)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_DELAY)


def _setter(event: asyncio.Event) -> Callable[..., None]:
    """A close callback (aio-pika passes the closed object and the reason) that sets `event`."""
    return lambda *_: event.set()
