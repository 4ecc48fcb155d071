"""The query pool: every query bounded in time, a connection that stops answering dropped.

The one place that constructs asyncpg's Pool class itself (create_pool has no hook for the
release timeout); nothing else here reaches into asyncpg.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from tiffin_rt.config import DatabaseSettings

log = logging.getLogger(__name__)

APPLICATION_NAME = "tiffin_rt"
CONNECT_TIMEOUT = 10.0
# Returning a connection to the pool resets it; after a query timed out it first waits for
# the cancel request's answer. A live server answers both in milliseconds; a dead peer never.
RELEASE_TIMEOUT = 1.0


class BoundedPool(asyncpg.Pool):
    """asyncpg's pool whose releases are bounded: asyncpg waits for them without a limit, so
    a connection whose peer went silent held the request that used it (and /readyz) for as
    long as the kernel kept the socket. A release that times out terminates the connection;
    the pool opens a fresh one for the next acquire."""

    async def release(
        self,
        connection: PoolConnectionProxy,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (asyncpg's signature)
    ) -> None:
        await super().release(connection, timeout=RELEASE_TIMEOUT if timeout is None else timeout)


async def create_pool(dsn: str, db: DatabaseSettings) -> asyncpg.Pool:
    """A started pool whose queries give up after `database.command_timeout` seconds."""
    pool = BoundedPool(
        dsn,
        min_size=db.pool_min,
        max_size=db.pool_max,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        timeout=CONNECT_TIMEOUT,
        command_timeout=db.command_timeout,
        server_settings={"application_name": APPLICATION_NAME},
    )
    await pool
    return pool


async def close_pool(pool: asyncpg.Pool, grace: float) -> None:
    """Close the pool at shutdown, waiting at most `grace` seconds for connections still in
    use (asyncpg's close waits for every one without a limit): then they are terminated, with
    a WARNING, so a stopped server always exits."""
    in_use = pool.get_size() - pool.get_idle_size()
    try:
        await asyncio.wait_for(pool.close(), grace)
    except TimeoutError:
        log.warning(
            "shutdown: database connections still in use after %.1f s (%d when it began);"
            " terminated",
            grace,
            in_use,
        )
        pool.terminate()
