"""The cluster bus: what crosses nodes through the broker, and its delivery on this node.

Server-side emits (`emit`), client-originated ephemeral events (typing) and presence go
through it; database events never do (every node reads them from the log). A message is
delivered on this node at once and published to the others; a node ignores its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from tiffin_rt.cluster.backend import BrokerBackend, BrokerUnavailable
from tiffin_rt.cluster.limits import SharedUserLimits
from tiffin_rt.cluster.presence import PresenceBoard

log = logging.getLogger(__name__)

# (event, data, rooms, namespace, skip_sid): the Socket.IO server's emit on this node only.
LocalEmit = Callable[[str, Any, list[str], str, str | None], Awaitable[None]]
PresenceChanged = Callable[[], Awaitable[None]]
# A feature's own messages from other nodes (rider positions): called with the message's data.
Received = Callable[[Any], None]

_EMIT = "emit"
_PRESENCE = "presence"
_BYE = "bye"
_FEATURE = "feature"


class ClusterBus:
    """One per node. `emit` reaches the rooms' connections on every node; `set_present` and
    `present` keep per-topic presence that a dead node's members leave within node_timeout."""

    # Messages from other nodes waiting to be emitted here; past it they are dropped.
    INBOX_LIMIT = 10_000

    def __init__(
        self,
        backend: BrokerBackend,
        *,
        node_id: str,
        kind: str,
        name: str,
        heartbeat_interval: float,
        node_timeout: float,
    ) -> None:
        self.kind = kind
        self.node_id = node_id
        self._backend = backend
        self._channels = {_EMIT: f"{name}.emit", _PRESENCE: f"{name}.presence"}
        self._heartbeat_interval = heartbeat_interval
        self.presence = PresenceBoard(node_timeout)
        self.user_limits: SharedUserLimits | None = backend.user_limits(
            name, self.node_id, node_timeout
        )
        self._local_emit: LocalEmit | None = None
        self._watchers: dict[str, list[PresenceChanged]] = {}
        self._features: dict[str, Received] = {}
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self.INBOX_LIMIT)
        self._announce = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.published = 0
        self.received = 0
        self.dropped = 0

    @property
    def connected(self) -> bool:
        return self._backend.connected

    @property
    def reconnects(self) -> int:
        return self._backend.reconnects

    async def wait_connected(self) -> None:
        """Until the broker is reachable (bound it with asyncio.timeout)."""
        while True:
            if self.connected:
                return
            await asyncio.sleep(0.05)  # backends reconnect on their own schedule: poll

    def describe(self) -> dict[str, Any]:
        """For /healthz."""
        return {
            "broker": self.kind,
            "node": self.node_id,
            "connected": self.connected,
            "reconnects": self.reconnects,
            "otherNodes": self.presence.nodes,
            "published": self.published,
            "received": self.received,
            "dropped": self.dropped,
        }

    def attach(self, local_emit: LocalEmit) -> None:
        self._local_emit = local_emit

    def watch_presence(self, topic: str, changed: PresenceChanged) -> None:
        self._watchers.setdefault(topic, []).append(changed)

    def on_message(self, topic: str, received: Received) -> None:
        """Call `received` with the data of every `send(topic, ...)` from another node."""
        self._features[topic] = received

    # -- the API -----------------------------------------------------------------------------

    async def send(self, topic: str, data: Any) -> None:
        """Ephemeral data for `topic`'s handler on every other node (as `emit`: not logged,
        lost while the broker is down); the sending node handles its own data itself."""
        await self._publish(_EMIT, {"t": _FEATURE, "k": topic, "d": data})

    async def emit(
        self,
        event: str,
        data: Any,
        *,
        to: Sequence[str],
        namespace: str,
        skip_sid: str | None = None,
    ) -> None:
        """An ephemeral Socket.IO event to these rooms on every node (not logged, no replay:
        a client offline now, or a broker down now, never gets it)."""
        rooms = list(to)
        await self._emit_here(event, data, rooms, namespace, skip_sid)
        await self._publish(
            _EMIT, {"t": _EMIT, "e": event, "d": data, "r": rooms, "ns": namespace, "s": skip_sid}
        )

    def set_present(self, topic: str, members: Sequence[str]) -> bool:
        """This node's members of `topic`, told to every node now; True when the cluster's
        members changed."""
        self._announce.set()
        return self.presence.set_local(topic, members)

    def present(self, topic: str) -> frozenset[str]:
        return self.presence.members(topic)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self._backend.start(list(self._channels.values()), self._received)
        self._tasks = [
            asyncio.create_task(self._work(), name="tiffin_rt-cluster-inbox"),
            asyncio.create_task(self._beat(), name="tiffin_rt-cluster-heartbeat"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Others forget this node's presence at once instead of after node_timeout.
        await self._publish(_PRESENCE, {"t": _BYE})
        if self.user_limits is not None:
            await self.user_limits.leave()
        await self._backend.stop()

    # -- inside ------------------------------------------------------------------------------

    async def _emit_here(
        self, event: str, data: Any, rooms: list[str], namespace: str, skip: str | None
    ) -> None:
        if self._local_emit is not None:
            await self._local_emit(event, data, rooms, namespace, skip)

    async def _publish(self, kind: str, message: dict[str, Any]) -> None:
        message["n"] = self.node_id
        try:
            await self._backend.publish(self._channels[kind], orjson.dumps(message))
        except BrokerUnavailable as exc:
            log.debug("not published to other nodes: %s", exc)
            return
        self.published += 1

    def _received(self, channel: str, raw: bytes) -> None:
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            log.warning("cluster: a message on %s is not JSON; ignored", channel)
            return
        if not isinstance(message, dict) or message.get("n") == self.node_id:
            return
        self.received += 1
        try:
            self._inbox.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1

    async def _work(self) -> None:
        while True:
            message = await self._inbox.get()
            try:
                await self._handle(message)
            except Exception:
                log.exception("cluster: handling a %r message failed", message.get("t"))

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("t")
        node = str(message.get("n"))
        if kind == _EMIT:
            await self._emit_here(
                str(message["e"]),
                message.get("d"),
                list(message["r"]),
                str(message["ns"]),
                message.get("s"),
            )
        elif kind == _FEATURE:
            received = self._features.get(str(message.get("k")))
            if received is not None:
                received(message.get("d"))
        elif kind == _PRESENCE:
            changed = self.presence.heard(node, message.get("sets") or {}, time.monotonic())
            if message.get("hello"):
                self._announce.set()  # a node just started: tell it who is here now
            await self._presence_changed(changed)
        elif kind == _BYE:
            await self._presence_changed(self.presence.forget(node))

    async def _presence_changed(self, topics: set[str]) -> None:
        for topic in topics:
            for changed in self._watchers.get(topic, ()):
                await changed()

    async def _beat(self) -> None:
        """Every heartbeat (and at once on a local change): this node's presence and limits."""
        hello = True
        while True:
            self._announce.clear()
            try:
                await self._publish(
                    _PRESENCE, {"t": _PRESENCE, "sets": self.presence.local, "hello": hello}
                )
                hello = hello and not self.connected
                if self.user_limits is not None:
                    await self.user_limits.heartbeat()
                await self._presence_changed(self.presence.expire(time.monotonic()))
            except Exception:  # a failing watcher must not stop the heartbeats
                log.exception("cluster: heartbeat failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._announce.wait(), self._heartbeat_interval)
