"""One verifier, one result: a token's time claims are judged alike on HTTP, SSE and Socket.IO.

PyJWT checks `exp`, `nbf` and `iat` with int(), which takes "1700000000" and True; a string
`exp` then passed verification but was no expiry to the code that ends connections at `exp`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import TEST_SECRET, connect_refusal, make_settings, sio_client, sse_events
from tiffin_rt.config import Settings

ORDER_1 = "/api/notifications/orders/1/status"
INBOX = "/api/notifications"


def _token(**claims: Any) -> str:
    now = int(time.time())
    base: dict[str, Any] = {"sub": "alice", "role": "customer", "iat": now, "exp": now + 600}
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not ...}, TEST_SECRET, "HS256")


def _later(seconds: int = 600) -> int:
    return int(time.time()) + seconds


REFUSED = {
    "exp a numeric string": lambda: _token(exp=str(_later())),
    "exp true": lambda: _token(exp=True),
    "exp null": lambda: _token(exp=None),
    "exp missing": lambda: _token(exp=...),
    "exp past year 9999": lambda: _token(exp=10**30),
    "exp a huge float": lambda: _token(exp=1e300),
    "exp negative": lambda: _token(exp=-1),
    "exp in the past as a float": lambda: _token(exp=time.time() - 30.5),
    "nbf a numeric string": lambda: _token(nbf=str(int(time.time()) - 10)),
    "nbf in the future as a float": lambda: _token(nbf=time.time() + 300.5),
    "iat a numeric string": lambda: _token(iat=str(int(time.time()))),
    "iat true": lambda: _token(iat=True),
}


async def _http_status(url: str, path: str, tok: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}{path}", headers={"Authorization": f"Bearer {tok}"}) as response,
    ):
        return response.status, await response.json()


@pytest.mark.parametrize("case", list(REFUSED))
async def test_a_token_with_a_malformed_time_claim_is_refused_on_every_transport(
    case: str, server: TestServer, url: str
) -> None:
    tok = REFUSED[case]()
    for path in (INBOX, ORDER_1):
        status, body = await _http_status(url, path, tok)
        assert status == 401, (case, path, body)
        assert body["error"]["code"] == "unauthorized"
    refusal = await connect_refusal(url, {"token": tok})
    assert refusal["code"] == "unauthorized", (case, refusal)
    claim = case.split()[0]
    if "missing" not in case and "past" not in case and "future" not in case:
        assert claim in refusal["message"], (case, refusal)


async def test_a_float_exp_is_accepted_everywhere_and_is_an_expiry(
    server: TestServer, url: str, settings: Settings
) -> None:
    tok = _token(exp=time.time() + 600.5, nbf=time.time() - 1.5)
    assert (await _http_status(url, INBOX, tok))[0] == 200
    client, _ = await sio_client(url, tok)
    await client.disconnect()
    # An SSE stream with a float exp ends at that expiry.
    short = _token(exp=time.time() + 1.5)
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}{ORDER_1}", headers={"Authorization": f"Bearer {short}"}) as response,
    ):
        assert response.status == 200
        events = sse_events(response)
        assert (await anext(events)).json()["orderId"] == "1"
        end = await anext(events)
        assert end.event == "end"
        assert end.json()["code"] == "token_expired"


async def test_the_leeway_applies_alike_on_http_sse_and_socketio(
    start_server: StartServer, dsn: str
) -> None:
    server = await start_server(make_settings(dsn, auth={"leeway": 60}))
    url = str(server.make_url("")).rstrip("/")
    lately = _token(exp=int(time.time()) - 5)  # expired, but within the leeway
    for path in (INBOX, ORDER_1):
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{url}{path}", headers={"Authorization": f"Bearer {lately}"}) as response,
        ):
            assert response.status == 200, (path, await response.text())
    client, _ = await sio_client(url, lately)
    await client.disconnect()


async def _raw_get(url: str, path: str, header: bytes) -> tuple[int, bytes]:
    """A GET with one header line exactly as given (bytes a normal client would not send)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"GET "
        + path.encode()
        + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + header
        + b"\r\n\r\n"
    )
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize(
    "header",
    [
        b"Authorization: Bearer \xed\xa0\x80",  # an encoded surrogate: not UTF-8
        b"Authorization: Bearer \xff\xfe",
        b"Authorization: Bearer caf\xc3\xa9.eyJ.x",  # UTF-8, but no JWT is anything but ASCII
        b"Cookie: tiffin_rt_token=\xed\xa0\x80",
    ],
)
async def test_a_token_of_bytes_no_jwt_has_is_401_not_500(
    server: TestServer, url: str, header: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    for path in (INBOX, ORDER_1):
        status, body = await _raw_get(url, path, header)
        assert status == 401, (header, path, body)
        assert json.loads(body)["error"]["code"] == "unauthorized"
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    "claims",
    [{"sub": "al\x00ice"}, {"sub": "lone \ud800"}, {"role": "kitchen", "vendor_id": "v\x00"}],
)
async def test_a_token_naming_a_user_the_database_cannot_store_is_refused(
    server: TestServer, url: str, claims: dict[str, Any]
) -> None:
    tok = _token(**claims)
    status, body = await _http_status(url, INBOX, tok)
    assert (status, body["error"]["code"]) == (401, "unauthorized"), body
    assert (await connect_refusal(url, {"token": tok}))["code"] == "unauthorized"
    assert (await connect_refusal(url, {"token": "caf\u00e9." + tok}))["code"] == "unauthorized"
