"""The command line and the health endpoints."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import jwt
from aiohttp.test_utils import TestServer

from tests.helpers import TEST_SECRET, make_settings
from tests.pg import PostgresForTests
from tiffin_rt.auth import mint_token

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env_dsn: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "TIFFIN_RT__AUTH__JWT_SECRET": TEST_SECRET}
    if env_dsn is not None:
        env["TIFFIN_RT__DATABASE__DSN"] = env_dsn
    return subprocess.run(
        [sys.executable, "-m", "tiffin_rt", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )


def test_token_command_mints_a_verifiable_token() -> None:
    result = run_cli(
        "token", "--sub", "k1", "--role", "kitchen", "--vendor-id", "v7", "--ttl", "60"
    )
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), TEST_SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["role"], claims["vendor_id"]) == ("k1", "kitchen", "v7")
    assert claims["exp"] - claims["iat"] == 60


def test_token_for_kitchen_needs_vendor() -> None:
    result = run_cli("token", "--sub", "k1", "--role", "kitchen")
    assert result.returncode == 2
    assert "--vendor-id is required" in result.stderr


def test_db_commands_against_a_dsn(dsn: str) -> None:
    up = run_cli("db", "upgrade", env_dsn=dsn)
    assert up.returncode == 0, up.stderr
    assert "0001_event_log" in up.stdout
    status = run_cli("db", "status", env_dsn=dsn)
    assert "pending: none" in status.stdout
    assert "triggers on: public.orders" in status.stdout
    down = run_cli("db", "downgrade", env_dsn=dsn)
    assert "schema tiffin_rt" in down.stdout


def test_unreachable_dsn_is_one_line_exit_2() -> None:
    result = run_cli("db", "status", env_dsn="postgresql://nobody@127.0.0.1:1/none")
    assert result.returncode == 2
    assert result.stderr.startswith("tiffin-rt: database.dsn: cannot connect")
    assert "Traceback" not in result.stderr


def test_serve_on_a_taken_port_says_which(dsn: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port), env_dsn=dsn)
    assert result.returncode == 2
    assert f"127.0.0.1:{port} is already in use" in result.stderr


async def test_health_and_readiness(server: TestServer, url: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/healthz") as response:
            assert response.status == 200
            health = await response.json()
            assert health["status"] == "ok"
            assert health["connections"] == {"socketio": 0, "sse": 0}
        async with http.get(f"{url}/readyz") as response:
            assert response.status == 200
            assert (await response.json())["checks"] == {
                "database": "ok",
                "schema": "ok",
                "triggers": "ok",
                "listener": "ok",
            }


async def test_readiness_reports_a_lost_listener_until_it_reconnects(
    server: TestServer, url: str, db: asyncpg.Connection, postgres: PostgresForTests
) -> None:
    name = await db.fetchval("SELECT current_database()")
    admin = await asyncpg.connect(postgres.admin_dsn)
    await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'tiffin_rt-listener' AND datname = $1",
        name,
    )
    async with aiohttp.ClientSession() as http:
        body = await eventually_status(http, f"{url}/readyz", 503)
        assert body["checks"]["listener"] == "disconnected"
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
        body = await eventually_status(http, f"{url}/readyz", 200)
        assert body["checks"]["listener"] == "ok"


async def eventually_status(http: aiohttp.ClientSession, url: str, status: int) -> Any:
    for _ in range(250):
        async with http.get(url) as response:
            if response.status == status:
                return await response.json()
        await asyncio.sleep(0.02)
    raise AssertionError(f"{url} never answered {status}")


async def test_sigterm_closes_streams_and_exits_cleanly(dsn: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        "PATH": "/usr/bin:/bin",
        "TIFFIN_RT__AUTH__JWT_SECRET": TEST_SECRET,
        "TIFFIN_RT__DATABASE__DSN": dsn,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tiffin_rt",
        "serve",
        "--port",
        str(port),
        env=env,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(f"{base}/readyz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)
            tok = mint_token(make_settings(dsn).auth, sub="alice", role="customer")
            async with http.get(
                f"{base}/api/notifications/orders/1/status", params={"access_token": tok}
            ) as stream:
                first = await stream.content.readline()
                assert first.startswith(b"id:") or first.startswith(b"data:")
                process.terminate()
                # the stream ends (EOF) on shutdown instead of hanging until the timeout
                await asyncio.wait_for(stream.content.read(), 10)
                assert stream.content.at_eof()
        assert await asyncio.wait_for(process.wait(), 15) == 0
        output = (await process.stdout.read()).decode() if process.stdout else ""
        assert "Traceback" not in output
        assert tok not in output  # the query-string token never reaches the access log
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
