"""Fixtures: a real PostgreSQL per test, settings, and a running tiffin_rt server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import pytest
import uvloop
from aiohttp.test_utils import TestServer

from tests.cluster_nodes import cluster_nodes  # noqa: F401  (a fixture, for every test)
from tests.helpers import base_url, make_settings
from tests.pg import PostgresForTests
from tests.served import ServeApp, served_servers
from tiffin_rt.app import create_app
from tiffin_rt.config import Settings


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresForTests]:
    server = PostgresForTests()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def dsn(postgres: PostgresForTests) -> AsyncIterator[str]:
    """A fresh, empty database for this test, dropped afterwards."""
    url = await postgres.create_database()
    yield url
    await postgres.drop_database(url)


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test's database, for acting as the order backend."""
    conn = await asyncpg.connect(dsn)
    yield conn
    await conn.close()


@pytest.fixture
def settings(dsn: str) -> Settings:
    return make_settings(dsn)


StartServer = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def aiohttp_server() -> AsyncIterator[ServeApp]:
    """pytest-aiohttp's fixture, but the server runs as `tiffin-rt serve` runs it."""
    async for start in served_servers():
        yield start


@pytest.fixture
def start_server(dsn: str, aiohttp_server: Callable[..., Awaitable[TestServer]]) -> StartServer:
    """Start a tiffin_rt server on 127.0.0.1; keyword sections override settings."""

    async def start(settings: Settings | None = None, **sections: dict[str, Any]) -> TestServer:
        app = create_app(settings or make_settings(dsn, **sections))
        return await aiohttp_server(app, host="127.0.0.1")

    return start


@pytest.fixture
async def server(start_server: StartServer, settings: Settings) -> TestServer:
    return await start_server(settings)


@pytest.fixture
def url(server: TestServer) -> str:
    return base_url(server)


def pytest_report_header() -> str:
    import os

    wanted = os.environ.get("TIFFIN_TEST_DSN")
    if wanted:
        return f"tiffin_rt: PostgreSQL from TIFFIN_TEST_DSN={wanted}"
    return "tiffin_rt: PostgreSQL at 127.0.0.1:5432, else embedded (TIFFIN_TEST_DSN unset)"



def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """Every test runs on uvloop, the loop `tiffin-rt serve` runs on (server.py): its transports
    are not asyncio.Transport instances, a difference that once ended every SSE stream after its
    first event under `serve` while the suite, on asyncio's loop, passed."""
    return {"uvloop": uvloop.new_event_loop}
