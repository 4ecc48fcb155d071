"""Every long-lived resource and task belongs to a cleanup context and ends with the app."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import make_settings
from tiffin_rt.app import create_app
from tiffin_rt.config import Settings
from tiffin_rt.drain import DRAIN, report_stuck
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
    assert server.app[DRAIN].watchdog is None  # a finished shutdown reports nothing later


def test_the_only_shutdown_signal_closes_connections_before_aiohttp_waits(
    settings: Settings,
) -> None:
    """Resources start and stop in cleanup contexts; on_shutdown runs before aiohttp waits
    server.shutdown_timeout for open handlers, so only the close of streams and sessions is
    there (an SSE stream or a Socket.IO session would otherwise hold the shutdown up)."""
    app = create_app(settings)
    assert [h.__name__ for h in app.on_shutdown] == ["drain_connections"]
    # after the cleanup contexts: the shutdown's watchdog is stopped once everything closed
    assert [getattr(h, "__name__", "") for h in app.on_cleanup][1:] == ["shutdown_done"]
    assert len(app.on_startup) == 1  # the cleanup contexts' own start


async def test_a_connection_still_in_use_does_not_hold_the_shutdown(
    start_server: StartServer, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Something still holding a pooled connection (a query that never returns) delays the
    app's close by `server.shutdown_timeout` at most, then the connection is terminated with a
    WARNING; asyncpg's own close would wait for it without a limit."""
    server = await start_server(make_settings(dsn, server={"shutdown_timeout": 0.5}))
    pool = server.app[POOL]
    await pool.acquire()  # held, never released
    loop = asyncio.get_running_loop()
    began = loop.time()
    await asyncio.wait_for(server.close(), 10)
    assert loop.time() - began < 5
    assert pool.is_closing()
    assert any(
        r.levelno == logging.WARNING and "still in use after 0.5 s (1 when it began)" in r.message
        for r in caplog.records
    )


async def test_a_shutdown_past_its_bounds_names_what_is_still_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The trace a SIGKILL after a stuck shutdown would otherwise leave nothing of."""

    async def waits_for_ever(never: asyncio.Event) -> None:
        await never.wait()

    stuck = asyncio.create_task(waits_for_ever(asyncio.Event()), name="stuck-on-purpose")
    await asyncio.sleep(0)
    try:
        with caplog.at_level(logging.WARNING, logger="tiffin_rt.drain"):
            report_stuck(5.0)
        [record] = [r for r in caplog.records if r.name == "tiffin_rt.drain"]
        assert "12.0 s after it began" in record.message
        assert "stuck-on-purpose: waits_for_ever (test_lifecycle.py:" in record.message
    finally:
        stuck.cancel()
