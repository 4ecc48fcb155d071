"""Slow consumers on every transport (Socket.IO and SSE): a client that keeps up gets every
event; one that stops reading (or polling) is cut off once, with one warning, and on
reconnecting with its last event id gets every event it missed exactly once, in order.
Nothing is merged or dropped."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
import socketio
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import Recorder, base_url, eventually, recording_client, sse_events, token
from tiffin_rt.config import Settings

NAMESPACE = "/notifications"
LIMIT_KIB = 64
# Each status is about 4 KB: far past the limit, and past what the socket buffers of a client
# with a tiny receive buffer hold, well before MAX_UPDATES.
FILLER = "x" * 4000
MAX_UPDATES = 1500
SECTIONS: dict[str, dict[str, Any]] = {
    "delivery": {"max_buffered_kib": LIMIT_KIB},
    "replay": {"max_events": 5000},
}
EVENT = "42/notifications,"


class Statuses(Recorder):
    """The orderStatusUpdate payloads a client received, in arrival order."""

    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

    def add(self, name: str, data: Any) -> None:
        if name == "orderStatusUpdate":
            self.updates.append(data)
            self.changed.set()

    def of(self, name: str) -> list[Any]:
        return self.updates if name == "orderStatusUpdate" else []

    def statuses(self) -> list[str]:
        return [u["status"] for u in self.updates]

    def last_id(self) -> int:
        return max(u["eventId"] for u in self.updates)

    async def until(self, check: Callable[[], bool], timeout: float = 15.0) -> None:
        async def loop() -> None:
            while not check():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), timeout)

    async def until_status(self, status: str, timeout: float = 15.0) -> None:
        await self.until(lambda: status in self.statuses(), timeout)


def from_start(statuses: list[str]) -> list[str]:
    return statuses[statuses.index("start") :]


def behind_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING
        and "behind" in r.getMessage()
        and r.name.startswith("tiffin")
    ]


async def set_status(db: asyncpg.Connection, status: str) -> None:
    await db.execute("UPDATE orders SET status = $1 WHERE id = 1", status)


async def flood_until_cut(
    db: asyncpg.Connection, keeping_up: Statuses, caplog: pytest.LogCaptureFixture
) -> list[str]:
    """Status changes one by one, each read by the client that keeps up, until one is cut."""
    sent: list[str] = []
    for n in range(MAX_UPDATES):
        status = f"s{n:04d}-{FILLER}"
        await set_status(db, status)
        sent.append(status)
        await keeping_up.until_status(status)
        if behind_warnings(caplog):
            return sent
    raise AssertionError(f"no client was cut off after {MAX_UPDATES} updates")


async def resume_and_finish(
    url: str, settings: Settings, db: asyncpg.Connection, last_id: int, transports: list[str]
) -> Statuses:
    """Reconnect with the last event id seen, as the README says; 'end' comes after the replay."""
    client, received = await connect_client(
        url, settings, transports, auth_extra={"lastEventId": last_id}
    )
    try:
        await set_status(db, "end")
        await received.until_status("end")
    finally:
        await client.disconnect()
    return received


async def connect_client(
    url: str,
    settings: Settings,
    transports: list[str],
    *,
    auth_extra: dict[str, Any] | None = None,
) -> tuple[socketio.AsyncClient, Statuses]:
    auth = {"token": token(settings, "alice"), **(auth_extra or {})}
    if transports == ["websocket"]:
        return await recording_client(url, NAMESPACE, ("orderStatusUpdate",), auth, Statuses())
    received = Statuses()
    client = socketio.AsyncClient(reconnection=False)
    client.on("orderStatusUpdate", lambda data: received.add("orderStatusUpdate", data), NAMESPACE)
    await client.connect(
        url, namespaces=[NAMESPACE], auth=auth, transports=transports, wait_timeout=5
    )
    if "websocket" in transports:
        await eventually(lambda: client.transport() == "websocket")
    return client, received


@contextlib.asynccontextmanager
async def keeping_up(
    url: str, settings: Settings, transports: list[str]
) -> AsyncIterator[tuple[socketio.AsyncClient, Statuses]]:
    client, received = await connect_client(url, settings, transports)
    try:
        yield client, received
    finally:
        await client.disconnect()


def assert_whole(first: list[str], then: list[str], sent: list[str]) -> None:
    """What came before the cut and after the resume: every status once, in order."""
    assert from_start(first) + then == ["start", *sent, "end"]


# -- long-polling ------------------------------------------------------------------------------


class RawPolling:
    """An Engine.IO long-polling client that polls only when told to."""

    def __init__(self, http: aiohttp.ClientSession, endpoint: str) -> None:
        self.http = http
        self.endpoint = endpoint
        self.updates: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, url: str, tok: str) -> RawPolling:
        async with http.get(f"{url}/socket.io/?EIO=4&transport=polling") as response:
            opening = await response.text()
        assert opening.startswith("0")
        sid = orjson.loads(opening[1:])["sid"]
        client = cls(http, f"{url}/socket.io/?EIO=4&transport=polling&sid={sid}")
        await client.post("40/notifications," + orjson.dumps({"token": tok}).decode())
        while not any(p.startswith("40/notifications,") for p in await client.poll()):
            pass
        return client

    async def post(self, text: str) -> None:
        async with self.http.post(self.endpoint, data=text.encode()) as response:
            assert response.status == 200, await response.text()

    async def poll(self) -> list[str]:
        async with asyncio.timeout(10), self.http.get(self.endpoint) as response:
            body = await response.text()
            if response.status != 200:
                raise ConnectionResetError(f"{response.status} {body}")
        packets = body.split("\x1e")
        for pkt in packets:
            if pkt == "2":
                await self.post("3")
            elif pkt.startswith(EVENT):
                name, data = orjson.loads(pkt[len(EVENT) :])
                if name == "orderStatusUpdate":
                    self.updates.append(data)
        return packets

    async def until_status(self, status: str) -> None:
        while status not in [u["status"] for u in self.updates]:
            await self.poll()


async def test_a_polling_client_that_stops_polling_is_cut_and_resumes_without_a_gap(
    start_server: StartServer,
    settings: Settings,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A polling client's disconnect waits for its pending GET: the server holds it a ping cycle.
    server = await start_server(
        **{**SECTIONS, "delivery": {**SECTIONS["delivery"], "ping_interval": 1, "ping_timeout": 1}}
    )
    url = base_url(server)
    caplog.set_level(logging.WARNING)
    async with (
        aiohttp.ClientSession() as http,
        keeping_up(url, settings, ["polling"]) as (_, healthy),
    ):
        stalled = await RawPolling.open(http, url, token(settings, "alice"))
        await set_status(db, "start")
        await stalled.until_status("start")
        await healthy.until_status("start")
        # It stops polling: what it is sent waits on the server, up to the limit.
        sent = await flood_until_cut(db, healthy, caplog)
        with pytest.raises(ConnectionResetError, match="400"):
            await stalled.poll()  # its session is gone: the client reconnects
        first = [u["status"] for u in stalled.updates]
        again = await resume_and_finish(
            url, settings, db, max(u["eventId"] for u in stalled.updates), ["polling"]
        )
        await healthy.until_status("end")
    assert_whole(first, again.statuses(), sent)
    assert from_start(healthy.statuses()) == ["start", *sent, "end"]
    assert len(behind_warnings(caplog)) == 1


# -- WebSocket first -------------------------------------------------------------------------


class RawWebSocket:
    """An Engine.IO WebSocket client with a tiny receive buffer that reads only when told to."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.updates: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, server: TestServer, tok: str) -> RawWebSocket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=8192)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        await reader.readuntil(b"\r\n\r\n")
        client = cls(reader, writer)
        assert (await client.read_frame()).startswith("0")
        client.send_text("40/notifications," + orjson.dumps({"token": tok}).decode())
        assert (await client.read_frame()).startswith("40/notifications,")
        return client

    def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert len(payload) < 65536
        if len(payload) < 126:
            header = bytes([0x81, 0x80 | len(payload)])
        else:
            header = bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big")
        self.writer.write(header + mask + masked)

    async def read_frame(self) -> str:
        head = await self.reader.readexactly(2)
        size = head[1] & 0x7F
        if size == 126:
            size = int.from_bytes(await self.reader.readexactly(2), "big")
        elif size == 127:
            size = int.from_bytes(await self.reader.readexactly(8), "big")
        data = await self.reader.readexactly(size)
        if head[0] & 0x0F == 0x8:
            raise EOFError("close frame")
        return data.decode()

    async def read_event(self) -> None:
        text = await asyncio.wait_for(self.read_frame(), 10)
        if text == "2":
            self.send_text("3")
        elif text.startswith(EVENT):
            name, data = orjson.loads(text[len(EVENT) :])
            if name == "orderStatusUpdate":
                self.updates.append(data)

    async def until_status(self, status: str) -> None:
        while status not in [u["status"] for u in self.updates]:
            await self.read_event()

    async def read_until_closed(self) -> None:
        """Read what reached it before the cut, then the end of the connection."""
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, EOFError):
            while True:
                await self.read_event()

    def close(self) -> None:
        self.writer.close()


@pytest.mark.parametrize("compression", [False, True], ids=["lean", "stock"])
async def test_a_websocket_client_that_stops_reading_is_cut_and_resumes_without_a_gap(
    start_server: StartServer,
    settings: Settings,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
    compression: bool,
) -> None:
    # With compression configured, WebSocket-first connections use the stock transport too.
    delivery = {**SECTIONS["delivery"], "websocket_compression": compression}
    server = await start_server(**{**SECTIONS, "delivery": delivery})
    url = base_url(server)
    caplog.set_level(logging.WARNING)
    async with keeping_up(url, settings, ["websocket"]) as (_, healthy):
        stalled = await RawWebSocket.open(server, token(settings, "alice"))
        try:
            await set_status(db, "start")
            await stalled.until_status("start")
            await healthy.until_status("start")
            sent = await flood_until_cut(db, healthy, caplog)
            await stalled.read_until_closed()
        finally:
            stalled.close()
        first = [u["status"] for u in stalled.updates]
        assert len(from_start(first)) < len(sent) + 1  # it was cut off before the last
        again = await resume_and_finish(
            url, settings, db, max(u["eventId"] for u in stalled.updates), ["websocket"]
        )
        await healthy.until_status("end")
    assert_whole(first, again.statuses(), sent)
    assert from_start(healthy.statuses()) == ["start", *sent, "end"]
    assert len(behind_warnings(caplog)) == 1


# -- long-polling upgraded to WebSocket (socket.io-client's default) ------------------------


class StallingProxy:
    """A TCP relay in front of the server whose server-to-client direction can be stopped.

    Stopped, it leaves the server's bytes unread behind a tiny receive buffer, as a client on a
    stalled network (or a frozen tab) does; the client behind it is a real python-socketio one.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _relay(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        server_in, server_out = await asyncio.open_connection(sock=sock, limit=8192)
        for pipe in (
            self._pipe(client_in, server_out, None),
            self._pipe(server_in, client_out, self.flowing),
        ):
            task = asyncio.create_task(pipe)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    @staticmethod
    async def _pipe(
        source: asyncio.StreamReader, sink: asyncio.StreamWriter, gate: asyncio.Event | None
    ) -> None:
        try:
            while True:
                if gate is not None:
                    await gate.wait()
                data = await source.read(8192)
                if not data:
                    break
                sink.write(data)
                await sink.drain()
        except ConnectionError:
            pass
        finally:
            sink.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def test_an_upgraded_client_that_stops_reading_is_cut_and_resumes_without_a_gap(
    start_server: StartServer,
    settings: Settings,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = await start_server(**SECTIONS)
    url = base_url(server)
    caplog.set_level(logging.WARNING)
    proxy = StallingProxy(server.port)
    proxied = await proxy.start()
    try:
        async with keeping_up(url, settings, ["polling", "websocket"]) as (_, healthy):
            client, stalled = await connect_client(proxied, settings, ["polling", "websocket"])
            gone = asyncio.Event()
            client.on("disconnect", lambda *_: gone.set(), NAMESPACE)
            try:
                await set_status(db, "start")
                await stalled.until_status("start")
                await healthy.until_status("start")
                proxy.flowing.clear()  # the client stops reading
                sent = await flood_until_cut(db, healthy, caplog)
                proxy.flowing.set()  # what was on the wire arrives, then the end
                await asyncio.wait_for(gone.wait(), 15)
            finally:
                await client.disconnect()
            first = stalled.statuses()
            assert len(from_start(first)) < len(sent) + 1
            again = await resume_and_finish(
                url, settings, db, stalled.last_id(), ["polling", "websocket"]
            )
            await healthy.until_status("end")
    finally:
        await proxy.close()
    assert_whole(first, again.statuses(), sent)
    assert from_start(healthy.statuses()) == ["start", *sent, "end"]
    assert len(behind_warnings(caplog)) == 1


# -- Server-Sent Events (the same limit, already in place: kept so) --------------------------


class RawEventStream:
    """An SSE client with a tiny receive buffer that reads only when told to."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.updates: list[dict[str, Any]] = []
        self._text = ""

    @classmethod
    async def open(cls, server: TestServer, tok: str) -> RawEventStream:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=8192)
        writer.write(
            f"GET {SSE_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
            f"Authorization: Bearer {tok}\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"transfer-encoding: chunked" in head.lower()
        return cls(reader, writer)

    async def read_chunk(self) -> None:
        size = int((await asyncio.wait_for(self.reader.readline(), 10)).strip(), 16)
        if size == 0:
            raise EOFError("end of stream")
        self._text += (await self.reader.readexactly(size + 2))[:-2].decode()
        *complete, self._text = self._text.replace("\r\n", "\n").split("\n\n")
        for block in complete:
            fields = dict(line.partition(":")[::2] for line in block.split("\n"))
            message = fields.get("event", " message").strip() == "message"
            if "data" in fields and "id" in fields and message:
                data = orjson.loads(fields["data"])
                self.updates.append({**data, "eventId": int(fields["id"])})

    async def until_status(self, status: str) -> None:
        while status not in [u["status"] for u in self.updates]:
            await self.read_chunk()

    async def read_until_closed(self) -> None:
        with contextlib.suppress(
            ConnectionError, asyncio.IncompleteReadError, EOFError, ValueError
        ):
            while True:
                await self.read_chunk()

    def close(self) -> None:
        self.writer.close()


SSE_PATH = "/api/notifications/orders/1/status"


async def record_stream(response: aiohttp.ClientResponse, received: Statuses) -> None:
    async for event in sse_events(response):
        if event.event in (None, "message") and event.id:
            received.add("orderStatusUpdate", {**event.json(), "eventId": int(event.id)})


@contextlib.asynccontextmanager
async def event_stream(
    http: aiohttp.ClientSession, url: str, tok: str, last_event_id: int | None = None
) -> AsyncIterator[Statuses]:
    headers = {"Authorization": f"Bearer {tok}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    received = Statuses()
    async with http.get(url + SSE_PATH, headers=headers) as response:
        assert response.status == 200
        reading = asyncio.create_task(record_stream(response, received))
        try:
            yield received
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await reading


async def test_an_sse_client_that_stops_reading_is_cut_and_resumes_without_a_gap(
    start_server: StartServer,
    settings: Settings,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = await start_server(**SECTIONS)
    url = base_url(server)
    caplog.set_level(logging.WARNING)
    tok = token(settings, "alice")
    async with aiohttp.ClientSession() as http, event_stream(http, url, tok) as healthy:
        stalled = await RawEventStream.open(server, tok)
        try:
            await set_status(db, "start")
            await stalled.until_status("start")
            await healthy.until_status("start")
            sent = await flood_until_cut(db, healthy, caplog)
            await stalled.read_until_closed()
        finally:
            stalled.close()
        first = [u["status"] for u in stalled.updates]
        assert len(from_start(first)) < len(sent) + 1
        last_id = max(u["eventId"] for u in stalled.updates)
        async with event_stream(http, url, tok, last_id) as again:
            await set_status(db, "end")
            await again.until_status("end")
        await healthy.until_status("end")
    assert_whole(first, again.statuses(), sent)
    assert from_start(healthy.statuses()) == ["start", *sent, "end"]
    assert len(behind_warnings(caplog)) == 1
