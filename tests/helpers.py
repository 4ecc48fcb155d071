"""Small helpers the tests share: settings, tokens, real Socket.IO and SSE clients."""

from __future__ import annotations

import asyncio
import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import asyncpg
import socketio
from aiohttp.test_utils import TestServer

from tiffin_rt.auth import mint_token
from tiffin_rt.config import Settings

TEST_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


def make_settings(dsn: str, **sections: dict[str, Any]) -> Settings:
    raw: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0},
        "database": {
            "dsn": dsn,
            "heartbeat_interval": 1.0,
            "heartbeat_timeout": 2.0,
            "reconnect_min_delay": 0.05,
            "reconnect_max_delay": 0.5,
        },
        "auth": {"jwt_secret": TEST_SECRET},
        "logging": {"level": "DEBUG"},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return Settings.model_validate(raw)


def base_url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


def token(
    settings: Settings,
    sub: str,
    role: str = "customer",
    *,
    vendor_id: str | None = None,
    ttl: int = 600,
) -> str:
    return mint_token(settings.auth, sub=sub, role=role, vendor_id=vendor_id, ttl=ttl)


class Recorder(ABC):
    """What a Socket.IO client received; subclasses keep it their way and set `changed`."""

    changed: asyncio.Event
    # The markers (see `marker_arrived`) this client received; they are never among its events.
    _markers: set[str]

    def record(self, name: str, data: Any) -> None:
        """Keep an event, or note a marker a test sent itself (markers are not events)."""
        key = marker_key(name, data)
        if key is None:
            self.add(name, data)
            return
        if not hasattr(self, "_markers"):
            self._markers = set()
        self._markers.add(key)
        self.changed.set()

    async def wait_for_marker(self, key: str, timeout: float = 5.0) -> None:
        async def arrived() -> None:
            while key not in getattr(self, "_markers", ()):
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(arrived(), timeout)

    @abstractmethod
    def add(self, name: str, data: Any) -> None: ...

    @abstractmethod
    def of(self, name: str) -> list[Any]: ...

    async def wait_for(self, name: str, count: int = 1, timeout: float = 5.0) -> list[Any]:
        async def enough() -> None:
            while len(self.of(name)) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(enough(), timeout)
        return self.of(name)


@dataclass
class Received(Recorder):
    """Everything a Socket.IO client received, by event name, in arrival order."""

    events: dict[str, list[Any]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, name: str, data: Any) -> None:
        self.events.setdefault(name, []).append(data)
        self.changed.set()

    def of(self, name: str) -> list[Any]:
        return self.events.get(name, [])


R = TypeVar("R", bound=Recorder)


async def recording_client(
    url: str, namespace: str, events: tuple[str, ...], auth: dict[str, Any], recorder: R
) -> tuple[socketio.AsyncClient, R]:
    """A python-socketio client connected over WebSocket, adding the named events to recorder."""
    client = socketio.AsyncClient(reconnection=False)
    for name in events:
        client.on(
            name, (lambda n: lambda data=None: recorder.record(n, data))(name), namespace=namespace
        )
    await client.connect(
        url, namespaces=[namespace], auth=auth, transports=["websocket"], wait_timeout=5
    )
    return client, recorder


async def leave(client: socketio.AsyncClient) -> None:
    """Disconnect so that the server hears it, on every transport.

    python-engineio's client drops what it queued while a long-polling POST is in flight: its
    write loop stops as soon as the state leaves 'connected', so the namespace disconnect and
    the CLOSE packet of a client that disconnects right after an emit may never be sent, and
    the server learns of the departure only at its ping timeout. Wait until every queued packet
    has been posted first, as a real client that leaves a page does."""
    await asyncio.wait_for(client.eio.queue.join(), 5)
    await client.disconnect()


@asynccontextmanager
async def disconnecting(
    connecting: Awaitable[tuple[socketio.AsyncClient, R]],
) -> AsyncIterator[tuple[socketio.AsyncClient, R]]:
    """The client `connecting` opens, disconnected on the way out whatever happened."""
    client, recorder = await connecting
    try:
        yield client, recorder
    finally:
        await client.disconnect()


async def sio_client(
    url: str,
    tok: str | None,
    namespace: str = "/notifications",
    events: tuple[str, ...] = ("orderStatusUpdate", "notification"),
    auth: dict[str, Any] | None = None,
) -> tuple[socketio.AsyncClient, Received]:
    """A connected python-socketio client recording the named events."""
    payload = dict(auth or {})
    if tok is not None:
        payload["token"] = tok
    return await recording_client(url, namespace, events, payload, Received())


@dataclass
class SseEvent:
    id: str | None
    event: str | None
    data: str
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


async def sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[SseEvent]:
    """Parse a text/event-stream body as a browser's EventSource does."""
    fields: dict[str, str] = {}
    data: list[str] = []
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if line == "":
            if data:
                retry = fields.get("retry")
                yield SseEvent(
                    fields.get("id"),
                    fields.get("event"),
                    "\n".join(data),
                    int(retry) if retry else None,
                )
            fields, data = {}, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        else:
            fields[name] = value


async def eventually(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll until check() returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def connect_refusal(
    url: str, auth: dict[str, Any] | None, namespace: str = "/notifications"
) -> Any:
    """Try to connect; return the connect_error data the server refused with."""
    client = socketio.AsyncClient(reconnection=False)
    refusals: list[Any] = []
    client.on("connect_error", lambda data=None: refusals.append(data), namespace=namespace)
    try:
        await client.connect(
            url, namespaces=[namespace], auth=auth, transports=["websocket"], wait_timeout=5
        )
    except socketio.exceptions.ConnectionError:
        pass
    else:
        await client.disconnect()
        raise AssertionError("the server accepted the connection")
    await client.disconnect()
    assert refusals, "no connect_error received"
    # The JavaScript client's connect_error Error carries these as err.message and err.data.
    error = refusals[0]
    assert error["message"] == error["data"]["message"]
    return error["data"]


# A marker is an event a test logs after the events under test; the client has everything
# logged before it once the marker arrives, because each connection gets events in log order.
MARKER_TYPE = "test-marker"


def marker_key(name: str, data: Any) -> str | None:
    """The marker's key if this event is a marker (a `notification` or a /support `message`)."""
    if not isinstance(data, dict):
        return None
    if name == "notification" and data.get("type") == MARKER_TYPE:
        return str(data.get("title"))
    if name == "message" and "marker" in data:
        return str(data["marker"])
    return None


async def marker_arrived(
    db: asyncpg.Connection,
    user_id: str,
    *recorders: Recorder,
    namespace: str = "/notifications",
    timeout: float = 5.0,
) -> None:
    """Log a marker for `user_id` and wait until each recorder (that user's clients) has it.

    Use it instead of sleeping before asserting that nothing else arrived. On /notifications
    the marker is a notification (its inbox row removed in the same transaction, so unread
    counts and the inbox stay as the test left them); on /support a `message` to the user room.
    """
    key = f"marker-{uuid.uuid4().hex}"
    async with db.transaction():
        if namespace == "/support":
            await db.execute(
                "SELECT tiffin_rt.append_event('support_message', ARRAY['user-' || $1],"
                " jsonb_build_object('message', jsonb_build_object('marker', $2::text)))",
                user_id,
                key,
            )
        else:
            event_id = await db.fetchval(
                "SELECT tiffin_rt.notify_user($1, $2, $3, '')", user_id, MARKER_TYPE, key
            )
            await db.execute("DELETE FROM tiffin_rt.inbox WHERE event_id = $1", event_id)
    for recorder in recorders:
        await recorder.wait_for_marker(key, timeout)


class RunningTransaction:
    """A transaction a backend keeps open on its own connection (`conn`): what it wrote waits,
    uncommitted, and the ids it took hold the server's listener back, until `end`."""

    def __init__(self, conn: asyncpg.Connection, transaction: Any) -> None:
        self.conn = conn
        self._transaction = transaction
        self.open = True

    async def end(self, *, commit: bool = True) -> None:
        self.open = False
        await (self._transaction.commit() if commit else self._transaction.rollback())


@asynccontextmanager
async def running_transaction(dsn: str) -> AsyncIterator[RunningTransaction]:
    """A transaction open until `end` (rolled back on the way out if still open)."""
    conn = await asyncpg.connect(dsn)
    transaction = conn.transaction()
    await transaction.start()
    running = RunningTransaction(conn, transaction)
    try:
        yield running
    finally:
        if running.open:
            await transaction.rollback()
        await conn.close()


async def statuses_until(events: AsyncIterator[SseEvent], last: str) -> list[str]:
    """The statuses an SSE stream sends up to and including `last`."""
    got: list[str] = []
    while not got or got[-1] != last:
        got.append((await asyncio.wait_for(anext(events), 5)).json()["status"])
    return got
