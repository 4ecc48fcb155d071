"""A raw Engine.IO v4 client on aiohttp: the same session over each path a real client takes.

`websocket`: WebSocket first (socket.io-client with `transports: ['websocket']`); `polling`:
long-polling only; `upgrade`: long-polling upgraded to WebSocket (socket.io-client's default).
The client speaks wire frames itself, so it can send what a hostile client would.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

# Which server transport each path meets: tests/test_transport_parity.py (TRANSPORTS).
SEPARATOR = "\x1e"


class RawSession:
    """One Engine.IO session; `receive` answers pings and returns None once the session ended."""

    def __init__(self, http: aiohttp.ClientSession, url: str, path: str) -> None:
        self.http = http
        self.url = f"{url}/socket.io/?EIO=4"
        self.path = path
        self.sid = ""
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        # Long-polling: what the GET kept waiting (as a browser keeps one) brought; None: 400.
        self.polled: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.poller: asyncio.Task[None] | None = None
        self.ended = False
        self.post_status = 0
        self.post_body: Any = None
        self.handshake: dict[str, Any] = {}

    async def open(self) -> dict[str, Any]:
        if self.path == "websocket":
            self.ws = await self.http.ws_connect(f"{self.url}&transport=websocket")
            opened = await self.ws.receive_str(timeout=5)
        else:
            async with self.http.get(f"{self.url}&transport=polling") as response:
                assert response.status == 200, await response.text()
                opened = (await response.text()).split(SEPARATOR)[0]
        assert opened.startswith("0{"), opened
        handshake: dict[str, Any] = json.loads(opened[1:])
        self.handshake = handshake
        self.sid = handshake["sid"]
        if self.path == "upgrade":
            self.ws = await self.http.ws_connect(f"{self.url}&transport=websocket&sid={self.sid}")
            await self.ws.send_str("2probe")
            assert await self.ws.receive_str(timeout=5) == "3probe"
            await self.ws.send_str("5")
        elif self.path == "polling":
            self.poller = asyncio.get_running_loop().create_task(self._poll())
        return handshake

    async def send(self, *messages: str | bytes) -> None:
        """Each message as one WebSocket frame, or all in one long-polling POST."""
        if self.ws is not None:
            for message in messages:
                if isinstance(message, bytes):
                    await self.ws.send_bytes(message)
                else:
                    await self.ws.send_str(message)
            return
        body = SEPARATOR.join(
            "b" + base64.b64encode(m).decode() if isinstance(m, bytes) else m for m in messages
        )
        await self.post(body.encode())

    async def post(self, body: bytes) -> None:
        async with self.http.post(
            f"{self.url}&transport=polling&sid={self.sid}", data=body
        ) as response:
            self.post_status = response.status
            text = await response.text()
            self.post_body = json.loads(text) if text.startswith("{") else text

    async def receive(self, timeout: float = 5) -> str | bytes | None:
        """The next packet from the server (pings answered and skipped); None: session over."""
        while not self.ended:
            message = await asyncio.wait_for(self._next(), timeout)
            if message is None or message == "1":  # gone, or Engine.IO's close packet
                self.ended = True
            elif message == "2":
                await self.send("3")
            elif message != "6":  # a noop ends the poll an upgrade interrupts
                return message
        return None

    async def next_unanswered(self, timeout: float = 5) -> str | bytes | None:
        """The next packet as it came, pings included and not answered; None: session over."""
        return await asyncio.wait_for(self._next(), timeout)

    async def _next(self) -> str | bytes | None:
        if self.ws is None:
            return await self.polled.get()
        frame = await self.ws.receive()
        if frame.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            data: str | bytes = frame.data
            return data
        return None

    async def _poll(self) -> None:
        while True:
            async with self.http.get(f"{self.url}&transport=polling&sid={self.sid}") as response:
                if response.status != 200:
                    self.polled.put_nowait(None)
                    return
                for part in (await response.text()).split(SEPARATOR):
                    self.polled.put_nowait(base64.b64decode(part[1:]) if part[:1] == "b" else part)
                    if part == "1":
                        return

    async def until_end(self, timeout: float = 5) -> list[str | bytes]:
        """What the server still sent before it ended the session (fails if it never does)."""
        seen: list[str | bytes] = []
        while (message := await self.receive(timeout)) is not None:
            seen.append(message)
        return seen

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        elif not self.ended:
            await self.post(b"1")
        if self.poller is not None:
            self.poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.poller


@asynccontextmanager
async def raw_session(url: str, path: str) -> AsyncIterator[RawSession]:
    async with aiohttp.ClientSession() as http:
        session = RawSession(http, url, path)
        await session.open()
        try:
            yield session
        finally:
            await session.close()


async def connect_namespace(session: RawSession, namespace: str, tok: str) -> str:
    """Join a namespace with a token; the Socket.IO sid."""
    await session.send(f"40{namespace}," + json.dumps({"token": tok}))
    while True:
        message = await session.receive()
        assert isinstance(message, str), message
        if message.startswith(f"40{namespace},"):
            sid: str = json.loads(message[len(f"40{namespace},") :])["sid"]
            return sid
        assert not message.startswith(f"44{namespace},"), message


async def ack(session: RawSession, namespace: str, ack_id: int) -> Any:
    """Read until the acknowledgement with this id; its arguments (other packets skipped)."""
    prefix = f"43{namespace},{ack_id}["
    while True:
        message = await session.receive()
        assert message is not None, "the session ended"
        if isinstance(message, str) and message.startswith(prefix):
            return json.loads(message[len(prefix) - 1 :])
