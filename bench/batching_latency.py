"""What batching's hold decision adds to live delivery: commit -> `notification` on a client.

A database of its own (dropped afterwards); one server in this process, as `serve` runs it,
with batching off, then on (`max_per_window` high enough that nothing is held, so every event
pays for the decision and is still sent). A writer commits one notify_user() at a time and
waits for the client to receive it; also with `--writers` concurrent writers for one user.

  python -m bench.batching_latency [--events 400] [--writers 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from typing import Any

import asyncpg
import socketio
from aiohttp import web

from tiffin_rt.app import create_app
from tiffin_rt.auth import mint_token
from tiffin_rt.config import Settings
from tiffin_rt.server import runner_options

DSN = os.environ.get("BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _settings(dsn: str, enabled: bool) -> Settings:
    return Settings.model_validate(
        {
            "server": {"host": "127.0.0.1", "port": 0},
            "database": {"dsn": dsn},
            "auth": {"jwt_secret": "b" * 40},
            "logging": {"level": "WARNING"},
            "batching": {"enabled": enabled, "max_per_window": 10_000, "window_seconds": 10},
            "limits": {"connect_per_ip": "1000/minute"},
        }
    )


async def _run(dsn: str, enabled: bool, events: int, writers: int) -> dict[str, Any]:
    settings = _settings(dsn, enabled)
    app = create_app(settings)
    runner = web.AppRunner(app, **runner_options(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    user = "bench-" + uuid.uuid4().hex[:8]
    arrived: dict[str, float] = {}
    waiters: dict[str, asyncio.Future[None]] = {}
    client = socketio.AsyncClient(reconnection=False)

    def on_notification(data: Any) -> None:
        arrived[data["title"]] = time.perf_counter()
        waiter = waiters.pop(data["title"], None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    client.on("notification", on_notification, namespace="/notifications")
    token = mint_token(settings.auth, sub=user, role="customer", vendor_id=None, ttl=600)
    await client.connect(
        f"http://127.0.0.1:{port}",
        namespaces=["/notifications"],
        auth={"token": token},
        transports=["websocket"],
        wait_timeout=5,
    )
    await asyncio.sleep(0.5)  # past the on-connect inbox
    loop = asyncio.get_running_loop()
    pool = await asyncpg.create_pool(dsn, min_size=writers, max_size=writers)
    try:

        async def one(title: str) -> float:
            waiter = waiters[title] = loop.create_future()
            started = time.perf_counter()
            await pool.fetchval("SELECT tiffin_rt.notify_user($1, 'bench', $2, '')", user, title)
            try:
                await asyncio.wait_for(waiter, 5)
            except TimeoutError:
                raise SystemExit(f"{title} never arrived (batching {enabled})") from None
            return (arrived[title] - started) * 1000

        for i in range(20):  # warm up
            await one(f"w{i}")
        serial = [await one(f"s{i}") for i in range(events)]
        concurrent: list[float] = []
        for round_ in range(events // writers):
            concurrent += await asyncio.gather(*(one(f"c{round_}-{w}") for w in range(writers)))
    finally:
        await pool.close()
        await client.disconnect()
        await runner.cleanup()
    return {"serial": serial, "concurrent": concurrent}


def _figures(values: list[float]) -> str:
    values = sorted(values)
    p50 = statistics.median(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return f"p50 {p50:.2f} ms  p99 {p99:.2f} ms  (n={len(values)})"


async def main(events: int, writers: int) -> None:
    name = "bench_batching_" + uuid.uuid4().hex[:8]
    admin = await asyncpg.connect(DSN)
    await admin.execute(f"CREATE DATABASE {name}")
    dsn = DSN.rsplit("/", 1)[0] + "/" + name
    try:
        for enabled in (False, True, False, True):
            result = await _run(dsn, enabled, events, writers)
            label = "batching on " if enabled else "batching off"
            print(f"{label}  one writer:         {_figures(result['serial'])}")
            print(f"{label}  {writers} writers at once: {_figures(result['concurrent'])}")
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=400)
    parser.add_argument("--writers", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.writers))
