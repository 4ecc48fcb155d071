"""Every long-lived resource and task belongs to a cleanup context and ends with the app."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestServer

from tiffin_rt.app import create_app
from tiffin_rt.config import Settings
from tiffin_rt.keys import POOL

LONG_LIVED = {
    "tiffin_rt-listener",
    "tiffin_rt-pruner",
    "tiffin_rt-inbox-pruner",
    "tiffin_rt-support-typing",
    "tiffin_rt-cluster-heartbeat",
    "tiffin_rt-cluster-inbox",
    "tiffin_rt-kitchen-queue",
}


def _running() -> set[str]:
    return {t.get_name() for t in asyncio.all_tasks() if not t.done()}


async def test_long_lived_tasks_and_the_pool_end_with_the_app(server: TestServer) -> None:
    assert _running() >= LONG_LIVED
    pool = server.app[POOL]
    await asyncio.wait_for(server.close(), 10)
    assert not LONG_LIVED & _running()
    assert pool.is_closing()


def test_the_only_shutdown_signal_closes_connections_before_aiohttp_waits(
    settings: Settings,
) -> None:
    """Resources start and stop in cleanup contexts; on_shutdown runs before aiohttp waits
    server.shutdown_timeout for open handlers, so only the close of streams and sessions is
    there (an SSE stream or a Socket.IO session would otherwise hold the shutdown up)."""
    app = create_app(settings)
    assert [h.__name__ for h in app.on_shutdown] == ["drain_connections"]
    assert len(app.on_startup) == 1  # the cleanup contexts' own start
