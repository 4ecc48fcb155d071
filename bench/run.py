"""`make bench`: tiffin_rt against stock python-socketio and Node socket.io, in one run.

Starts each server and the load clients (bench/loadclient.py) as separate processes on
127.0.0.1, reads the server's CPU time and memory from /proc/<pid>, and prints one table.

  python -m bench.run [--scenario fanout|e2e|idle|all] [--servers tiffin,pysio,node] ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import uvloop

from tiffin_rt.auth import mint_token
from tiffin_rt.config import AuthSettings

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PYTHON = sys.executable
SECRET = "bench-secret-that-is-long-enough-for-hs256-0123456789"
AUTH = AuthSettings(jwt_secret=SECRET)
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVERS = ("tiffin", "pysio", "node")
LABELS = {"tiffin": "tiffin_rt", "pysio": "python-socketio", "node": "node socket.io"}
FANOUT_ORDER = 900000


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- /proc readings


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process, from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# ---------------------------------------------------------------- database


@dataclass
class Database:
    admin_dsn: str
    embedded: Any = None

    @classmethod
    async def find(cls, dsn: str | None) -> Database:
        candidate = dsn or "postgresql://postgres@127.0.0.1:5432/postgres"
        try:
            conn = await asyncpg.connect(candidate, timeout=3)
            await conn.close()
            return cls(candidate)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            if dsn:
                raise
        from tiffin_rt.db.embedded import EmbeddedPostgres

        log("no PostgreSQL on 127.0.0.1:5432; starting the embedded one")
        embedded = EmbeddedPostgres(data_dir=ROOT / ".tiffin" / "bench-pg")
        url = await asyncio.to_thread(embedded.start)
        return cls(url, embedded)

    def url(self, name: str) -> str:
        base, _, _ = self.admin_dsn.rpartition("/")
        return f"{base}/{name}"

    async def fresh(self, name: str, *, peer: bool, orders: int) -> str:
        """A new database with an orders table; peers get a trigger that NOTIFYs JSON."""
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        conn = await asyncpg.connect(self.url(name))
        try:
            await conn.execute(
                """CREATE TABLE orders (
                       id bigint PRIMARY KEY, user_id text NOT NULL, vendor_id text,
                       rider_id text, status text NOT NULL DEFAULT 'pending')"""
            )
            await conn.execute(
                "INSERT INTO orders (id, user_id) SELECT i, 'c' || i FROM generate_series(1, $1) i",
                orders,
            )
            await conn.execute("INSERT INTO orders (id, user_id) VALUES ($1, 'fan')", FANOUT_ORDER)
            if peer:
                await conn.execute(
                    """CREATE FUNCTION notify_order_status() RETURNS trigger LANGUAGE plpgsql AS $$
                       BEGIN
                         PERFORM pg_notify('order_status', json_build_object(
                           'orderId', NEW.id::text, 'status', NEW.status,
                           'previousStatus', OLD.status,
                           'timestamp', to_char(clock_timestamp() AT TIME ZONE 'UTC',
                                                'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))::text);
                         RETURN NULL;
                       END $$;
                       CREATE TRIGGER orders_notify AFTER UPDATE OF status ON orders
                       FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
                       EXECUTE FUNCTION notify_order_status();"""
                )
        finally:
            await conn.close()
        return self.url(name)

    def stop(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()


# ---------------------------------------------------------------- servers


@dataclass
class Server:
    kind: str
    url: str
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid


async def start_server(kind: str, dsn: str, ping_interval: float, logdir: Path) -> Server:
    port = free_port()
    env = dict(os.environ)
    if kind == "tiffin":
        env.update(
            TIFFIN_RT__DATABASE__DSN=dsn,
            TIFFIN_RT__AUTH__JWT_SECRET=SECRET,
            TIFFIN_RT__DELIVERY__PING_INTERVAL=str(ping_interval),
            TIFFIN_RT__DELIVERY__PING_TIMEOUT=str(ping_interval),
        )
        argv = [
            PYTHON,
            "-m",
            "tiffin_rt",
            "serve",
            "--config",
            str(BENCH / "tiffin-bench.yaml"),
            "--port",
            str(port),
        ]
    elif kind == "pysio":
        argv = [PYTHON, str(BENCH / "peer_pysio.py"), str(port), dsn, str(ping_interval)]
    else:
        argv = ["node", str(BENCH / "peer_node.js"), str(port), dsn, str(ping_interval)]
    process = spawn(argv, env, logdir / f"{kind}.log")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{kind} server exited; see {logdir / (kind + '.log')}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                path = "/readyz" if kind == "tiffin" else "/healthz"
                async with session.get(url + path) as response:
                    if response.status == 200:
                        break
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"{kind} server did not become ready")
            await asyncio.sleep(0.1)
    return Server(kind, url, process)


def spawn(argv: list[str], env: dict[str, str], logfile: Path) -> subprocess.Popen[bytes]:
    with logfile.open("wb") as errlog:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=errlog, stderr=errlog)


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


# ---------------------------------------------------------------- load clients


class ClientProcess:
    def __init__(self, process: asyncio.subprocess.Process, jobfile: Path) -> None:
        self.process = process
        self.jobfile = jobfile

    async def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        if not line:
            raise RuntimeError("a load client exited early")
        result: dict[str, Any] = orjson.loads(line)
        return result

    async def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()
        return await self.read()

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            assert self.process.stdin is not None
            self.process.stdin.write(b"quit\n")
            await self.process.stdin.drain()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        self.jobfile.unlink(missing_ok=True)


class Clients:
    """A group of load-client processes; their connections are split evenly."""

    def __init__(self, procs: list[ClientProcess]) -> None:
        self.procs = procs

    @classmethod
    async def start(
        cls,
        url: str,
        *,
        processes: int,
        sio: Sequence[tuple[str, str | None]] = (),
        sse: Sequence[tuple[str, str]] = (),
        expect: int = 0,
        record: bool = False,
        connect_seconds: float = 240.0,
        workdir: Path,
    ) -> Clients:
        procs = []
        for index in range(processes):
            job = {
                "url": url,
                "namespace": "/notifications",
                "sio": list(sio[index::processes]),
                "sse": list(sse[index::processes]),
                "expect": expect,
                "record": record,
                "connect_concurrency": 32,
                "connect_seconds": connect_seconds,
            }
            jobfile = workdir / f"client-{index}-{time.monotonic_ns()}.json"
            jobfile.write_bytes(orjson.dumps(job))
            process = await asyncio.create_subprocess_exec(
                PYTHON,
                str(BENCH / "loadclient.py"),
                str(jobfile),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=1 << 28,
            )
            procs.append(ClientProcess(process, jobfile))
        clients = cls(procs)
        readies = await asyncio.wait_for(
            asyncio.gather(*(p.read() for p in procs)), connect_seconds + 60
        )
        failed = sum(r["failed"] for r in readies)
        if failed:
            errors = [e for r in readies for e in r["errors"]]
            log(f"{failed} connection(s) failed: {errors[:3]}")
        return clients

    async def stats(self) -> dict[str, int]:
        replies = await asyncio.gather(*(p.ask("stats") for p in self.procs))
        return {k: sum(r[k] for r in replies) for k in ("received", "open", "complete")}

    async def report(self) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(p.ask("report") for p in self.procs)))

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.procs))


@contextlib.asynccontextmanager
async def clients(url: str, **kwargs: Any) -> AsyncIterator[Clients]:
    group = await Clients.start(url, **kwargs)
    try:
        yield group
    finally:
        await group.stop()


def tokens(subs: Sequence[str]) -> list[str]:
    return [mint_token(AUTH, sub=s, role="customer", ttl=7200) for s in subs]


# ---------------------------------------------------------------- scenarios


@dataclass
class Options:
    """What the scenarios run with; the defaults are the command line's (see main)."""

    fanout_clients: int
    fanout_events: int
    e2e_sio: int
    e2e_sse: int
    e2e_rate: float
    e2e_seconds: float
    idle_connections: int
    ping_interval: float
    connect_seconds: float
    client_processes: int
    workdir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))


async def wait_until(check: Callable[[], Any], within: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(step)
    return False


async def trigger_burst(server: Server, dsn: str, count: int) -> None:
    room = f"order-{FANOUT_ORDER}"
    if server.kind == "tiffin":
        # Through the real path: SQL function -> event log -> listener -> sink.
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
    else:
        async with aiohttp.ClientSession() as session:
            await session.post(f"{server.url}/bench/burst", params={"room": room, "n": count})


async def fanout(server: Server, dsn: str, opts: Options) -> dict[str, Any]:
    n, events = opts.fanout_clients, opts.fanout_events
    sio = [(t, f"order-{FANOUT_ORDER}") for t in tokens(["fan"] * n)]
    async with clients(
        server.url,
        processes=opts.client_processes,
        sio=sio,
        expect=events,
        workdir=opts.workdir,
    ) as group:
        connected = (await group.stats())["open"]
        await asyncio.sleep(1.0)
        cpu0 = cpu_seconds(server.pid)
        started = time.monotonic()
        await trigger_burst(server, dsn, events)
        target = connected * events
        last: dict[str, int] = {}

        async def all_delivered() -> bool:
            nonlocal last
            last = await group.stats()
            return last["received"] >= target

        await wait_until(all_delivered, 120)
        cpu1 = cpu_seconds(server.pid)
        wall = time.monotonic() - started
        await asyncio.sleep(0.5)
        final = await group.stats()
    delivered = final["received"]
    return {
        "connected": connected,
        "delivered": delivered,
        "expected": n * events,
        "cpu_s": cpu1 - cpu0,
        "cpu_us_per_event": (cpu1 - cpu0) * 1e6 / max(1, last["received"]),
        "wall_s": wall,
    }


async def end_to_end(server: Server, dsn: str, opts: Options) -> dict[str, Any]:
    n_sio, n_sse = opts.e2e_sio, opts.e2e_sse
    sio_ids = range(1, n_sio + 1)
    sse_ids = range(n_sio + 1, n_sio + n_sse + 1)
    sio = list(
        zip(tokens([f"c{i}" for i in sio_ids]), [f"order-{i}" for i in sio_ids], strict=True)
    )
    sse = list(zip(tokens([f"c{i}" for i in sse_ids]), [str(i) for i in sse_ids], strict=True))
    total_orders = n_sio + n_sse
    count = int(opts.e2e_rate * opts.e2e_seconds)
    sent = [0.0] * count
    commits: list[float] = []  # the writer's own UPDATE round trips: the database's share
    async with clients(
        server.url,
        processes=opts.client_processes,
        sio=sio,
        sse=sse,
        record=True,
        workdir=opts.workdir,
    ) as group:
        connected = (await group.stats())["open"]
        await asyncio.sleep(1.0)
        cpu0 = cpu_seconds(server.pid)
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
                commits.append((time.time() - sent[seq]) * 1000)
            writer_lag = time.monotonic() - (start + count / opts.e2e_rate)
        finally:
            await writer.close()
        snapshot = await group.stats()
        baseline = snapshot["received"] - 0

        async def settled() -> bool:
            nonlocal baseline
            now = (await group.stats())["received"]
            done = now == baseline
            baseline = now
            return done

        await asyncio.sleep(0.5)
        await wait_until(settled, 10, step=0.5)
        cpu1 = cpu_seconds(server.pid)
        reports = await group.report()
    hits = [0] * count
    latencies: list[float] = []
    for report in reports:
        for status, received_at in report["samples"]:
            if not status.startswith("s"):
                continue  # the SSE snapshot of the current status
            seq = int(status[1:])
            hits[seq] += 1
            if hits[seq] == 1:
                latencies.append((received_at - sent[seq]) * 1000)
    latencies.sort()
    commits.sort()
    lost = sum(1 for h in hits if h == 0)
    duplicated = sum(h - 1 for h in hits if h > 1)
    return {
        "connected": connected,
        "updates": count,
        "writer_lag_s": round(writer_lag, 3),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": latencies[-1] if latencies else float("nan"),
        "mean_ms": statistics.fmean(latencies) if latencies else float("nan"),
        "lost": lost,
        "duplicated": duplicated,
        "commit_p99_ms": percentile(commits, 99),
        "commit_max_ms": commits[-1] if commits else float("nan"),
        "cpu_s": cpu1 - cpu0,
    }


def percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(pct / 100 * len(values) + 0.5) - 1))
    return values[index]


async def idle(server: Server, dsn: str, opts: Options) -> dict[str, Any]:
    n = opts.idle_connections
    processes = max(opts.client_processes, (n + 3999) // 4000)
    warm = [(t, None) for t in tokens([f"warm{i}" for i in range(100)])]
    async with clients(server.url, processes=1, sio=warm, workdir=opts.workdir) as warmers:
        await asyncio.sleep(1.0)
        rss0 = rss_bytes(server.pid)
        sio = [(t, None) for t in tokens([f"idle{i}" for i in range(n)])]
        started = time.monotonic()
        async with clients(
            server.url,
            processes=processes,
            sio=sio,
            connect_seconds=opts.connect_seconds,
            workdir=opts.workdir,
        ) as group:
            connect_s = time.monotonic() - started
            opened = (await group.stats())["open"]
            await asyncio.sleep(2.0)
            rss1 = rss_bytes(server.pid)
            # Two ping rounds, and one ping timeout more: a server that misses a pong has
            # dropped the connection by then.
            hold = 3 * opts.ping_interval + 2
            log(f"  {opened} connections open; holding {hold:.0f}s (two pings and a timeout)")
            await asyncio.sleep(hold)
            held = (await group.stats())["open"]
            rss2 = rss_bytes(server.pid)
        warm_held = (await warmers.stats())["open"]
    return {
        "connections": n,
        "opened": opened,
        "held": held,
        "warm_held": warm_held,
        "connect_s": round(connect_s, 1),
        "rss_base_mib": rss0 / 2**20,
        "kib_per_conn": (rss1 - rss0) / 1024 / max(1, opened),
        "kib_per_conn_after_pings": (rss2 - rss0) / 1024 / max(1, opened),
    }


SCENARIOS: dict[str, Callable[[Server, str, Options], Any]] = {
    "fanout": fanout,
    "e2e": end_to_end,
    "idle": idle,
}


# ---------------------------------------------------------------- table


def ratio(mine: float, theirs: float) -> str:
    if not theirs or theirs != theirs or mine != mine:
        return "-"
    return f"{mine / theirs:.2f}x"


def render(results: dict[str, dict[str, dict[str, Any]]], servers: Sequence[str]) -> str:
    rows: list[tuple[str, str, Callable[[dict[str, Any]], float], str]] = [
        (
            "fanout",
            "fan-out: server CPU per delivered event (us)",
            lambda r: r["cpu_us_per_event"],
            "{:.2f}",
        ),
        ("fanout", "fan-out: events delivered", lambda r: r["delivered"], "{:,.0f}"),
        ("e2e", "end-to-end: commit-to-client p50 (ms)", lambda r: r["p50_ms"], "{:.2f}"),
        ("e2e", "end-to-end: p99 (ms)", lambda r: r["p99_ms"], "{:.2f}"),
        ("e2e", "end-to-end: max (ms)", lambda r: r["max_ms"], "{:.1f}"),
        ("e2e", "end-to-end: lost / duplicated", lambda r: r["lost"] + r["duplicated"], "{:.0f}"),
        (
            "e2e",
            "end-to-end: the writer's UPDATE round trip alone, p99 / max (ms)",
            lambda r: r["commit_p99_ms"],
            "{:.2f}",
        ),
        ("idle", "idle: server memory per connection (KiB)", lambda r: r["kib_per_conn"], "{:.1f}"),
        (
            "idle",
            "idle: connections opened / held through 2 pings",
            lambda r: r["held"],
            "{:,.0f}",
        ),
    ]
    others = [s for s in servers if s != "tiffin"]
    header = ["metric", *(LABELS[s] for s in servers)]
    if "tiffin" in servers:
        header += [f"tiffin_rt / {LABELS[s]}" for s in others]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for scenario, label, get, fmt in rows:
        if scenario not in results:
            continue
        cells = [label]
        values: dict[str, float] = {}
        for s in servers:
            r = results[scenario].get(s)
            if r is None or "error" in r:
                cells.append("failed" if r else "-")
                continue
            value = get(r)
            values[s] = value
            if label.endswith("lost / duplicated"):
                cells.append(f"{r['lost']} / {r['duplicated']}")
            elif label.endswith("delivered"):
                cells.append(f"{r['delivered']:,} of {r['expected']:,}")
            elif label.endswith("2 pings"):
                cells.append(f"{r['opened']:,} / {r['held']:,} of {r['connections']:,}")
            elif label.endswith("p99 / max (ms)"):
                cells.append(f"{r['commit_p99_ms']:.2f} / {r['commit_max_ms']:.1f}")
            else:
                cells.append(fmt.format(value))
        if "tiffin" in servers:
            numeric = not label.endswith(("delivered", "2 pings", "duplicated", "p99 / max (ms)"))
            for s in others:
                if numeric and "tiffin" in values and s in values:
                    cells.append(ratio(values["tiffin"], values[s]))
                else:
                    cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> int:
    raise_fd_limit()
    # SIGTERM/SIGINT cancel the run, so every server and client process is stopped on the way out.
    main_task = asyncio.current_task()
    assert main_task is not None
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, main_task.cancel)
    opts = Options(
        fanout_clients=args.fanout_clients,
        fanout_events=args.fanout_events,
        e2e_rate=args.rate,
        e2e_seconds=args.seconds,
        e2e_sio=args.e2e_clients,
        e2e_sse=args.e2e_clients,
        idle_connections=args.idle_connections,
        ping_interval=args.ping_interval,
        client_processes=args.client_processes,
        connect_seconds=args.connect_seconds,
    )
    scenarios = list(SCENARIOS) if args.scenario == "all" else args.scenario.split(",")
    servers = [s for s in SERVERS if s in args.servers.split(",")]
    results_dir = BENCH / "results"
    results_dir.mkdir(exist_ok=True)
    opts.workdir = results_dir
    database = await Database.find(args.dsn)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    began = time.monotonic()
    try:
        for scenario in scenarios:
            results[scenario] = {}
            for kind in servers:
                dsn = await database.fresh(
                    f"tiffin_rt_bench_{kind}",
                    peer=kind != "tiffin",
                    orders=opts.e2e_sio + opts.e2e_sse,
                )
                log(f"{scenario}: starting {LABELS[kind]}")
                server = await start_server(kind, dsn, opts.ping_interval, results_dir)
                try:
                    result = await asyncio.wait_for(
                        SCENARIOS[scenario](server, dsn, opts), args.scenario_timeout
                    )
                except Exception as exc:
                    log(f"{scenario} on {kind} failed: {type(exc).__name__}: {exc}")
                    result = {"error": f"{type(exc).__name__}: {exc}"}
                finally:
                    stop_server(server)
                log(f"  {json.dumps(result)}")
                results[scenario][kind] = result
    finally:
        await asyncio.to_thread(database.stop)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (results_dir / f"bench-{stamp}.json").write_text(json.dumps(results, indent=2))
    print()
    print(render(results, servers))
    print()
    print(
        f"{os.cpu_count()} cores, {cpu_model()}; {time.monotonic() - began:.0f} s; "
        f"ping interval {opts.ping_interval:g} s; clients in {opts.client_processes} processes"
    )
    return 0


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenario",
        default="all",
        help="fanout, e2e, idle, a comma-separated list, or all (default)",
    )
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help="comma-separated subset of tiffin,pysio,node"
    )
    parser.add_argument(
        "--dsn", default=None, help="admin PostgreSQL URL (default 127.0.0.1:5432, else embedded)"
    )
    parser.add_argument("--fanout-clients", type=int, default=1000)
    parser.add_argument("--fanout-events", type=int, default=300)
    parser.add_argument(
        "--e2e-clients",
        type=int,
        default=1000,
        help="Socket.IO clients, and as many SSE clients (end-to-end)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=500.0,
        help="status UPDATEs per second (end-to-end); issue 3 asks for 200",
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--idle-connections", type=int, default=15000)
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=5.0,
        help="Engine.IO ping interval, and ping timeout, given to every server (seconds)",
    )
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument(
        "--connect-seconds",
        type=float,
        default=150.0,
        help="idle: connections not opened by then are counted as not opened",
    )
    parser.add_argument("--scenario-timeout", type=float, default=420.0)
    args = parser.parse_args(argv)
    return uvloop.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
