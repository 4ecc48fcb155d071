"""What a client sends wrong is logged as a WARNING, never as an ERROR, on every Engine.IO path."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

EIO = "/socket.io/?EIO=4"


@pytest.mark.parametrize(
    ("method", "query"),
    [
        ("GET", "&transport=polling&sid=closed-or-never-opened"),  # a poll after a cut
        ("POST", "&transport=polling&sid=closed-or-never-opened"),
        ("GET", "&transport=carrier-pigeon"),
        ("GET", "&transport=websocket&sid=closed-or-never-opened"),
    ],
)
async def test_a_bad_engineio_request_is_answered_400_and_logged_as_a_warning(
    server: TestServer, url: str, caplog: pytest.LogCaptureFixture, method: str, query: str
) -> None:
    caplog.set_level(logging.WARNING)
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{url}{EIO}{query}", data="2" if method == "POST" else None) as r,
    ):
        assert r.status == 400
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if "further occurrences" in r.getMessage()]
