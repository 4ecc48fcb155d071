"""The lean WebSocket connection after the handshake (wsconnection.py), seen from the wire.

A raw client speaks RFC 6455 frames itself, so it can send what a browser would (fragments,
WebSocket pings) and what a broken or hostile client would (unmasked frames, bad UTF-8).
What every transport must do alike (pings, close codes, acks in order) is in
test_transport_parity.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import sio_client, token
from tiffin_rt.config import Settings

NS = "/notifications"


class RawWebSocket:
    """A WebSocket client on a bare TCP stream: every frame is built by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def send_frame(
        self, opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True
    ) -> None:
        head = bytes([(0x80 if fin else 0) | opcode])
        size = len(payload)
        flag = 0x80 if masked else 0
        if size < 126:
            head += bytes([flag | size])
        else:
            head += bytes([flag | 126]) + size.to_bytes(2, "big")
        if masked:
            mask = os.urandom(4)
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            head += mask
        self.writer.write(head + payload)

    def send_text(self, text: str, *, fin: bool = True) -> None:
        self.send_frame(0x1, text.encode(), fin=fin)

    async def read_frame(self) -> tuple[int, bytes]:
        first, second = await asyncio.wait_for(self.reader.readexactly(2), 5)
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(await self.reader.readexactly(2), "big")
        elif size == 127:
            size = int.from_bytes(await self.reader.readexactly(8), "big")
        return first & 0x0F, await self.reader.readexactly(size)

    async def read_text(self) -> str:
        while True:
            opcode, payload = await self.read_frame()
            if opcode == 0x1:
                return payload.decode()
            assert opcode != 0x8, f"closed: {payload!r}"

    async def close_code(self) -> int:
        """Read until the server's close frame; its status code."""
        while True:
            opcode, payload = await self.read_frame()
            if opcode == 0x8:
                return int.from_bytes(payload[:2], "big")


@asynccontextmanager
async def raw_websocket(server: TestServer) -> AsyncIterator[RawWebSocket]:
    assert server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101 "), head
    assert b"permessage-deflate" not in head.lower()
    socket = RawWebSocket(reader, writer)
    try:
        opened = await socket.read_text()
        assert opened.startswith("0{")
        yield socket
    finally:
        writer.close()


async def socketio_count(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(f"{url}/healthz") as response:
        count: int = (await response.json())["connections"]["socketio"]
        return count


async def eventually_no_socketio(http: aiohttp.ClientSession, url: str) -> None:
    for _ in range(100):
        if await socketio_count(http, url) == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the server still counts the connection")


async def test_fragments_are_joined_and_websocket_pings_answered(
    server: TestServer, url: str, settings: Settings
) -> None:
    async with raw_websocket(server) as ws:
        connect = "40/notifications," + json.dumps({"token": token(settings, "alice")})
        ws.send_text(connect[:10], fin=False)
        ws.send_frame(0x9, b"are you there")  # a control frame between two fragments
        ws.send_frame(0x0, connect[10:].encode())
        opcode, payload = await ws.read_frame()
        assert (opcode, payload) == (0xA, b"are you there")
        assert (await ws.read_text()).startswith("40/notifications,{")
        ws.send_text('42/notifications,1["joinRoom","order-1"]')
        while not (ack := await ws.read_text()).startswith("43/"):
            pass
        [joined] = json.loads(ack[len("43/notifications,1") :])
        assert (joined["ok"], joined["room"]) == (True, "order-1")
        ws.send_frame(0x8, (1001).to_bytes(2, "big"))  # a browser leaving the page
        assert await ws.close_code() == 1001
    async with aiohttp.ClientSession() as http:
        await eventually_no_socketio(http, url)


async def test_broken_frames_close_only_that_connection_with_the_right_code(
    server: TestServer, url: str, settings: Settings
) -> None:
    cases = {
        "unmasked": 1002,
        "reserved bits": 1002,
        "bad utf-8": 1007,
        "continuation without a start": 1002,
        "close with a reserved code": 1002,  # 1005 must never be sent on the wire
    }
    watcher, received = await sio_client(url, token(settings, "alice"), events=("error",))
    try:
        for case, code in cases.items():
            async with raw_websocket(server) as ws:
                if case == "unmasked":
                    ws.send_frame(0x1, b"40/notifications,{}", masked=False)
                elif case == "reserved bits":
                    ws.send_frame(0x40 | 0x1, b"40")
                elif case == "close with a reserved code":
                    ws.send_frame(0x8, (1005).to_bytes(2, "big"))
                elif case == "bad utf-8":
                    ws.send_frame(0x1, b"4\xff\xfe")
                else:
                    ws.send_frame(0x0, b"40")
                assert await ws.close_code() == code, case
        # The other connection never noticed.
        assert (await watcher.call("joinRoom", "order-1", namespace=NS))["ok"] is True
    finally:
        await watcher.disconnect()
    assert received.of("error") == []


async def test_a_fragmented_message_over_the_limit_is_refused_before_it_is_whole(
    start_server: StartServer, settings: Settings
) -> None:
    server = await start_server(limits={"max_message_bytes": 2048})
    async with raw_websocket(server) as ws:
        ws.send_text("4" + "x" * 1500, fin=False)
        ws.send_frame(0x0, b"y" * 1500, fin=False)
        assert await ws.close_code() == 1009


async def test_shutdown_disconnects_socketio_clients(
    server: TestServer, url: str, settings: Settings
) -> None:
    client, _ = await sio_client(url, token(settings, "alice"))
    ended = asyncio.Event()
    client.on("disconnect", lambda *_: ended.set(), namespace=NS)
    try:
        await asyncio.wait_for(server.close(), 10)
        await asyncio.wait_for(ended.wait(), 5)
    finally:
        await client.disconnect()


async def test_clients_that_answer_pings_stay_with_a_coarse_loop_clock(
    start_server: StartServer, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # uvloop's loop.time() moves in whole milliseconds; coarser here so that a ping answered
    # at once lands on the same tick, and ping_timeout is a multiple of ping_interval as in
    # the bench (5 and 20): stale pong deadlines then fall on the very tick a ping is due.
    # (ping_interval is whole seconds: the handshake cannot announce a fraction.)
    loop = asyncio.get_running_loop()
    precise = loop.time
    monkeypatch.setattr(loop, "time", lambda: round(precise(), 1))
    server = await start_server(delivery={"ping_interval": 1, "ping_timeout": 2})
    url = str(server.make_url("")).rstrip("/")
    clients = [await sio_client(url, token(settings, f"user{i}")) for i in range(5)]
    ended: list[str] = []
    for index, (client, _) in enumerate(clients):
        client.on("disconnect", lambda *_, i=index: ended.append(str(i)), namespace=NS)
    try:
        await asyncio.sleep(4.5)  # 4 ping rounds each: stale pong deadlines meet live pings
        assert ended == []
        assert all(client.connected for client, _ in clients)
    finally:
        for client, _ in clients:
            await client.disconnect()
