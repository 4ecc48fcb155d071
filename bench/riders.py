"""`make bench BENCH_ARGS="--scenario riders"`: rider location tracking under load (tiffin_rt).

N riders (default 2000), each on its own Socket.IO connection, send `locationUpdate` for their
own order once a second; N customers (another N connections) each watch their order's room.
Every position takes the real path: the ack after the checks, `riderLocation` to the order's
room, the last position stored in batches (tracking.store_interval), the ETA computed from the
order's destination columns. Measured over `--riders-seconds` once every rider is sending:

- server CPU (utime + stime of the server process) per accepted update and per delivery;
- end to end: from the rider's emit to the customer's receipt, p50 / p99 / max, and positions
  lost (accepted but never received) or duplicated;
- database writes per second: rows inserted or updated in tiffin_rt.rider_positions (and the
  trail), from pg_stat_user_tables, and the writer's statements;
- refusals (a rider's send within its rate window; there should be none).

  python -m bench.run --scenario riders [--riders 2000] [--riders-seconds 20] ...
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from bench import run
from tiffin_rt.auth import mint_token

# The customers' doors: every order goes to the same neighbourhood, so each position has an ETA.
DESTINATION = (12.9352, 77.6245)


async def prepare(dsn: str, riders: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "ALTER TABLE orders ADD COLUMN delivery_lat float8, ADD COLUMN delivery_lng float8"
        )
        await conn.execute(
            "UPDATE orders SET rider_id = 'r' || id, status = 'ready', delivery_lat = $2,"
            " delivery_lng = $3 WHERE id <= $1",
            riders,
            *DESTINATION,
        )
    finally:
        await conn.close()


async def start_server(dsn: str, opts: run.Options, logfile: Path) -> run.Server:
    port = run.free_port()
    env = dict(os.environ)
    env.update(
        TIFFIN_RT__DATABASE__DSN=dsn,
        TIFFIN_RT__AUTH__JWT_SECRET=run.SECRET,
        TIFFIN_RT__DELIVERY__PING_INTERVAL=str(opts.ping_interval),
        TIFFIN_RT__DELIVERY__PING_TIMEOUT=str(opts.ping_interval),
        TIFFIN_RT__TRACKING__DESTINATION_LAT_COLUMN="delivery_lat",
        TIFFIN_RT__TRACKING__DESTINATION_LNG_COLUMN="delivery_lng",
    )
    argv = [
        run.PYTHON,
        "-m",
        "tiffin_rt",
        "serve",
        "--config",
        str(run.BENCH / "tiffin-bench.yaml"),
        "--port",
        str(port),
    ]
    process = run.spawn(argv, env, logfile)
    url = f"http://127.0.0.1:{port}"
    ready = False
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            if process.poll() is not None:
                raise RuntimeError(f"tiffin_rt exited; see {logfile}")
            try:
                async with session.get(f"{url}/readyz") as response:
                    if response.status == 200:
                        ready = True
                        break
            except (aiohttp.ClientError, OSError):
                pass
            await asyncio.sleep(0.1)
    if not ready:
        process.kill()
        raise RuntimeError("tiffin_rt did not become ready")
    return run.Server("tiffin", url, process)


class Group:
    """Load-client processes (bench/riderclient.py) of one role."""

    def __init__(self, procs: list[run.ClientProcess]) -> None:
        self.procs = procs

    @classmethod
    async def start(
        cls,
        url: str,
        role: str,
        conns: list[tuple[str, str]],
        processes: int,
        workdir: Path,
        connect_seconds: float,
    ) -> Group:
        procs = []
        for index in range(processes):
            job = {
                "url": url,
                "role": role,
                "conns": conns[index::processes],
                "connect_concurrency": 32,
                "period": 1.0,
            }
            jobfile = workdir / f"riders-{role}-{index}-{time.monotonic_ns()}.json"
            jobfile.write_bytes(orjson.dumps(job))
            process = await asyncio.create_subprocess_exec(
                run.PYTHON,
                "-m",
                "bench.riderclient",
                str(jobfile),
                cwd=run.ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=1 << 28,
            )
            procs.append(run.ClientProcess(process, jobfile))
        group = cls(procs)
        readies = await asyncio.wait_for(
            asyncio.gather(*(p.read() for p in procs)), connect_seconds + 60
        )
        failed = sum(r["failed"] for r in readies)
        if failed:
            run.log(
                f"riders: {failed} {role} connection(s) failed: "
                f"{[e for r in readies for e in r['errors']][:3]}"
            )
        return group

    async def ask(self, command: str) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(p.ask(command) for p in self.procs)))

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.procs))


async def health(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/healthz") as response:
        body: dict[str, Any] = await response.json()
        return body


async def table_writes(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        value = await conn.fetchval(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd), 0) FROM pg_stat_user_tables"
            " WHERE schemaname = 'tiffin_rt' AND relname IN ('rider_positions', 'rider_trail')"
        )
        return int(value)
    finally:
        await conn.close()


def to_ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


async def measure(
    server: run.Server, dsn: str, opts: run.Options, riders: int, seconds: float
) -> dict[str, Any]:
    orders = [str(i) for i in range(1, riders + 1)]
    watch = [(mint_token(run.AUTH, sub=f"c{o}", role="customer", ttl=7200), o) for o in orders]
    ride = [(mint_token(run.AUTH, sub=f"r{o}", role="rider", ttl=7200), o) for o in orders]
    half = max(1, opts.client_processes // 2)
    watchers = await Group.start(
        server.url, "watcher", watch, half, opts.workdir, opts.connect_seconds
    )
    try:
        senders = await Group.start(
            server.url, "rider", ride, half, opts.workdir, opts.connect_seconds
        )
        try:
            run.log(
                f"riders: {riders} riders and {riders} watchers connected; sending for "
                f"{seconds:g} s"
            )
            load_before = os.getloadavg()[0]
            before = await health(server.url)
            cpu0, writes0, t0 = (
                run.cpu_seconds(server.pid),
                await table_writes(dsn),
                time.monotonic(),
            )
            sent = await senders.ask(f"go {seconds}")
            elapsed = time.monotonic() - t0
            cpu1, writes1 = run.cpu_seconds(server.pid), await table_writes(dsn)
            load_after = os.getloadavg()[0]
            # what is still in flight arrives within a second or two
            await asyncio.sleep(2.0)
            after = await health(server.url)
            seen = await watchers.ask("report")
        finally:
            await senders.stop()
    finally:
        await watchers.stop()
    accepted = after["tracking"]["accepted"] - before["tracking"]["accepted"]
    delivered = after["tracking"]["socketio"]["sent"] - before["tracking"]["socketio"]["sent"]
    sends: dict[tuple[str, int], float] = {}
    for part in sent:
        for order, ms, at in part["sends"]:
            sends[(order, ms)] = at
    received: Counter[tuple[str, int]] = Counter()
    latencies: list[float] = []
    for part in seen:
        for order, iso, at in part["samples"]:
            key = (order, to_ms(iso))
            received[key] += 1
            if key in sends and received[key] == 1:
                latencies.append((at - sends[key]) * 1000)
    latencies.sort()
    acks = sorted(a * 1000 for part in sent for a in part["acks"])
    refused: Counter[str] = Counter()
    for part in sent:
        refused.update(part["refused"])
    lost = sum(1 for key in sends if key not in received)
    duplicated = sum(n - 1 for n in received.values() if n > 1)
    ok = sum(p["ok"] for p in sent)
    cpu = cpu1 - cpu0
    return {
        "riders": riders,
        "seconds": round(elapsed, 1),
        "updates_sent": sum(p["sent"] for p in sent),
        "ticks_skipped": sum(p["skipped"] for p in sent),
        "updates_accepted": ok,
        "updates_per_second": round(ok / elapsed, 1),
        "refused": dict(refused),
        "server_accepted": accepted,
        "deliveries": delivered,
        "cpu_seconds": round(cpu, 2),
        "cpu_us_per_update": round(cpu / max(1, accepted) * 1e6, 1),
        "cpu_us_per_delivery": round(cpu / max(1, delivered) * 1e6, 1),
        "cpu_share": round(cpu / elapsed, 2),
        "e2e_p50_ms": round(run.percentile(latencies, 50), 2) if latencies else None,
        "e2e_p99_ms": round(run.percentile(latencies, 99), 2) if latencies else None,
        "e2e_max_ms": round(max(latencies), 1) if latencies else None,
        "ack_p50_ms": round(run.percentile(acks, 50), 2) if acks else None,
        "ack_p99_ms": round(run.percentile(acks, 99), 2) if acks else None,
        "load_average": [round(load_before, 1), round(load_after, 1)],
        "lost": lost,
        "duplicated": duplicated,
        "db_rows_written_per_second": round((writes1 - writes0) / elapsed, 1),
        "db_rows_written": writes1 - writes0,
        "superseded": after["tracking"]["socketio"]["superseded"]
        - before["tracking"]["socketio"]["superseded"],
    }


async def scenario(
    database: run.Database, opts: run.Options, riders: int, seconds: float
) -> dict[str, Any]:
    dbname = f"tiffin_rt_bench_riders_{os.getpid()}"
    dsn = await database.fresh(dbname, peer=False, orders=riders)
    try:
        await prepare(dsn, riders)
        run.log("riders: starting tiffin_rt")
        server = await start_server(dsn, opts, opts.workdir / "riders-tiffin.log")
        try:
            return await measure(server, dsn, opts, riders, seconds)
        finally:
            run.stop_server(server)
    except Exception as exc:
        run.log(f"riders failed: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        await database.drop(dbname)


def render(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"riders: failed: {result['error']}"
    r = result
    rows = [
        (
            "riders sending one position a second (and as many customers watching)",
            f"{r['riders']:,}",
        ),
        (
            "positions accepted / sent (refused)",
            f"{r['updates_accepted']:,} / {r['updates_sent']:,} ({r['refused'] or 'none'});"
            f" {r['ticks_skipped']:,} ticks skipped behind a late ack",
        ),
        ("positions accepted per second", f"{r['updates_per_second']:,}"),
        ("riderLocation deliveries", f"{r['deliveries']:,}"),
        ("server CPU per accepted position (µs)", f"{r['cpu_us_per_update']}"),
        (
            "server CPU per delivery (µs, all of the CPU over deliveries)",
            f"{r['cpu_us_per_delivery']}",
        ),
        ("server CPU used (of one core)", f"{r['cpu_share']:.0%}"),
        (
            "end to end, rider's emit to customer's receipt, p50 / p99 / max (ms)",
            f"{r['e2e_p50_ms']} / {r['e2e_p99_ms']} / {r['e2e_max_ms']}",
        ),
        (
            "the rider's ack (emit to acknowledgement), p50 / p99 (ms)",
            f"{r['ack_p50_ms']} / {r['ack_p99_ms']}",
        ),
        ("lost / duplicated", f"{r['lost']} / {r['duplicated']}"),
        (
            "database rows written per second (tiffin_rt.rider_positions)",
            f"{r['db_rows_written_per_second']}",
        ),
        ("superseded for slow clients", f"{r['superseded']}"),
        ("load average (1 min) at the start / end", " / ".join(map(str, r["load_average"]))),
    ]
    width = max(len(a) for a, _ in rows)
    lines = [f"| {'riders scenario'.ljust(width)} | tiffin_rt |", f"|{'-' * (width + 2)}|---|"]
    lines += [f"| {a.ljust(width)} | {b} |" for a, b in rows]
    return "\n".join(lines)
