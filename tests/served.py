"""A test server run exactly as `tiffin-rt serve` runs the app (no handler cancellation)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from tiffin_rt import keys
from tiffin_rt.server import runner_options

ServeApp = Callable[..., Awaitable[TestServer]]


class ServedServer(TestServer):
    """aiohttp's TestServer turns handler cancellation on; `serve` does not, and neither do we."""

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        kwargs.pop("handler_cancellation", None)
        options = runner_options(self.app[keys.SETTINGS]) | kwargs
        return web.AppRunner(self.app, **options)


async def served_servers() -> AsyncIterator[ServeApp]:
    """Start apps as `serve` does on 127.0.0.1; all closed at the end."""
    servers: list[ServedServer] = []

    async def start(
        app: web.Application, *, host: str = "127.0.0.1", port: int | None = None, **kwargs: Any
    ) -> TestServer:
        server = ServedServer(app, host=host, port=port)
        await server.start_server(**kwargs)
        servers.append(server)
        return server

    yield start
    while servers:
        await servers.pop().close()
