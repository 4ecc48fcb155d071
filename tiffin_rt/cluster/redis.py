"""Redis as the broker (redis-py's asyncio client): pub/sub channels, and shared user limits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from tiffin_rt.cluster.backend import BrokerBackend, BrokerUnavailable, Deliver
from tiffin_rt.cluster.limits import SharedUserLimits, Windows

log = logging.getLogger(__name__)

T = TypeVar("T")

# Every call to Redis is bounded by this (seconds). Once the subscription has noticed that
# Redis is gone (within node_timeout), nothing waits for it at all.
COMMAND_TIMEOUT = 1.0
RECONNECT_MIN_DELAY = 0.1
RECONNECT_MAX_DELAY = 2.0
ERRORS = (RedisError, OSError, TimeoutError)


class RedisBackend(BrokerBackend):
    """Subscribes on one connection (pinged; silence past `node_timeout` is a dead Redis) and
    publishes through a small pool; never retries a command (the caller drops or decides)."""

    def __init__(self, url: str, *, node_timeout: float) -> None:
        self._client = aioredis.Redis.from_url(
            url,
            socket_timeout=COMMAND_TIMEOUT,
            socket_connect_timeout=COMMAND_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._node_timeout = node_timeout
        self._task: asyncio.Task[None] | None = None
        self._connected = False
        self._reconnects = 0

    @property
    def client(self) -> aioredis.Redis:
        return self._client

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def reconnects(self) -> int:
        return self._reconnects

    async def start(self, channels: Sequence[str], deliver: Deliver) -> None:
        self._task = asyncio.create_task(
            self._subscribe_forever(list(channels), deliver), name="tiffin_rt-redis-subscriber"
        )

    async def publish(self, channel: str, message: bytes) -> None:
        if not self._connected:
            raise BrokerUnavailable("Redis is not connected")
        try:
            await asyncio.wait_for(self._client.publish(channel, message), COMMAND_TIMEOUT)
        except ERRORS as exc:
            raise BrokerUnavailable(f"Redis: {type(exc).__name__}: {exc}") from None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._connected = False
        with contextlib.suppress(*ERRORS):
            await self._client.aclose()

    def user_limits(self, prefix: str, node_id: str, node_timeout: float) -> SharedUserLimits:
        return RedisUserLimits(
            self._client, prefix=prefix, node_id=node_id, ttl=node_timeout, reachable=self
        )

    async def _subscribe_forever(self, channels: list[str], deliver: Deliver) -> None:
        loop = asyncio.get_running_loop()
        ping_every = self._node_timeout / 3
        delay = RECONNECT_MIN_DELAY
        subscribed_before = False
        while True:
            pubsub = self._client.pubsub()
            try:
                await asyncio.wait_for(pubsub.subscribe(*channels), COMMAND_TIMEOUT)
                heard = next_ping = loop.time()
                while True:
                    message = await pubsub.get_message(timeout=ping_every / 2)
                    now = loop.time()
                    if message is not None:
                        heard = now
                        if message["type"] == "subscribe" and not self._connected:
                            self._connected = True
                            delay = RECONNECT_MIN_DELAY
                            if subscribed_before:
                                self._reconnects += 1
                                log.info("Redis broker: subscribed again")
                            subscribed_before = True
                        elif message["type"] == "message":
                            deliver(message["channel"].decode(), message["data"])
                    if now >= next_ping:
                        await asyncio.wait_for(pubsub.ping(), COMMAND_TIMEOUT)
                        next_ping = now + ping_every
                    if now - heard > self._node_timeout:
                        raise TimeoutError(f"no answer in {self._node_timeout:g} s")
            except Exception as exc:  # whatever it was, keep trying: the node must not go deaf
                if self._connected or not subscribed_before:
                    log.warning(
                        "Redis broker unreachable (%s: %s); reconnecting", type(exc).__name__, exc
                    )
            finally:
                self._connected = False
                with contextlib.suppress(*ERRORS):
                    await asyncio.wait_for(pubsub.aclose(), COMMAND_TIMEOUT)  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_DELAY)


# Now, in milliseconds, by Redis's clock: every node counts on one clock.
_NOW = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"

# KEYS: live nodes (zset: node -> expiry), this node's counts (hash: user -> connections).
# ARGV: user, maximum, counts-key prefix, node id, ttl ms.
_OPEN = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[5]), ARGV[4])
local total = 0
for _, node in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  total = total + tonumber(redis.call('HGET', ARGV[3] .. node, ARGV[1]) or 0)
end
if total >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return 1
"""
)

# KEYS: this node's counts. ARGV: user.
_CLOSE = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
"""

# KEYS: live nodes, this node's counts. ARGV: node id, ttl ms. 1 if the counts were still there.
_BEAT = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return redis.call('PEXPIRE', KEYS[2], ARGV[2])
"""
)

# KEYS: one sorted set of hit times per window. ARGV: member, then (amount, window ms) pairs.
_HIT = (
    _NOW
    + """
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - tonumber(ARGV[2 * i + 1]))
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[2 * i]) then return 0 end
end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[i], ARGV[2 * i + 1])
end
return 1
"""
)


class RedisUserLimits(SharedUserLimits):
    """Connections: one hash per node (user -> count) that expires unless the node beats, so
    a dead node's connections stop counting after `ttl`. Events: exact moving windows (sorted
    sets of hit times), one per user and window, on Redis's clock."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str,
        node_id: str,
        ttl: float,
        reachable: BrokerBackend | None = None,
    ) -> None:
        self._client = client
        self._reachable = reachable
        self._node_id = node_id
        self._ttl_ms = max(1, int(ttl * 1000))
        self._nodes_key = f"{prefix}:nodes"
        self._counts_prefix = f"{prefix}:connections:"
        self._counts_key = f"{self._counts_prefix}{node_id}"
        self._events_prefix = f"{prefix}:events:"
        self._open = client.register_script(_OPEN)
        self._close = client.register_script(_CLOSE)
        self._beat = client.register_script(_BEAT)
        self._hit = client.register_script(_HIT)
        # What this node has open (RateLimits' own counts), written back after an outage.
        self._mine: Mapping[str, int] = {}
        self._unsynced: set[str] = set()
        self._hits = 0

    def track(self, counts: Mapping[str, int]) -> None:
        self._mine = counts

    async def _call(self, call: Coroutine[Any, Any, T]) -> T:
        if self._reachable is not None and not self._reachable.connected:
            call.close()
            raise ConnectionError("Redis is not connected")
        return await asyncio.wait_for(call, COMMAND_TIMEOUT)

    async def open_connection(self, user_id: str, maximum: int) -> bool | None:
        args: list[str | int] = [user_id, maximum, self._counts_prefix, self._node_id, self._ttl_ms]
        try:
            allowed = await self._call(
                self._open(keys=[self._nodes_key, self._counts_key], args=args)
            )
        except ERRORS:
            self._unsynced.add(user_id)
            return None
        return bool(allowed)

    async def close_connection(self, user_id: str) -> None:
        try:
            await self._call(self._close(keys=[self._counts_key], args=[user_id]))
        except ERRORS:
            self._unsynced.add(user_id)

    async def allow_event(self, user_id: str, windows: Windows) -> bool | None:
        self._hits += 1
        keys = [f"{self._events_prefix}{user_id}:{seconds:g}" for _, seconds in windows]
        args: list[str | int] = [f"{self._node_id}:{self._hits}:{secrets.token_hex(2)}"]
        for amount, seconds in windows:
            args += [amount, max(1, int(seconds * 1000))]
        try:
            return bool(await self._call(self._hit(keys=keys, args=args)))
        except ERRORS:
            return None

    async def heartbeat(self) -> None:
        try:
            kept = await self._call(
                self._beat(
                    keys=[self._nodes_key, self._counts_key], args=[self._node_id, self._ttl_ms]
                )
            )
            if not kept:  # expired (a long outage) or lost (Redis restarted): all of it again
                self._unsynced.update(self._mine)
            if self._unsynced:
                await self._resync()
        except ERRORS as exc:
            log.debug("shared limits: heartbeat failed: %s", exc)

    async def _resync(self) -> None:
        users = list(self._unsynced)
        pipe = self._client.pipeline(transaction=True)
        for user in users:
            if self._mine.get(user, 0) > 0:
                pipe.hset(self._counts_key, user, self._mine[user])
            else:
                pipe.hdel(self._counts_key, user)
        pipe.pexpire(self._counts_key, self._ttl_ms)
        await self._call(pipe.execute())
        self._unsynced.difference_update(users)

    async def leave(self) -> None:
        with contextlib.suppress(*ERRORS):
            pipe = self._client.pipeline(transaction=True)
            pipe.zrem(self._nodes_key, self._node_id)
            pipe.delete(self._counts_key)
            await self._call(pipe.execute())
