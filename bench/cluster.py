"""`make bench` scenario `cluster`: 2 and 3 `tiffin-rt serve` nodes behind Debian's nginx.

nginx runs docs/nginx.conf (ports substituted, as tests/test_nginx.py does). Each node's
clients come from one source address that nginx's hash sends to it, so every node carries an
even share. Two measurements for each node count, on a fresh database:

- fan-out: every client (WebSocket through nginx) is in one order room on its node; a burst of
  notifications is committed; delivered events per second for the cluster, and server CPU per
  delivered event on each node (its CPU time over the events its own clients received);
  nginx's CPU per delivered event too, since every byte crosses it.
- end-to-end: Socket.IO and SSE clients spread over the nodes, status UPDATEs at a fixed rate;
  commit-to-client latency per node and overall, lost and duplicated.

  python -m bench.run --scenario cluster [--cluster-nodes 2,3] ...
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from bench import run
from tests.nginx_front import main_config, nginx_program, site_config

CLUSTER_SIZES = (2, 3)


@dataclass
class Node:
    url: str
    port: int
    process: subprocess.Popen[bytes]


@dataclass
class Front:
    url: str
    access_log: Path
    process: subprocess.Popen[bytes]

    def worker_pids(self) -> list[int]:
        """nginx's worker processes (the master only forks and waits)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def cpu_seconds(self) -> float:
        return sum(run.cpu_seconds(pid) for pid in self.worker_pids())


async def start_node(dsn: str, opts: run.Options, logfile: Path) -> Node:
    port = run.free_port()
    env = dict(os.environ)
    env.update(
        TIFFIN_RT__DATABASE__DSN=dsn,
        TIFFIN_RT__AUTH__JWT_SECRET=run.SECRET,
        TIFFIN_RT__DELIVERY__PING_INTERVAL=str(opts.ping_interval),
        TIFFIN_RT__DELIVERY__PING_TIMEOUT=str(opts.ping_interval),
    )
    config = run.BENCH / "tiffin-bench.yaml"
    argv = [run.PYTHON, "-m", "tiffin_rt", "serve", "--config", str(config), "--port", str(port)]
    process = run.spawn(argv, env, logfile)
    node = Node(f"http://127.0.0.1:{port}", port, process)
    await wait_ok(f"{node.url}/readyz", process, logfile)
    return node


async def wait_ok(url: str, process: subprocess.Popen[bytes], logfile: Path) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{url}: the process exited; see {logfile}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within 60 s")


@contextlib.asynccontextmanager
async def cluster(
    size: int, dsn: str, opts: run.Options
) -> AsyncIterator[tuple[list[Node], Front]]:
    nodes: list[Node] = []
    front: Front | None = None
    with tempfile.TemporaryDirectory(prefix="tiffin-bench-nginx-") as tmp:
        prefix = Path(tmp)
        os.chmod(prefix, 0o755)  # nginx's workers run as nobody under root
        try:
            for index in range(size):
                nodes.append(await start_node(dsn, opts, opts.workdir / f"cluster-node{index}.log"))
            port = run.free_port()
            access_log = prefix / "access.log"
            site = prefix / "tiffin_rt.conf"
            site.write_text(site_config([n.port for n in nodes], port, access_log))
            # two connections per client (its own and its node's), for the larger scenario
            clients = max(opts.fanout_clients, opts.e2e_sio + opts.e2e_sse)
            (prefix / "nginx.conf").write_text(main_config(prefix, site, 2 * clients + 1024))
            argv = [nginx_program(), "-p", str(prefix), "-c", str(prefix / "nginx.conf")]
            argv += ["-e", str(prefix / "error.log")]
            process = run.spawn(argv, dict(os.environ), opts.workdir / "cluster-nginx.log")
            front = Front(f"http://127.0.0.1:{port}", access_log, process)
            await wait_ok(f"{front.url}/healthz", process, prefix / "error.log")
            yield nodes, front
        finally:
            if front is not None:
                front.process.send_signal(signal.SIGQUIT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    front.process.wait(10)
                if front.process.poll() is None:
                    front.process.kill()
            for node in nodes:
                run.stop_server(run.Server("tiffin", node.url, node.process))


async def addresses_per_node(front: Front, nodes: list[Node]) -> dict[int, str]:
    """One client source address (127.0.0.N) that nginx sends to each node."""
    found: dict[int, str] = {}
    for last in range(2, 250):
        if len(found) == len(nodes):
            return found
        address = f"127.0.0.{last}"
        connector = aiohttp.TCPConnector(local_addr=(address, 0))
        async with (
            aiohttp.ClientSession(connector=connector) as http,
            http.get(f"{front.url}/healthz") as response,
        ):
            await response.read()
        port = await upstream_of(front, address)
        found.setdefault(port, address)
    raise RuntimeError(f"nginx sent 248 addresses to {len(found)} of {len(nodes)} nodes")


async def upstream_of(front: Front, address: str) -> int:
    for _ in range(200):
        for line in reversed(front.access_log.read_text().splitlines()):
            if line.startswith(f"{address} ") and "upstream=" in line:
                return int(line.rsplit(":", 1)[1])
        await asyncio.sleep(0.01)
    raise RuntimeError(f"no access log line for {address}")


async def start_clients(
    url: str,
    groups: Sequence[tuple[str, list[Any], list[Any]]],
    *,
    expect: int = 0,
    record: bool = False,
    opts: run.Options,
) -> run.Clients:
    """One load-client process per (source address, sio, sse) group."""
    procs = []
    for index, (address, sio, sse) in enumerate(groups):
        job = {
            "url": url,
            "namespace": "/notifications",
            "sio": sio,
            "sse": sse,
            "expect": expect,
            "record": record,
            "connect_concurrency": 32,
            "connect_seconds": opts.connect_seconds,
            "local_addr": address,
        }
        jobfile = opts.workdir / f"cluster-client-{index}-{time.monotonic_ns()}.json"
        jobfile.write_bytes(orjson.dumps(job))
        process = await asyncio.create_subprocess_exec(
            run.PYTHON,
            str(run.BENCH / "loadclient.py"),
            str(jobfile),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 28,
        )
        procs.append(run.ClientProcess(process, jobfile))
    readies = await asyncio.wait_for(
        asyncio.gather(*(p.read() for p in procs)), opts.connect_seconds + 60
    )
    failed = sum(r["failed"] for r in readies)
    if failed:
        run.log(f"{failed} connection(s) failed: {[e for r in readies for e in r['errors']][:3]}")
    return run.Clients(procs)


async def fanout(size: int, dsn: str, opts: run.Options) -> dict[str, Any]:
    events = opts.fanout_events
    per_node = opts.fanout_clients // size
    room = f"order-{run.FANOUT_ORDER}"
    async with cluster(size, dsn, opts) as (nodes, front):
        addresses = await addresses_per_node(front, nodes)
        groups = [
            (addresses[node.port], [(t, room) for t in run.tokens(["fan"] * per_node)], [])
            for node in nodes
        ]
        group = await start_clients(front.url, groups, expect=events, opts=opts)
        try:
            connected = [(await p.ask("stats"))["open"] for p in group.procs]
            await asyncio.sleep(1.0)
            cpu0 = [run.cpu_seconds(node.process.pid) for node in nodes]
            nginx0 = front.cpu_seconds()
            started = time.monotonic()
            await trigger(dsn, room, events)
            target = sum(connected) * events
            last: dict[str, int] = {}

            async def all_delivered() -> bool:
                nonlocal last
                last = await group.stats()
                return last["received"] >= target

            await run.wait_until(all_delivered, 120)
            wall = time.monotonic() - started
            cpu1 = [run.cpu_seconds(node.process.pid) for node in nodes]
            nginx1 = front.cpu_seconds()
            received = [(await p.ask("stats"))["received"] for p in group.procs]
        finally:
            await group.stop()
    delivered = sum(received)
    return {
        "nodes": size,
        "connected": sum(connected),
        "delivered": delivered,
        "expected": size * per_node * events,
        "wall_s": wall,
        "events_per_s": delivered / wall,
        "cpu_us_per_event": [
            (c1 - c0) * 1e6 / max(1, got) for c0, c1, got in zip(cpu0, cpu1, received, strict=True)
        ],
        "nginx_cpu_us_per_event": (nginx1 - nginx0) * 1e6 / max(1, delivered),
    }


async def trigger(dsn: str, room: str, count: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """SELECT tiffin_rt.notify_room($1, 'bench', 'Kitchen update', 'event ' || i,
                                            jsonb_build_object('seq', i))
               FROM generate_series(1, $2) i""",
            room,
            count,
        )
    finally:
        await conn.close()


async def end_to_end(size: int, dsn: str, opts: run.Options) -> dict[str, Any]:
    n_sio, n_sse = opts.e2e_sio, opts.e2e_sse
    total_orders = n_sio + n_sse
    count = int(opts.e2e_rate * opts.e2e_seconds)
    sent = [0.0] * count
    async with cluster(size, dsn, opts) as (nodes, front):
        addresses = await addresses_per_node(front, nodes)
        sio_ids = list(range(1, n_sio + 1))
        sse_ids = list(range(n_sio + 1, total_orders + 1))
        groups = []
        for index, node in enumerate(nodes):
            mine_sio, mine_sse = sio_ids[index::size], sse_ids[index::size]
            groups.append(
                (
                    addresses[node.port],
                    list(
                        zip(
                            run.tokens([f"c{i}" for i in mine_sio]),
                            [f"order-{i}" for i in mine_sio],
                            strict=True,
                        )
                    ),
                    list(
                        zip(
                            run.tokens([f"c{i}" for i in mine_sse]),
                            [str(i) for i in mine_sse],
                            strict=True,
                        )
                    ),
                )
            )
        group = await start_clients(front.url, groups, record=True, opts=opts)
        try:
            connected = (await group.stats())["open"]
            await asyncio.sleep(1.0)
            writer = await asyncpg.connect(dsn)
            try:
                update = await writer.prepare("UPDATE orders SET status = $1 WHERE id = $2")
                start = time.monotonic() + 0.05
                for seq in range(count):
                    delay = start + seq / opts.e2e_rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    sent[seq] = time.time()
                    await update.fetch(f"s{seq}", 1 + seq % total_orders)
            finally:
                await writer.close()
            baseline = -1

            async def settled() -> bool:
                nonlocal baseline
                now = (await group.stats())["received"]
                done, baseline = now == baseline, now
                return done

            await asyncio.sleep(0.5)
            await run.wait_until(settled, 10, step=0.5)
            reports = await group.report()
        finally:
            await group.stop()
    hits = [0] * count
    per_node: list[list[float]] = []
    everyone: list[float] = []
    for report in reports:
        latencies = []
        for status, received_at, *_kind in report["samples"]:
            if not status.startswith("s"):
                continue  # the SSE snapshot of the current status
            seq = int(status[1:])
            hits[seq] += 1
            latencies.append((received_at - sent[seq]) * 1000)
        latencies.sort()
        per_node.append(latencies)
        everyone.extend(latencies)
    everyone.sort()
    return {
        "nodes": size,
        "connected": connected,
        "updates": count,
        "p50_ms": run.percentile(everyone, 50),
        "p99_ms": run.percentile(everyone, 99),
        "max_ms": everyone[-1] if everyone else float("nan"),
        "mean_ms": statistics.fmean(everyone) if everyone else float("nan"),
        "p99_ms_per_node": [run.percentile(values, 99) for values in per_node],
        "lost": sum(1 for h in hits if h == 0),
        "duplicated": sum(h - 1 for h in hits if h > 1),
    }


async def scenario(
    database: run.Database, opts: run.Options, sizes: Sequence[int]
) -> dict[str, Any]:
    """Every cluster size, fan-out then end-to-end, each on a fresh database."""
    results: dict[str, Any] = {}
    orders = opts.e2e_sio + opts.e2e_sse
    for size in sizes:
        for name, measure in (("fanout", fanout), ("e2e", end_to_end)):
            # A name of this run's own, dropped afterwards (as run.py does for its servers).
            dbname = f"tiffin_rt_bench_cluster{size}_{os.getpid()}"
            dsn = await database.fresh(dbname, peer=False, orders=orders)
            run.log(f"cluster: {name} on {size} nodes behind nginx")
            try:
                result = await measure(size, dsn, opts)
            except Exception as exc:
                run.log(f"cluster: {name} on {size} nodes failed: {type(exc).__name__}: {exc}")
                result = {"error": f"{type(exc).__name__}: {exc}"}
            finally:
                await database.drop(dbname)
            run.log(f"  {orjson.dumps(result).decode()}")
            results[f"{name}-{size}"] = result
    return results


def render(results: dict[str, Any]) -> str:
    lines = [
        "| nodes behind nginx | delivered events/s (burst) | server CPU per delivery, each"
        " node (us) | nginx CPU per delivery (us) | end-to-end p50 / p99 / max (ms) |"
        " p99 per node (ms) | lost / duplicated |",
        "|---|---|---|---|---|---|---|",
    ]
    sizes = sorted({int(key.split("-")[1]) for key in results})
    for size in sizes:
        fan = results.get(f"fanout-{size}", {})
        e2e = results.get(f"e2e-{size}", {})
        cpu = " / ".join(f"{v:.1f}" for v in fan.get("cpu_us_per_event", []))
        per_node = " / ".join(f"{v:.1f}" for v in e2e.get("p99_ms_per_node", []))
        lines.append(
            f"| {size} | {fan.get('events_per_s', float('nan')):,.0f}"
            f" ({fan.get('delivered', 0):,} of {fan.get('expected', 0):,}) | {cpu} |"
            f" {fan.get('nginx_cpu_us_per_event', float('nan')):.1f} |"
            f" {e2e.get('p50_ms', float('nan')):.2f} / {e2e.get('p99_ms', float('nan')):.2f} /"
            f" {e2e.get('max_ms', float('nan')):.1f} | {per_node} |"
            f" {e2e.get('lost', '-')} / {e2e.get('duplicated', '-')} |"
        )
    return "\n".join(lines)
