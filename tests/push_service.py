"""A Web Push service for the tests (RFC 8030), on 127.0.0.1: it checks each push's VAPID JWT
(RFC 8292: ES256 signature with the key in `k`, which must be the server's, `aud`, `exp`,
`sub`) and decrypts the body (RFC 8291 aes128gcm) with the private key of the subscription it
was sent to, as a browser would. Each device answers 201 unless a test scripts other answers
(410, 429 with Retry-After, ...) or makes it hang."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import http_ece
import jwt
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from multidict import CIMultiDict


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Device:
    """One browser's push subscription: its own P-256 key pair and auth secret."""

    token: str
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    answers: deque[tuple[int, dict[str, str]]] = field(default_factory=deque)
    hang: asyncio.Event | None = None

    def public_key(self) -> str:
        return b64url(
            self.private_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )


@dataclass(frozen=True)
class Push:
    """A push the service accepted for a device, decrypted, with when it arrived."""

    token: str
    status: int
    payload: Any
    headers: CIMultiDict[str]
    claims: dict[str, Any]
    at: float


class PushServiceForTests:
    def __init__(self, vapid_public_key: str) -> None:
        self.vapid_public_key = vapid_public_key
        self.devices: dict[str, Device] = {}
        self.pushes: list[Push] = []
        self.refused: list[str] = []  # why a push was refused (VAPID, encryption): a test fails
        self.changed = asyncio.Event()
        self.server: TestServer | None = None

    @property
    def origin(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}"

    def new_device(self) -> Device:
        device = Device(token=secrets.token_urlsafe(12))
        self.devices[device.token] = device
        return device

    def subscription(self, device: Device) -> dict[str, Any]:
        """What the browser's PushSubscription.toJSON() gives."""
        return {
            "endpoint": f"{self.origin}/push/{device.token}",
            "expirationTime": None,
            "keys": {"p256dh": device.public_key(), "auth": b64url(device.auth)},
        }

    def to(self, device: Device) -> list[Push]:
        return [p for p in self.pushes if p.token == device.token]

    async def wait_for(self, device: Device, count: int = 1, timeout: float = 10.0) -> list[Push]:
        async def enough() -> None:
            while len(self.to(device)) < count:
                assert not self.refused, self.refused
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(enough(), timeout)
        assert not self.refused, self.refused
        return self.to(device)

    def _refuse(self, why: str) -> web.Response:
        self.refused.append(why)
        self.changed.set()
        return web.Response(status=401, text=why)

    def _claims(self, request: web.Request) -> dict[str, Any] | str:
        """The VAPID claims of a push, or why they are refused."""
        scheme, _, params = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "vapid":
            return f"Authorization scheme {scheme!r}, not vapid"
        parts = dict(p.strip().split("=", 1) for p in params.split(",") if "=" in p)
        if parts.get("k") != self.vapid_public_key:
            return "k is not the server's VAPID public key"
        key = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), b64url_decode(parts["k"])
        )
        try:
            claims: dict[str, Any] = jwt.decode(
                parts.get("t", ""),
                key=key,
                algorithms=["ES256"],
                audience=self.origin,
                options={"require": ["exp", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            return f"VAPID JWT refused: {exc}"
        if claims["exp"] > time.time() + 24 * 3600:
            return "VAPID exp more than 24 hours ahead (RFC 8292 section 2)"
        if not str(claims["sub"]).startswith(("mailto:", "https:")):
            return "VAPID sub is no mailto: or https: URL"
        return claims

    async def _push(self, request: web.Request) -> web.Response:
        device = self.devices.get(request.match_info["token"])
        if device is None:
            return web.Response(status=404)
        claims = self._claims(request)
        if isinstance(claims, str):
            return self._refuse(claims)
        if request.headers.get("Content-Encoding") != "aes128gcm":
            return self._refuse(f"Content-Encoding {request.headers.get('Content-Encoding')!r}")
        if not request.headers.get("TTL", "").isdigit():
            return self._refuse("no TTL header")
        body = await request.read()
        if len(body) > 4096:
            return self._refuse(f"body of {len(body)} bytes (a push service takes 4096)")
        try:
            plain = http_ece.decrypt(
                body, private_key=device.private_key, auth_secret=device.auth, version="aes128gcm"
            )
            payload = json.loads(plain)
        except Exception as exc:
            return self._refuse(f"cannot decrypt: {exc!r}")
        if device.hang is not None:
            await device.hang.wait()
        status, headers = device.answers.popleft() if device.answers else (201, {})
        seen = CIMultiDict(request.headers)
        self.pushes.append(Push(device.token, status, payload, seen, claims, time.monotonic()))
        self.changed.set()
        return web.Response(status=status, headers=headers)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/push/{token}", self._push)
        return app


@asynccontextmanager
async def push_service(vapid_public_key: str) -> AsyncIterator[PushServiceForTests]:
    service = PushServiceForTests(vapid_public_key)
    server = TestServer(service.app(), host="127.0.0.1")
    await server.start_server()
    service.server = server
    try:
        yield service
    finally:
        for device in service.devices.values():
            if device.hang is not None:
                device.hang.set()
        await server.close()
