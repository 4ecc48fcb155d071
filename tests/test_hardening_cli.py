"""The command line around the embedded PostgreSQL: stopping cleanly, stale handles, help."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.helpers import TEST_SECRET
from tiffin_rt.db.embedded import HANDLE_FILE

REPO = Path(__file__).resolve().parents[1]
# useradd (in sbin) makes the embedded server its own user on first use as root
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TIFFIN_RT__AUTH__JWT_SECRET": TEST_SECRET}


def postmaster_pid(data: Path) -> int | None:
    """The running PostgreSQL's pid for this data directory, or None."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def handles(data: Path) -> list[int]:
    path = data / HANDLE_FILE
    return json.loads(path.read_text()) if path.exists() else []


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A config whose embedded PostgreSQL lives under tmp_path; stopped if left running."""
    os.chmod(tmp_path, 0o755)  # run as root, the server runs as a user of its own
    data = tmp_path / "pg"
    config = tmp_path / "config.yaml"
    config.write_text(f"database: {{embedded_dir: '{data}'}}\n")
    yield config, data
    pid = postmaster_pid(data)
    if pid is not None:  # what the bug leaves behind; not for the next test
        os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown


def cli(*args: str, dsn: str | None = None) -> subprocess.CompletedProcess[str]:
    env = ENV if dsn is None else {**ENV, "TIFFIN_RT__DATABASE__DSN": dsn}
    return subprocess.run(
        [sys.executable, "-m", "tiffin_rt", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=REPO,
    )


async def test_sigterm_stops_demo_simulate_and_its_embedded_postgres(
    embedded: tuple[Path, Path],
) -> None:
    config, data = embedded
    upgraded = await asyncio.to_thread(cli, "db", "upgrade", "--config", str(config))
    assert upgraded.returncode == 0, upgraded.stderr
    assert postmaster_pid(data) is None  # the last (only) user stopped it
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tiffin_rt",
        "demo",
        "simulate",
        "--config",
        str(config),
        "--interval",
        "0.05",
        env=ENV,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        first = await asyncio.wait_for(process.stdout.readline(), 60)
        assert first.startswith(b"order "), first
        assert handles(data) == [process.pid]
        assert postmaster_pid(data) is not None
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 30) == 0
        assert b"Traceback" not in await process.stderr.read()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert handles(data) == []
    assert postmaster_pid(data) is None


def test_handles_of_dead_processes_do_not_keep_postgres_running(
    embedded: tuple[Path, Path],
) -> None:
    config, data = embedded
    assert cli("db", "upgrade", "--config", str(config)).returncode == 0
    gone = subprocess.Popen(["true"])
    gone.wait()
    (data / HANDLE_FILE).write_text(json.dumps([gone.pid]))  # a process killed with SIGKILL
    status = cli("db", "status", "--config", str(config))
    assert status.returncode == 0, status.stderr
    assert "pending: none" in status.stdout
    assert handles(data) == []
    assert postmaster_pid(data) is None


def test_db_psql_opens_the_embedded_database_and_lets_it_go(
    embedded: tuple[Path, Path],
) -> None:
    config, data = embedded
    assert cli("db", "upgrade", "--config", str(config)).returncode == 0
    query = "SELECT count(*) FROM public.orders"
    result = cli("db", "psql", "--config", str(config), "--", "-At", "-c", query)
    assert (result.returncode, result.stdout) == (0, "4\n"), result.stderr
    assert postmaster_pid(data) is None
    failed = cli("db", "psql", "--config", str(config), "--", "-c", "SELECT nonsense")
    assert failed.returncode != 0  # psql's own status
    assert "nonsense" in failed.stderr


def test_db_psql_opens_a_configured_dsn(dsn: str) -> None:
    result = cli("db", "psql", "--", "-At", "-c", "SELECT current_database()", dsn=dsn)
    assert (result.returncode, result.stdout) == (0, f"{dsn.rsplit('/', 1)[1]}\n"), result.stderr


def test_demo_simulate_help_shows_the_defaults() -> None:
    result = cli("demo", "simulate", "--help")
    assert result.returncode == 0
    assert "seconds between steps (default: 3.0)" in result.stdout
    assert "(default: never)" in result.stdout


async def test_serve_on_a_taken_port_fails_before_touching_the_database(
    dsn: str, db: asyncpg.Connection
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await asyncio.to_thread(cli, "serve", "--port", str(port), dsn=dsn)
    assert result.returncode == 2
    assert result.stderr == f"tiffin-rt: server.port: 127.0.0.1:{port} is already in use\n"
    assert await db.fetchval("SELECT to_regnamespace('tiffin_rt') IS NULL")  # not migrated
