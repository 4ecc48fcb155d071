"""Pushes go only to public push services: a subscription names a URL and the server POSTs to
it, so without these rules any signed-in user could make the server reach its own network
(a database port, a cloud metadata address) and learn from the outcome whether it answered.

- Addresses: a host must resolve to global addresses only (no loopback, private, link-local,
  multicast or reserved ones; checked on every connection, so a name that later points inward
  is refused too). Hosts in `push.http_hosts` are trusted as the operator named them (a local
  push service, the tests).
- Ports: https on 443 only (every push service's), checked again at send time for a device
  registered before that rule.
- Redirects are never followed (a push service answers; it does not send elsewhere).
- An answer's body is read up to MAX_ANSWER_BYTES; the rest is never read.
- Connections are kept open between pushes for at most KEEP_ALIVE_ORIGINS push services, those
  used within KEEP_ALIVE_SECONDS (aiohttp's own idle limit); to any other the connection is
  closed after its answer. aiohttp bounds connections in use, not idle ones: a user's devices on
  many distinct hosts would otherwise leave one open socket per host.
"""

from __future__ import annotations

import socket
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from tiffin_rt.core.push import PUSH_SERVICE_PORT, is_public_address, literal_address

MAX_ANSWER_BYTES = 4096
KEEP_ALIVE_ORIGINS = 32
KEEP_ALIVE_SECONDS = 15.0  # aiohttp.TCPConnector's keepalive_timeout, its default


class NonPublicHost(OSError):
    """A push endpoint whose host is not a public address."""


class NotAPushService(aiohttp.ClientConnectionError):
    """An endpoint no push service can be at (an internal address, a port other than 443):
    never connected to, and not worth a retry."""


class PublicOnlyResolver(AbstractResolver):
    """Resolves as aiohttp does, keeping only public addresses, except for trusted hosts."""

    def __init__(self, trusted: frozenset[str]) -> None:
        self._inner = DefaultResolver()
        self._trusted = trusted

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if host.lower() in self._trusted:
            return found
        public = [entry for entry in found if is_public_address(entry["host"])]
        if not public:
            raise NonPublicHost(f"push endpoint host {host[:60]!r} has no public address")
        return public

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True, slots=True)
class Answer:
    """What a push service answered: status, headers, and the first bytes of its body."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    async def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class KeepAliveOrigins:
    """The push services whose connections stay open: first come, and each keeps its place
    while it is used within `idle` seconds (FCM, Mozilla and Apple are used all the time)."""

    def __init__(self, limit: int, idle: float) -> None:
        self._limit = limit
        self._idle = idle
        self._last_used: OrderedDict[str, float] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        return len(self._last_used)

    def allow(self, origin: str, now: float) -> bool:
        last_used = self._last_used
        if origin in last_used:
            last_used[origin] = now
            last_used.move_to_end(origin)
            return True
        while last_used and next(iter(last_used.values())) < now - self._idle:
            last_used.popitem(last=False)  # its idle connections are closed by now
        if len(last_used) >= self._limit:
            return False
        last_used[origin] = now
        return True


class GuardedPoster:
    """What pywebpush is given as its aiohttp session (it only calls `post`)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        trusted: frozenset[str],
        *,
        keep_alive_origins: int = KEEP_ALIVE_ORIGINS,
    ) -> None:
        self._session = session
        self._trusted = trusted
        self.keep_alive = KeepAliveOrigins(keep_alive_origins, KEEP_ALIVE_SECONDS)

    async def post(self, url: str, **kwargs: Any) -> Answer:
        target = URL(url)
        host = target.host or ""
        trusted = host.lower() in self._trusted
        literal = literal_address(host)
        # aiohttp does not resolve an IP literal, so the resolver never sees it: checked here.
        if literal is not None and not trusted and not is_public_address(literal):
            raise NotAPushService(f"push endpoint {literal} is not public")
        if not trusted and (target.scheme != "https" or target.port != PUSH_SERVICE_PORT):
            raise NotAPushService(
                f"push endpoint port {target.port} ({target.scheme}): push services are"
                f" https on {PUSH_SERVICE_PORT}"
            )
        kwargs["allow_redirects"] = False
        keep = self.keep_alive.allow(str(target.origin()), time.monotonic())
        if not keep:
            kwargs["headers"] = {**kwargs.get("headers", {}), "Connection": "close"}
        async with self._session.post(url, **kwargs) as response:
            body = await response.content.read(MAX_ANSWER_BYTES)
            if not keep or not response.content.at_eof():
                # Closed here, whatever the service answered: the rest is never read, nor the
                # connection kept for the next push.
                response.close()
            return Answer(response.status, CIMultiDictProxy(CIMultiDict(response.headers)), body)
