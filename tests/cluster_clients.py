"""Clients that follow one order through nginx and resume, as the README tells apps to.

A Socket.IO client (python-socketio, reconnection on) keeps the highest eventId it has seen
and presents it as `lastEventId` on every (re)connection; an SSE client reads the stream as a
browser's EventSource does and reconnects with Last-Event-ID when it ends. Both record every
order status they get, with its eventId, until the order's final status arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import socketio

from tests.helpers import sse_events
from tests.nginx_front import client_session

FINAL_STATUS = "delivered"  # a terminal status: SSE streams end after it


@dataclass
class Follower:
    """What one client received for its order: (eventId, status) in arrival order."""

    kind: str
    address: str
    order_id: str
    token: str
    received: list[tuple[int, str]] = field(default_factory=list)
    connects: int = 0
    disconnects: list[str] = field(default_factory=list)
    last_event_id: int | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def track(self, event_id: Any) -> None:
        if isinstance(event_id, int) and (
            self.last_event_id is None or event_id > self.last_event_id
        ):
            self.last_event_id = event_id

    def on_status(self, data: dict[str, Any]) -> None:
        if data.get("orderId") != self.order_id:
            return
        self.received.append((data["eventId"], data["status"]))
        self.track(data["eventId"])
        self.changed.set()
        if data["status"] == FINAL_STATUS:
            self.finished.set()

    def ids_after(self, start: int) -> list[int]:
        return [event_id for event_id, _ in self.received if event_id > start]

    async def wait_received(self, count: int, timeout: float) -> None:
        async def enough() -> None:
            while len(self.received) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(enough(), timeout)


class SocketIOFollower:
    """python-socketio, reconnection on; `transports` as the client takes them (None: polling,
    then the upgrade to WebSocket, the official clients' default)."""

    def __init__(self, base_url: str, follower: Follower, transports: list[str] | None) -> None:
        self.url = base_url
        self.follower = follower
        self.transports = transports
        self.http = client_session(follower.address)
        self.client = socketio.AsyncClient(
            http_session=self.http,
            reconnection=True,
            reconnection_delay=0.2,
            reconnection_delay_max=1,
        )
        f = follower
        ns = "/notifications"
        self.client.on("orderStatusUpdate", f.on_status, namespace=ns)
        self.client.on("position", lambda data: f.track(data.get("eventId")), namespace=ns)
        self.client.on("connect", self._connected, namespace=ns)
        self.client.on("disconnect", lambda reason=None: f.disconnects.append(str(reason)), ns)

    def _connected(self) -> None:
        self.follower.connects += 1
        self.follower.started.set()

    def _auth(self) -> dict[str, Any]:
        auth: dict[str, Any] = {"token": self.follower.token}
        if self.follower.last_event_id is not None:
            auth["lastEventId"] = self.follower.last_event_id
        return auth

    async def start(self) -> None:
        await self.client.connect(
            self.url,
            namespaces=["/notifications"],
            auth=self._auth,
            transports=self.transports,
            wait_timeout=10,
        )

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.shutdown()
        await self.http.close()


class SseFollower:
    """An EventSource: reads the order's stream, reconnects with Last-Event-ID when it ends,
    stops on the final status or a 204."""

    def __init__(self, base_url: str, follower: Follower) -> None:
        self.url = f"{base_url}/api/notifications/orders/{follower.order_id}/status"
        self.follower = follower
        self.http = client_session(follower.address)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        f = self.follower
        while not f.finished.is_set():
            headers = {"Authorization": f"Bearer {f.token}"}
            if f.last_event_id is not None:
                headers["Last-Event-ID"] = str(f.last_event_id)
            try:
                async with self.http.get(self.url, headers=headers) as response:
                    if response.status == 204:
                        f.finished.set()
                        return
                    if response.status == 200:
                        f.connects += 1
                        f.started.set()
                        async for event in sse_events(response):
                            if event.event in (None, "message") and event.id:
                                f.on_status(event.json())
                        if f.finished.is_set():
                            return  # the stream ends after the final status
                    f.disconnects.append(f"stream ended ({response.status})")
            except aiohttp.ClientError as exc:
                f.disconnects.append(type(exc).__name__)
            await asyncio.sleep(0.2)  # EventSource waits `retry` before reconnecting

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.http.close()
