"""A load-client process: many Socket.IO (Engine.IO 4 over WebSocket) and SSE connections.

Speaks the wire protocols directly on aiohttp so one process holds thousands of connections
cheaply. WebSocket connections ask for permessage-deflate as a browser does. Driven by the
orchestrator (bench/run.py) through stdin/stdout, one JSON object per line:

  argv[1]: a JSON file holding the job: url, namespace, sio (list of [token, room|null]),
           sse (list of [token, order_id]), expect (events per connection), connect_concurrency,
           local_addr (optional: the source address of every connection)
  stdout:  {"ready": n, "failed": m, "errors": [...]} once every connection is set up
  stdin:   "stats"  -> {"received": n, "open": k, "complete": c}
           "report" -> {"received": n, "open": k, "samples": [[status, t_recv, "sio"|"sse"], ...]}
           "quit"
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import uvloop

EVENT_PREFIX = "42"
BENCH_EVENTS = ('["notification"', '["orderStatusUpdate"')


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Counters:
    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.received = 0
        self.open = 0
        self.complete = 0
        self.samples: list[tuple[str, float, str]] = []
        self.errors: list[str] = []


class SioConnection:
    """One Socket.IO client: handshake, namespace connect with auth, optional joinRoom."""

    def __init__(self, counters: Counters, namespace: str, record: bool) -> None:
        self.c = counters
        self.ns = namespace
        self.record = record
        self.count = 0
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def connect(
        self, session: aiohttp.ClientSession, url: str, token: str, room: str | None
    ) -> None:
        ws = await session.ws_connect(
            f"{url}/socket.io/?EIO=4&transport=websocket",
            compress=15,
            autoping=True,
            max_msg_size=0,
            timeout=aiohttp.ClientWSTimeout(ws_close=2),
        )
        self.ws = ws
        opening = await ws.receive_str(timeout=30)
        if not opening.startswith("0"):
            raise RuntimeError(f"unexpected open packet {opening[:60]!r}")
        await ws.send_str(f"40{self.ns}," + orjson.dumps({"token": token}).decode())
        reply = await self._next(ws, (f"40{self.ns}", f"44{self.ns}"))
        if not reply.startswith(f"40{self.ns},"):
            raise RuntimeError(f"namespace connect refused: {reply[:120]!r}")
        if room is not None:
            await ws.send_str(f"42{self.ns},1" + orjson.dumps(["joinRoom", room]).decode())
            ack = await self._next(ws, (f"43{self.ns},1",))
            if '"ok":true' not in ack.replace(" ", ""):
                raise RuntimeError(f"joinRoom refused: {ack[:160]!r}")
        self.c.open += 1

    async def _next(self, ws: aiohttp.ClientWebSocketResponse, prefixes: tuple[str, ...]) -> str:
        """The next packet starting with one of prefixes; pings answered, other events skipped."""
        while True:
            packet = await ws.receive_str(timeout=30)
            if packet == "2":
                await ws.send_str("3")
            elif packet.startswith(prefixes):
                return packet

    async def run(self) -> None:
        assert self.ws is not None
        ws = self.ws
        c = self.c
        cut = len(self.ns) + 3
        try:
            while True:
                msg = await ws.receive()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                data: str = msg.data
                if data == "2":
                    await ws.send_str("3")
                    continue
                if not data.startswith(EVENT_PREFIX) or not data.startswith(BENCH_EVENTS, cut):
                    continue  # pings, and events the bench did not send (e.g. unreadCount)
                c.received += 1
                self.count += 1
                if self.count == c.expect:
                    c.complete += 1
                if self.record:
                    now = time.time()
                    event = orjson.loads(data[cut:])
                    c.samples.append((str(event[1].get("status")), now, "sio"))
        except (aiohttp.ClientError, asyncio.CancelledError, ConnectionError):
            pass
        finally:
            c.open -= 1


class SseConnection:
    """One EventSource-like client on the order status stream."""

    def __init__(self, counters: Counters) -> None:
        self.c = counters
        self.response: aiohttp.ClientResponse | None = None

    async def connect(
        self, session: aiohttp.ClientSession, url: str, token: str, order_id: str
    ) -> None:
        response = await session.get(
            f"{url}/api/notifications/orders/{order_id}/status",
            headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
        )
        if response.status != 200:
            body = await response.text()
            raise RuntimeError(f"SSE answered {response.status}: {body[:120]}")
        self.response = response
        self.c.open += 1

    async def run(self) -> None:
        assert self.response is not None
        c = self.c
        buffer = b""
        try:
            async for chunk in self.response.content.iter_any():
                now = time.time()
                buffer += chunk
                if b"\r" in buffer:
                    # aiohttp-sse ends lines with CRLF; a lone trailing CR may be half of one.
                    buffer = buffer.replace(b"\r\n", b"\n")
                *blocks, buffer = buffer.split(b"\n\n")
                for block in blocks:
                    for line in block.split(b"\n"):
                        if line.startswith(b"data:"):
                            event = orjson.loads(line[5:])
                            c.received += 1
                            c.samples.append((str(event.get("status")), now, "sse"))
        except (aiohttp.ClientError, asyncio.CancelledError, ConnectionError):
            pass
        finally:
            c.open -= 1


async def main(job: dict[str, Any]) -> None:
    url: str = job["url"]
    counters = Counters(int(job.get("expect", 0)))
    record = bool(job.get("record", False))
    # local_addr: the source address (bench/cluster.py: nginx sends each address to one node)
    local = job.get("local_addr")
    connector = aiohttp.TCPConnector(
        limit=0, force_close=False, local_addr=(local, 0) if local else None
    )
    session = aiohttp.ClientSession(connector=connector)
    gate = asyncio.Semaphore(int(job.get("connect_concurrency", 50)))
    runners: list[asyncio.Task[None]] = []
    failed = 0

    deadline = time.monotonic() + float(job.get("connect_seconds", 600))

    async def start(
        conn: SioConnection | SseConnection, connecting: Callable[[], Awaitable[None]]
    ) -> None:
        """Connect under the gate: a failure is counted, an open connection starts running."""
        nonlocal failed
        try:
            async with gate:
                await connecting()
        except Exception as exc:
            failed += 1
            if len(counters.errors) < 5:
                counters.errors.append(f"{type(exc).__name__}: {exc}")
            return
        runners.append(asyncio.create_task(conn.run()))

    async def open_sio(token: str, room: str | None) -> None:
        conn = SioConnection(counters, job.get("namespace", "/notifications"), record)

        async def connecting() -> None:
            if time.monotonic() > deadline:
                raise TimeoutError("not connected within the bench's connect time")
            await conn.connect(session, url, token, room)

        await start(conn, connecting)

    async def open_sse(token: str, order_id: str) -> None:
        conn = SseConnection(counters)
        await start(conn, lambda: conn.connect(session, url, token, order_id))

    await asyncio.gather(
        *(open_sio(t, r) for t, r in job.get("sio", [])),
        *(open_sse(t, o) for t, o in job.get("sse", [])),
    )
    emit({"ready": counters.open, "failed": failed, "errors": counters.errors})

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).strip()
        if not line or line == b"quit":
            break
        if line == b"stats":
            emit(
                {
                    "received": counters.received,
                    "open": counters.open,
                    "complete": counters.complete,
                }
            )
        elif line == b"report":
            emit(
                {
                    "received": counters.received,
                    "open": counters.open,
                    "complete": counters.complete,
                    "samples": counters.samples,
                }
            )
    # The kernel closes every socket; closing thousands politely only slows the bench down.
    os._exit(0)


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj) + b"\n")
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    raise_fd_limit()
    with open(sys.argv[1], "rb") as job_file:
        uvloop.run(main(orjson.loads(job_file.read())))
