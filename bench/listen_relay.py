"""LISTEN on every node, or one relay publishing to Redis: the figures in docs/cluster.md.

Each "node" is a separate process. `listen`: every node has its own LISTEN connection, as
tiffin_rt does. `relay`: one relay process LISTENs and publishes each notification to a Redis
channel; the nodes subscribe to it. A writer commits one pg_notify per transaction at a fixed
rate; each node records commit -> receipt latency. CPU: the PostgreSQL backends (writer and
listeners, from /proc), the relay, and Redis (INFO cpu).

  python -m bench.listen_relay [--nodes 3,8] [--rate 500] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from typing import Any

import asyncpg
import redis.asyncio as aioredis

DSN = os.environ.get("BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")
CHANNEL = "bench_listen_relay"
PAYLOAD_PAD = "x" * 160  # about the size of a tiffin_rt NOTIFY payload


def _cpu_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _say(document: dict[str, Any]) -> None:
    print(json.dumps(document), flush=True)


async def node(mode: str, expected: int) -> None:
    """Receive `expected` notifications, print latencies (ms) as JSON."""
    latencies: list[float] = []
    done = asyncio.Event()

    def record(payload: str) -> None:
        latencies.append((time.time() - float(payload.split(" ", 1)[0])) * 1000)
        if len(latencies) >= expected:
            done.set()

    if mode == "listen":
        conn = await asyncpg.connect(DSN)
        await conn.add_listener(CHANNEL, lambda *args: record(args[3]))
        backend = await conn.fetchval("SELECT pg_backend_pid()")
    else:
        client = aioredis.Redis.from_url(REDIS)
        pubsub = client.pubsub()
        await pubsub.subscribe(CHANNEL)
        backend = 0

        async def read() -> None:
            async for message in pubsub.listen():
                if message["type"] == "message":
                    record(message["data"].decode())

        reader = asyncio.create_task(read())
    _say({"backend": backend})
    cpu = _cpu_of(os.getpid())
    await asyncio.wait_for(done.wait(), 120)
    _say({"latencies": latencies, "cpu": _cpu_of(os.getpid()) - cpu})
    await asyncio.to_thread(sys.stdin.read)  # keep the connection (and its backend) until told
    if mode != "listen":
        reader.cancel()


async def relay(expected: int) -> None:
    conn = await asyncpg.connect(DSN)
    client = aioredis.Redis.from_url(REDIS)
    queue: asyncio.Queue[str] = asyncio.Queue()
    await conn.add_listener(CHANNEL, lambda *args: queue.put_nowait(args[3]))
    _say({"backend": await conn.fetchval("SELECT pg_backend_pid()")})
    cpu = _cpu_of(os.getpid())
    for _ in range(expected):
        await client.publish(CHANNEL, await queue.get())
    _say({"cpu": _cpu_of(os.getpid()) - cpu})
    await asyncio.to_thread(sys.stdin.read)


async def _redis_cpu() -> float:
    client = aioredis.Redis.from_url(REDIS)
    info = await client.info("cpu")
    await client.aclose()
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def run(mode: str, nodes: int, rate: int, seconds: float) -> dict[str, Any]:
    expected = int(rate * seconds)
    me = [sys.executable, "-m", "bench.listen_relay"]
    procs = [
        await asyncio.create_subprocess_exec(
            *me,
            "--role",
            "node",
            "--mode",
            mode,
            "--expected",
            str(expected),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=2**24,
        )
        for _ in range(nodes)
    ]
    if mode == "relay":
        procs.append(
            await asyncio.create_subprocess_exec(
                *me,
                "--role",
                "relay",
                "--expected",
                str(expected),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
        )
    backends = [await _read(p) for p in procs]
    backends = [b["backend"] for b in backends if b["backend"]]
    writer = await asyncpg.connect(DSN)
    writer_pid = await writer.fetchval("SELECT pg_backend_pid()")
    pg_before = sum(_cpu_of(pid) for pid in backends)
    writer_before = _cpu_of(writer_pid)
    redis_before = await _redis_cpu()
    start = time.perf_counter()
    for i in range(expected):
        async with writer.transaction():
            payload = f"{time.time()} {PAYLOAD_PAD}"
            await writer.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
        behind = start + (i + 1) / rate - time.perf_counter()
        if behind > 0:
            await asyncio.sleep(behind)
    reports = [await _read(p) for p in procs]
    pg_cpu = sum(_cpu_of(pid) for pid in backends) - pg_before
    writer_cpu = _cpu_of(writer_pid) - writer_before
    redis_cpu = await _redis_cpu() - redis_before if mode == "relay" else 0.0
    for p in procs:
        if p.stdin:
            p.stdin.close()
        await p.wait()
    results = reports[:nodes]
    relay_cpu = reports[nodes]["cpu"] if mode == "relay" else 0.0
    await writer.close()
    latencies = sorted(x for r in results for x in r["latencies"])
    per_k = 1000 / expected
    return {
        "mode": mode,
        "nodes": nodes,
        "events": expected,
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2),
        "pg_writer_cpu_ms_per_1k": round(writer_cpu * 1000 * per_k, 1),
        "pg_listening_backends_cpu_ms_per_1k": round(pg_cpu * 1000 * per_k, 1),
        "relay_cpu_ms_per_1k": round(relay_cpu * 1000 * per_k, 1),
        "redis_cpu_ms_per_1k": round(redis_cpu * 1000 * per_k, 1),
        "node_cpu_ms_per_1k": round(statistics.mean(r["cpu"] for r in results) * 1000 * per_k, 1),
    }


async def _read(process: asyncio.subprocess.Process) -> dict[str, Any]:
    assert process.stdout is not None
    document: dict[str, Any] = json.loads(await process.stdout.readline())
    return document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--role", default="main", choices=["main", "node", "relay"])
    parser.add_argument("--mode", default="listen", choices=["listen", "relay"])
    parser.add_argument("--expected", type=int, default=0)
    parser.add_argument("--nodes", default="3,8")
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if args.role == "node":
        asyncio.run(node(args.mode, args.expected))
        return
    if args.role == "relay":
        asyncio.run(relay(args.expected))
        return
    for count in (int(n) for n in args.nodes.split(",")):
        for mode in ("listen", "relay"):
            print(json.dumps(asyncio.run(run(mode, count, args.rate, args.seconds))), flush=True)


if __name__ == "__main__":
    main()
