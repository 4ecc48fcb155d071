"""No token ever reaches a log line: access log, aiohttp-jwt, Engine.IO/Socket.IO, our own."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestServer

from tests.helpers import TEST_SECRET, base_url, connect_refusal, make_settings, sio_client, token
from tiffin_rt.app import create_app
from tiffin_rt.logs import AccessLogger, configure_logging

NS = "/notifications"


async def test_captured_logs_contain_no_token(
    dsn: str,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    configure_logging("DEBUG")  # the production set-up, applied to the capturing handler too
    settings = make_settings(dsn, limits={"events_per_connection": "3/minute"})
    server = await aiohttp_server(
        create_app(settings), host="127.0.0.1", access_log_class=AccessLogger
    )
    url = base_url(server)
    good = token(settings, "alice")
    expired = token(settings, "alice", ttl=-60)
    forged = jwt.encode({"sub": "eve", "exp": int(time.time()) + 60}, "x" * 40, "HS256")
    secrets = [good, expired, forged]
    sse = f"{url}/api/notifications/orders/1/status"

    async with aiohttp.ClientSession() as http:
        for tok in secrets:
            async with http.get(sse, params={"access_token": tok}) as response:
                await response.read() if response.status != 200 else None
            async with http.get(sse, headers={"Authorization": f"Bearer {tok}"}) as response:
                assert response.status in (200, 401)
        # A raw socket sending the token in a malformed packet and an unknown event.
        ws = await http.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket")
        await ws.receive_str()
        await ws.send_str("40/notifications," + json.dumps({"token": good}))
        await ws.receive_str()
        await ws.send_str('42/notifications,["refreshToken", {"token": "' + forged + '"')
        await ws.send_str('42/notifications,["' + good + '"]')
        await asyncio.sleep(0.1)
        await ws.close()
    for tok in (expired, forged):
        await connect_refusal(url, {"token": tok})
    client, _ = await sio_client(url, good)
    try:
        for _ in range(4):  # past the event limit as well
            await client.call("refreshToken", {"token": forged}, namespace=NS)
    finally:
        await client.disconnect()
    logging.getLogger("tiffin_rt.example").warning("a careless line with %s", good)

    text = caplog.text
    assert "/api/notifications/orders/1/status" in text  # the access log was captured
    assert "[redacted]" in text  # the careless line was masked
    for tok in secrets:
        for part in tok.split("."):
            assert part not in text.replace("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9", "")
    assert "access_token=" not in text


def test_redaction_of_query_strings_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    configure_logging("DEBUG")
    secret = jwt.encode({"sub": "a"}, TEST_SECRET, "HS256")
    log = logging.getLogger("tiffin_rt.example")
    log.info("GET /x?access_token=%s&a=1", "opaque-token-value")
    try:
        raise ValueError(f"bad {secret}")
    except ValueError:
        log.exception("failed")
    assert "opaque-token-value" not in caplog.text
    assert secret not in caplog.text
    assert caplog.text.count("[redacted]") == 2
