"""The kitchen queue's read: what one coalesced read of the touched vendors' queues costs.

A database of its own (dropped afterwards) gets the schema and triggers, `--vendors` vendors
with `--open` open orders each, and `--history` finished orders per vendor, each taken
through pending -> confirmed -> preparing -> ready -> delivered by UPDATEs (so the log holds
their events, as a real backend's would). Then the read `KitchenQueries.read` runs
`--repeat` times for 1, 10 and 100 touched vendors (one query each time), the queues alone
(what most reads are: the averages are kept until an order becomes ready) and with every
vendor's averages, with and without a partial index on the vendor column: wall time per read
(p50 / p99), the PostgreSQL backend's CPU per read (from /proc), and this process's CPU per
read, of which building the queues and their payloads (build_queue, kitchen_queue_message).

  python -m bench.kitchen_queue [--vendors 200] [--open 10] [--history 50] [--repeat 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time

import asyncpg

from tiffin_rt.config import KitchenSettings, OrdersSettings
from tiffin_rt.core.kitchen import Averages, build_queue, kitchen_queue_message
from tiffin_rt.db import migrate
from tiffin_rt.db.kitchen import KitchenQueries

DSN = os.environ.get("BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
FLOW = ("confirmed", "preparing", "ready", "delivered")
OPEN = ("pending", "confirmed", "preparing", "ready")


def _cpu_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _dsn_for(name: str) -> str:
    base, _, _ = DSN.rpartition("/")
    return f"{base}/{name}"


async def _fill(conn: asyncpg.Connection, vendors: int, open_orders: int, history: int) -> None:
    names = [f"v{n:04d}" for n in range(vendors)]
    await conn.execute(
        "INSERT INTO orders (user_id, vendor_id, status)"
        " SELECT 'u' || g, v, 'pending' FROM unnest($1::text[]) v, generate_series(1, $2) g",
        names,
        history,
    )
    for status in FLOW:  # every finished order through the whole flow: its events in the log
        await conn.execute("UPDATE orders SET status = $1", status)
    await conn.execute(
        "INSERT INTO orders (user_id, vendor_id, status)"
        " SELECT 'u' || g, v, ($3::text[])[1 + g % 4]"
        " FROM unnest($1::text[]) v, generate_series(1, $2) g",
        names,
        open_orders,
        list(OPEN),
    )
    await conn.execute("ANALYZE")


async def _measure(
    dsn: str, queries: KitchenQueries, vendors: int, touched: int, repeat: int, averages: bool
) -> dict[str, float]:
    conn = await asyncpg.connect(dsn)
    try:
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        names = [f"v{n:04d}" for n in range(vendors)]
        walls: list[float] = []
        pg_before, py_before = _cpu_of(backend), time.process_time()
        build_cpu = 0.0
        for _ in range(repeat):
            wanted = random.sample(names, touched)
            started = time.perf_counter()
            rows = await queries.read(conn, wanted, wanted if averages else [])
            walls.append((time.perf_counter() - started) * 1000)
            building = time.process_time()
            for row in rows:
                kept = row.averages or Averages(None, None, 0)  # the caller's, when not read
                kitchen_queue_message(build_queue(row.vendor_id, row.orders, kept, now=row.at))
            build_cpu += time.process_time() - building
        pg_cpu, py_cpu = _cpu_of(backend) - pg_before, time.process_time() - py_before
    finally:
        await conn.close()
    walls.sort()
    return {
        "p50": statistics.median(walls),
        "p99": walls[min(len(walls) - 1, int(len(walls) * 0.99))],
        "pg_ms": pg_cpu * 1000 / repeat,
        "py_ms": py_cpu * 1000 / repeat,
        "build_ms": build_cpu * 1000 / repeat,
    }


async def run(args: argparse.Namespace) -> None:
    name = f"bench_kitchen_{os.getpid()}"
    admin = await asyncpg.connect(DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = _dsn_for(name)
    try:
        conn = await asyncpg.connect(dsn)
        orders = OrdersSettings()
        try:
            await migrate.upgrade(conn, orders)
            started = time.perf_counter()
            await _fill(conn, args.vendors, args.open, args.history)
            events = await conn.fetchval("SELECT count(*) FROM tiffin_rt.events")
            total = await conn.fetchval("SELECT count(*) FROM orders")
            print(
                f"{args.vendors} vendors, {total} orders ({args.open} open per vendor),"
                f" {events} events in the log; filled in {time.perf_counter() - started:.1f} s"
            )
            queries = KitchenQueries(orders, KitchenSettings())
            print(
                "| vendor index | touched vendors per read | averages read | wall p50 / p99 (ms) |"
                " PostgreSQL CPU per read (ms) | tiffin_rt CPU per read (ms) |"
                " of which building the queues (ms) |"
            )
            print("|---|---|---|---|---|---|---|")
            for indexed in (False, True):
                if indexed:
                    await conn.execute(
                        "CREATE INDEX orders_open_by_vendor ON orders (vendor_id)"
                        " WHERE status IN ('pending', 'confirmed', 'preparing', 'ready')"
                    )
                    await conn.execute("ANALYZE orders")
                for touched, averages in [(t, a) for t in (1, 10, 100) for a in (False, True)]:
                    if touched > args.vendors:
                        continue
                    f = await _measure(dsn, queries, args.vendors, touched, args.repeat, averages)
                    print(
                        f"| {'yes' if indexed else 'no'} | {touched} |"
                        f" {'yes' if averages else 'no'} |"
                        f" {f['p50']:.2f} / {f['p99']:.2f} | {f['pg_ms']:.2f} |"
                        f" {f['py_ms']:.2f} | {f['build_ms']:.2f} |"
                    )
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vendors", type=int, default=200)
    parser.add_argument("--open", type=int, default=10)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=50)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
