"""server.cors_origins: one origin rule for Socket.IO, REST and SSE; the server's own origin is
always allowed; a state change carried by the cookie alone must come from an allowed origin."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import base_url, make_settings, sio_client, token
from tiffin_rt.config import Settings

SHOP = "https://shop.example"
EVIL = "https://evil.example"
ORDER_1 = "/api/notifications/orders/1/status"


async def _listed_server(start_server: StartServer, dsn: str) -> tuple[TestServer, Settings]:
    settings = make_settings(dsn, server={"cors_origins": [SHOP]})
    return await start_server(settings), settings


async def _request(
    method: str, url: str, headers: dict[str, str], cookies: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    async with (
        aiohttp.ClientSession(cookies=cookies) as http,
        http.request(method, url, headers=headers) as response,
    ):
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, dict(response.headers), body


def _preflight(origin: str, method: str, headers: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


async def test_rest_and_sse_preflights_from_a_listed_origin_get_cors_headers(
    start_server: StartServer, dsn: str
) -> None:
    server, settings = await _listed_server(start_server, dsn)
    url = base_url(server)
    for method, path, asked in (
        ("GET", "/api/notifications", "authorization"),
        ("GET", ORDER_1, "authorization, last-event-id"),
        ("POST", "/api/notifications/read-all", "authorization"),
        ("GET", "/api/support/conversations/1/messages", "authorization"),
    ):
        status, headers, _ = await _request("OPTIONS", url + path, _preflight(SHOP, method, asked))
        assert status == 200, path
        assert headers["Access-Control-Allow-Origin"] == SHOP
        assert headers["Access-Control-Allow-Credentials"] == "true"
        assert method in headers["Access-Control-Allow-Methods"]
        # An origin that is not listed learns nothing and gets the JSON error shape.
        status, headers, body = await _request(
            "OPTIONS", url + path, _preflight(EVIL, method, asked)
        )
        assert status == 403, path
        assert "Access-Control-Allow-Origin" not in headers
        assert body["error"]["code"] == "forbidden"
    # The actual requests carry the header too: the inbox and the SSE stream.
    auth = {"Authorization": f"Bearer {token(settings, 'alice')}", "Origin": SHOP}
    status, headers, _ = await _request("GET", f"{url}/api/notifications", auth)
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == SHOP
    async with aiohttp.ClientSession() as http, http.get(url + ORDER_1, headers=auth) as stream:
        assert stream.status == 200
        assert stream.headers["Access-Control-Allow-Origin"] == SHOP


async def _engineio_handshake(url: str, origin: str) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{url}/socket.io/?EIO=4&transport=polling", headers={"Origin": origin}
        ) as response,
    ):
        return response.status


@pytest.mark.parametrize("listed", [False, True])
async def test_socketio_takes_its_own_origin_and_the_listed_ones(
    listed: bool, start_server: StartServer, dsn: str
) -> None:
    if listed:
        server, settings = await _listed_server(start_server, dsn)
    else:
        settings = make_settings(dsn)
        server = await start_server(settings)
    url = base_url(server)
    assert await _engineio_handshake(url, url) == 200  # the page served by this server
    assert await _engineio_handshake(url, SHOP) == (200 if listed else 400)
    assert await _engineio_handshake(url, EVIL) == 400
    client, _ = await sio_client(url, token(settings, "alice"))  # no Origin: not a browser
    await client.disconnect()


async def _unread(url: str, tok: str) -> int:
    status, _, body = await _request(
        "GET", f"{url}/api/notifications", {"Authorization": f"Bearer {tok}"}
    )
    assert status == 200
    unread: int = body["unread"]
    return unread


async def test_a_cross_site_form_post_with_the_cookie_changes_nothing(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    server, settings = await _listed_server(start_server, dsn)
    url = base_url(server)
    tok = token(settings, "alice")
    cookie = {settings.auth.cookie_name: tok}
    for i in range(2):
        await db.fetchval(
            "SELECT tiffin_rt.notify_user('alice', 'promo', $1, 'body', '{}'::jsonb)", f"n{i}"
        )
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for headers in (
        {**form, "Origin": EVIL},
        {**form, "Referer": f"{EVIL}/page"},
        form,  # neither Origin nor Referer
        {**form, "Origin": "null"},  # a sandboxed frame
        {**form, "Referer": "http://x:abc/"},  # Referers no browser sends: a bad port,
        {**form, "Referer": "http://[zz]/"},  # bad brackets
    ):
        for path in ("/api/notifications/read-all", "/api/notifications/1/read"):
            status, _, body = await _request("POST", url + path, headers, cookie)
            assert status == 403, (headers, path)
            assert body["error"]["code"] == "forbidden"
    assert await _unread(url, tok) == 2
    # The server's own page and a listed origin may; a Bearer header is no cookie-borne request.
    status, _, body = await _request(
        "POST", f"{url}/api/notifications/read-all", {"Origin": url}, cookie
    )
    assert (status, body["marked"]) == (200, 2)
    for headers in ({"Origin": SHOP}, {"Authorization": f"Bearer {tok}", "Origin": EVIL}):
        status, _, _ = await _request("POST", f"{url}/api/notifications/read-all", headers, cookie)
        assert status == 200, headers


@pytest.mark.parametrize("method", ["OPTIONS", "GET"])
async def test_an_origin_of_bytes_no_origin_has_is_400_json(
    start_server: StartServer, dsn: str, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = await _listed_server(start_server, dsn)
    host, port = base_url(server).removeprefix("http://").split(":")
    for path in ("/api/notifications", ORDER_1, "/socket.io/?EIO=4&transport=polling"):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
            + b"Origin: "
            + SHOP.encode()
            + b"\xff\r\n"
            + b"Access-Control-Request-Method: GET\r\n\r\n"
        )
        response = await reader.read()
        writer.close()
        await writer.wait_closed()
        head, _, body = response.partition(b"\r\n\r\n")
        assert int(head.split()[1]) == 400, (path, response)
        assert json.loads(body)["error"]["code"] == "bad_request"
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
