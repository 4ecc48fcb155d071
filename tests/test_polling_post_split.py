"""A long-polling POST whose body arrives in pieces (several TCP segments on a slow link or
through a proxy, or chunked with no Content-Length) is one payload, not a malformed one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.helpers import token
from tests.raw_engineio import ack, connect_namespace, raw_session
from tiffin_rt.config import Settings

NS = "/notifications"


async def pieces(body: bytes, cut: int) -> AsyncIterator[bytes]:
    yield body[:cut]
    await asyncio.sleep(0.3)  # the rest comes in a later segment
    yield body[cut:]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_post_that_arrives_in_pieces_is_read_whole(
    url: str, settings: Settings, framing: str
) -> None:
    async with raw_session(url, "polling") as session:
        body = ("40" + NS + ',{"token":"' + token(settings, "alice") + '"}').encode()
        headers = {"Content-Length": str(len(body))} if framing == "content-length" else {}
        async with session.http.post(
            f"{session.url}&transport=polling&sid={session.sid}",
            data=pieces(body, 20),
            headers=headers,
        ) as response:
            assert response.status == 200, await response.text()
            assert await response.text() == "OK"
        while True:
            message = await session.receive()
            assert isinstance(message, str), message
            if message.startswith(f"40{NS},"):
                break
            assert not message.startswith(f"44{NS},"), message
        # The marker: the session is alive and answers a join sent after it.
        join = f'42{NS},1["joinRoom","order-1"]'.encode()
        async with session.http.post(
            f"{session.url}&transport=polling&sid={session.sid}",
            data=pieces(join, 7),
            headers={"Content-Length": str(len(join))} if framing == "content-length" else {},
        ) as response:
            assert response.status == 200, await response.text()
        [answer] = await ack(session, NS, 1)
        assert answer["ok"] is True, answer


async def test_a_chunked_post_past_the_limit_is_refused_413(url: str, settings: Settings) -> None:
    async with raw_session(url, "polling") as session:
        await connect_namespace(session, NS, token(settings, "alice"))

        async def endless() -> AsyncIterator[bytes]:
            for _ in range(64):
                yield b"4" + b"x" * 65_535

        async with session.http.post(
            f"{session.url}&transport=polling&sid={session.sid}", data=endless()
        ) as response:
            assert response.status == 413
