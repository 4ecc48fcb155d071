"""JWT on every connection: Socket.IO connect, SSE over header, query and cookie."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import StartServer
from tests.helpers import TEST_SECRET, base_url, connect_refusal, sio_client, sse_events, token
from tiffin_rt.config import Settings

AUDIENCE = "tiffin-rt"
ISSUER = "https://auth.tiffin.example"
SSE_PATH = "/api/notifications/orders/1/status"


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "alice",
        "role": "customer",
        "iat": now,
        "exp": now + 600,
        "aud": AUDIENCE,
        "iss": ISSUER,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def signed(**overrides: Any) -> str:
    return jwt.encode(claims(**overrides), TEST_SECRET, algorithm="HS256")


def b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def hmac_token_with_key(key: bytes, payload: dict[str, Any]) -> str:
    """HS256 by hand: PyJWT itself refuses to use a PEM key as an HMAC secret."""
    body = {"exp": int(time.time()) + 600, **payload}
    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(json.dumps(body).encode())
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + b64(signature)).decode()


def unsigned_alg_none() -> str:
    return jwt.encode(claims(), None, algorithm="none")


BAD_TOKENS = {
    "expired": (lambda: signed(exp=int(time.time()) - 30), "expired"),
    "wrong signature": (
        lambda: jwt.encode(claims(), "another-secret-that-is-long-enough-012345", "HS256"),
        "Signature verification failed",
    ),
    "alg none": (unsigned_alg_none, "alg value is not allowed"),
    "wrong audience": (lambda: signed(aud="someone-else"), "audience"),
    "wrong issuer": (lambda: signed(iss="https://evil.example"), "issuer"),
    "no exp": (lambda: signed(exp=None), "exp"),
    "garbage": (lambda: "not.a.jwt", "invalid token"),
}


@pytest.fixture
async def strict_server(start_server: StartServer) -> TestServer:
    return await start_server(auth={"jwt_audience": AUDIENCE, "jwt_issuer": ISSUER})


@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_socketio_refuses_a_bad_token_with_a_reason(
    strict_server: TestServer, case: str
) -> None:
    make, reason = BAD_TOKENS[case]
    data = await connect_refusal(base_url(strict_server), {"token": make()})
    assert data["code"] == "unauthorized"
    assert reason.lower() in data["message"].lower()


async def test_socketio_refuses_a_missing_token(strict_server: TestServer) -> None:
    for auth in (None, {}, {"token": ""}, {"token": 42}):
        data = await connect_refusal(base_url(strict_server), auth)
        assert data == {"code": "unauthorized", "message": "a token is required"}


async def test_socketio_accepts_a_good_token(strict_server: TestServer) -> None:
    client, _ = await sio_client(base_url(strict_server), signed())
    try:
        ack = await client.call("joinRoom", "order-1", namespace="/notifications")
        assert (ack["ok"], ack["room"]) == (True, "order-1")
    finally:
        await client.disconnect()


@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_sse_refuses_a_bad_token_with_401_json(strict_server: TestServer, case: str) -> None:
    make, reason = BAD_TOKENS[case]
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            base_url(strict_server) + SSE_PATH, headers={"Authorization": f"Bearer {make()}"}
        ) as response,
    ):
        assert response.status == 401
        body = await response.json()
        assert body["error"]["code"] == "unauthorized"
        assert reason.lower() in body["error"]["message"].lower()
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_sse_without_a_token_is_401(server: TestServer, url: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(url + SSE_PATH) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert await response.json() == {
            "error": {"code": "unauthorized", "message": "a token is required"}
        }


async def first_status(response: aiohttp.ClientResponse) -> str:
    assert response.status == 200, await response.text()
    first = await anext(sse_events(response))
    status: str = first.json()["status"]
    return status


async def test_sse_with_a_header_token(server: TestServer, url: str, settings: Settings) -> None:
    headers = {"Authorization": f"Bearer {token(settings, 'alice')}"}
    async with aiohttp.ClientSession() as http, http.get(url + SSE_PATH, headers=headers) as r:
        assert await first_status(r) == "pending"


async def test_sse_with_a_query_token(server: TestServer, url: str, settings: Settings) -> None:
    query = {"access_token": token(settings, "alice")}
    async with aiohttp.ClientSession() as http, http.get(url + SSE_PATH, params=query) as r:
        assert await first_status(r) == "pending"


async def test_sse_with_a_cookie_token(server: TestServer, url: str, settings: Settings) -> None:
    cookies = {settings.auth.cookie_name: token(settings, "alice")}
    async with (
        aiohttp.ClientSession(cookies=cookies) as http,
        http.get(url + SSE_PATH) as r,
    ):
        assert await first_status(r) == "pending"


async def test_es256_public_key_accepts_signed_tokens_and_refuses_key_confusion(
    start_server: StartServer,
) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    server = await start_server(
        auth={"jwt_secret": "", "jwt_public_key": public_pem, "jwt_algorithms": ["ES256"]}
    )
    url = base_url(server)
    good = jwt.encode(claims(aud=None, iss=None), private, algorithm="ES256")
    client, _ = await sio_client(url, good)
    await client.disconnect()
    async with (
        aiohttp.ClientSession() as http,
        http.get(url + SSE_PATH, headers={"Authorization": f"Bearer {good}"}) as response,
    ):
        assert await first_status(response) == "pending"
    # The classic confusion attack: HMAC-sign with the public key as the secret.
    forged = hmac_token_with_key(public_pem.encode(), {"sub": "eve", "role": "admin"})
    data = await connect_refusal(url, {"token": forged})
    assert data["code"] == "unauthorized"
