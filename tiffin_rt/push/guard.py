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
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from tiffin_rt.core.push import PUSH_SERVICE_PORT, is_public_address, literal_address

MAX_ANSWER_BYTES = 4096


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


class GuardedPoster:
    """What pywebpush is given as its aiohttp session (it only calls `post`)."""

    def __init__(self, session: aiohttp.ClientSession, trusted: frozenset[str]) -> None:
        self._session = session
        self._trusted = trusted

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
        async with self._session.post(url, **kwargs) as response:
            body = await response.content.read(MAX_ANSWER_BYTES)
            if not response.content.at_eof():
                response.close()  # the rest is never read, nor kept for the next push
            return Answer(response.status, CIMultiDictProxy(CIMultiDict(response.headers)), body)
