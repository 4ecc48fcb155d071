"""Where the tests find PostgreSQL: TIFFIN_TEST_DSN, else 127.0.0.1:5432, else embedded.

TIFFIN_TEST_DSN=embedded forces the embedded server even when one answers on 5432.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from tiffin_rt.db.embedded import EmbeddedPostgres

LOCAL_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


async def _answers(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=2)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


class PostgresForTests:
    """A server for the whole test session; each test gets a database of its own."""

    def __init__(self) -> None:
        self.admin_dsn = ""
        self.source = ""
        self._embedded: EmbeddedPostgres | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> None:
        configured = os.environ.get("TIFFIN_TEST_DSN")
        if configured and configured != "embedded":
            self.admin_dsn, self.source = configured, "TIFFIN_TEST_DSN"
        elif not configured and asyncio.run(_answers(LOCAL_DSN)):
            self.admin_dsn, self.source = LOCAL_DSN, "127.0.0.1:5432"
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="tiffin-test-pg-")
            os.chmod(self._tmp.name, 0o755)
            self._embedded = EmbeddedPostgres(data_dir=Path(self._tmp.name) / "pg")
            self.admin_dsn, self.source = self._embedded.start(), "embedded"

    def stop(self) -> None:
        if self._embedded is not None:
            self._embedded.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    async def create_database(self) -> str:
        name = f"tiffin_test_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return with_database(self.admin_dsn, name)

    async def drop_database(self, dsn: str) -> None:
        name = urlsplit(dsn).path.lstrip("/")
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
