"""`make bench`: tiffin_rt against stock python-socketio and Node socket.io, in one run.

Starts each server and the load clients (bench/loadclient.py) as separate processes on
127.0.0.1, reads the server's CPU time and memory from /proc/<pid>, and prints one table.

  python -m bench.run [--scenario spaced|paced|burst|e2e|idle|all] [--servers tiffin,pysio,node] ...

Scenarios (every server gets the same load clients and the same database schema):
  spaced  1000 clients in one order room, 300 status UPDATEs each committed on its own about
          1 ms apart: one frame per delivery, unless a server joins the frames that queued up
          for a connection while it was busy (tiffin_rt does: write calls per event say so)
  paced   the same, 20 ms apart: each event is written before the next arrives, so this is
          the cost of (about) one write per delivery
  burst   the same room, 300 events committed in one transaction (`fanout` is an alias)
  e2e     1000 Socket.IO + 1000 SSE clients, each on its own order, 500 UPDATEs/s
  idle    5000 idle Socket.IO connections: server memory per connection
  cluster tiffin_rt on 2 and 3 nodes behind nginx (bench/cluster.py)
  riders  2000 riders sending their position once a second to 2000 watching customers
          (bench/riders.py)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import re
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
SERVERS = ("tiffin", "pysio", "node")  # the default run; `floor` only when named
KNOWN = (*SERVERS, "floor")
LABELS = {
    "tiffin": "tiffin_rt",
    "pysio": "python-socketio",
    "node": "node socket.io",
    "floor": "floor (bench/peer_floor.py)",
}
# Scenarios a server can run; the others print "-" for it.
RUNS = {"floor": ("spaced", "paced", "burst")}
FANOUT_ORDER = 900000
# The status the end-to-end writer sets ("s<seq>"), as it appears in every server's NOTIFY.
STATUS_IN_PAYLOAD = re.compile(r'"status"\s*:\s*"s(\d+)"')


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- /proc readings


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process, from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def write_calls(pid: int) -> int:
    """write(2)-family system calls of the process (syscw in /proc/<pid>/io).

    libuv (uvloop, Node) writes sockets with write/writev, which this counts; send/sendmsg are
    not counted, so the figure is only read where a server writes through libuv.
    """
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    raise RuntimeError(f"no syscw for {pid}")


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

    async def drop(self, name: str) -> None:
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

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
    elif kind in ("pysio", "floor"):
        argv = [PYTHON, str(BENCH / f"peer_{kind}.py"), str(port), dsn, str(ping_interval)]
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
    spaced_gap_ms: float
    spaced_writers: int
    paced_gap_ms: float
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


@dataclass
class Delivery:
    """Where a fan-out stood when its last event arrived (or when it stopped moving)."""

    received: int
    open: int
    cpu: float
    writes: int
    at: float


async def wait_delivered(
    group: Clients, server: Server, target: int, *, within: float = 120, stall: float = 15
) -> Delivery:
    """Until the clients have `target` events, or none arrived for `stall` seconds.

    The server's CPU and write counts are read at the last poll that saw progress, so a
    stalled server (clients it dropped) is not charged for the idle seconds after.
    """
    pid = server.pid
    now = time.monotonic()
    mark = Delivery(0, 0, cpu_seconds(pid), write_calls(pid), now)
    deadline = now + within
    while True:
        stats = await group.stats()
        now = time.monotonic()
        if stats["received"] != mark.received:
            mark = Delivery(
                stats["received"], stats["open"], cpu_seconds(pid), write_calls(pid), now
            )
        if mark.received >= target or now - mark.at > stall or now > deadline:
            return mark
        await asyncio.sleep(0.02)


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


async def burst(server: Server, dsn: str, opts: Options) -> dict[str, Any]:
    """300 events in one transaction to 1000 clients in one room: CPU per delivered event."""
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
        cpu0, writes0 = cpu_seconds(server.pid), write_calls(server.pid)
        started = time.monotonic()
        await trigger_burst(server, dsn, events)
        target = connected * events
        done = await wait_delivered(group, server, target)
        cpu1, writes1 = done.cpu, done.writes
        wall = done.at - started
        await asyncio.sleep(0.5)
        final = await group.stats()
    delivered = final["received"]
    return {
        "connected": connected,
        "open_at_end": final["open"],
        "delivered": delivered,
        "expected": n * events,
        "cpu_s": cpu1 - cpu0,
        "cpu_us_per_event": (cpu1 - cpu0) * 1e6 / max(1, done.received),
        "writes_per_event": (writes1 - writes0) / max(1, done.received),
        "wall_s": wall,
    }


async def spaced(server: Server, dsn: str, opts: Options) -> dict[str, Any]:
    """The same room, but each status change committed on its own about 1 ms apart.

    Every server hears one NOTIFY per commit and writes one frame per client per event
    (nothing to merge): server CPU per delivered event, the cost of one write per delivery.
    """
    n, events = opts.fanout_clients, opts.fanout_events
    gap = opts.spaced_gap_ms / 1000
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
        target = connected * events
        # Several writer connections, so a slow round trip does not stretch the spacing: the
        # UPDATE for change i is sent at start + i * gap on connection i % writers and commits
        # on its own (autocommit); the row lock keeps them one after another.
        writers = [await asyncpg.connect(dsn) for _ in range(opts.spaced_writers)]
        committed: list[float] = []
        cpu0, writes0 = cpu_seconds(server.pid), write_calls(server.pid)
        started = time.monotonic() + 0.01
        try:
            updates = [
                await w.prepare("UPDATE orders SET status = $1 WHERE id = $2") for w in writers
            ]

            async def write(k: int) -> None:
                for seq in range(k, events, len(writers)):
                    delay = started + seq * gap - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await updates[k].fetch(f"p{seq}", FANOUT_ORDER)
                    committed.append(time.monotonic())

            await asyncio.gather(*(write(k) for k in range(len(writers))))
        finally:
            for w in writers:
                await w.close()
        committed.sort()
        writing = committed[-1] - committed[0] if len(committed) > 1 else 0.0
        done = await wait_delivered(group, server, target)
        cpu1, writes1 = done.cpu, done.writes
        drained = done.at
        wall = drained - started
        await asyncio.sleep(0.5)
        final = await group.stats()
    return {
        "connected": connected,
        "open_at_end": final["open"],
        "delivered": final["received"],
        "expected": n * events,
        "cpu_s": cpu1 - cpu0,
        "cpu_us_per_event": (cpu1 - cpu0) * 1e6 / max(1, done.received),
        "writes_per_event": (writes1 - writes0) / max(1, done.received),
        "commit_gap_ms": writing * 1000 / max(1, events - 1),
        # From the last commit until every client had every event (polled every 20 ms):
        # how far the server and the clients fell behind the writers.
        "drain_ms": (drained - committed[-1]) * 1000 if committed else float("nan"),
        "wall_s": wall,
    }


async def paced(server: Server, dsn: str, opts: Options) -> dict[str, Any]:
    """Spaced with the commits far enough apart (20 ms) that every server has written one
    event to every client before the next one arrives: server CPU per delivery when each
    delivery is (about) one write; the write calls per event say how nearly."""
    return await spaced(server, dsn, dataclasses.replace(opts, spaced_gap_ms=opts.paced_gap_ms))


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
    notified = [0.0] * count  # when a bare asyncpg LISTEN in this process heard each NOTIFY

    def heard(_conn: object, _pid: int, _channel: str, payload: object) -> None:
        match = STATUS_IN_PAYLOAD.search(str(payload))
        if match is not None and int(match[1]) < count and not notified[int(match[1])]:
            notified[int(match[1])] = time.time()

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
        # The floor: the same NOTIFY heard by a bare listener (the server's trigger's channel).
        probe = await asyncpg.connect(dsn)
        channel = "tiffin_rt_events" if server.kind == "tiffin" else "order_status"
        await probe.add_listener(channel, heard)
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
        await probe.close()
        reports = await group.report()
    hits = [0] * count
    latencies: list[float] = []
    by_transport: dict[str, list[float]] = {"sio": [], "sse": []}
    # From the moment a bare LISTEN in this process heard the NOTIFY to the client's receipt:
    # the server's own share of the latency, the database's taken out.
    beyond_floor: list[float] = []
    for report in reports:
        for status, received_at, transport in report["samples"]:
            if not status.startswith("s"):
                continue  # the SSE snapshot of the current status
            seq = int(status[1:])
            hits[seq] += 1
            if hits[seq] == 1:
                latency = (received_at - sent[seq]) * 1000
                latencies.append(latency)
                by_transport[transport].append(latency)
                if notified[seq]:
                    beyond_floor.append((received_at - notified[seq]) * 1000)
    latencies.sort()
    beyond_floor.sort()
    for values in by_transport.values():
        values.sort()
    floor = sorted((at - sent[seq]) * 1000 for seq, at in enumerate(notified) if at)
    commits.sort()
    lost = sum(1 for h in hits if h == 0)
    duplicated = sum(h - 1 for h in hits if h > 1)
    return {
        "connected": connected,
        "updates": count,
        "writer_lag_s": round(writer_lag, 3),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "sio_p50_ms": percentile(by_transport["sio"], 50),
        "sio_p99_ms": percentile(by_transport["sio"], 99),
        "sse_p50_ms": percentile(by_transport["sse"], 50),
        "sse_p99_ms": percentile(by_transport["sse"], 99),
        "sio_clients": n_sio,
        "sse_clients": n_sse,
        "max_ms": latencies[-1] if latencies else float("nan"),
        "mean_ms": statistics.fmean(latencies) if latencies else float("nan"),
        "lost": lost,
        "duplicated": duplicated,
        "notify_p50_ms": percentile(floor, 50),
        "notify_p99_ms": percentile(floor, 99),
        "notify_heard": len(floor),
        "server_p50_ms": percentile(beyond_floor, 50),
        "server_p99_ms": percentile(beyond_floor, 99),
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
    "spaced": spaced,
    "paced": paced,
    "burst": burst,
    "e2e": end_to_end,
    "idle": idle,
}
# Scenarios with their own module and servers (tiffin_rt only), run after the others.
OWN_RUNS = ("cluster", "riders")
ALIASES = {"fanout": "burst"}  # the burst scenario's name before the spaced one came


# ---------------------------------------------------------------- table


def ratio(mine: float, theirs: float) -> str:
    if not theirs or theirs != theirs or mine != mine:
        return "-"
    return f"{mine / theirs:.2f}x"


@dataclass(frozen=True)
class Row:
    """One line of the table: a figure per server, ratios where numeric, and the issue's target.

    `limit` is a target as a ratio to Node's figure (tiffin_rt / node ≤ limit); `zero` a target
    that tiffin_rt's figure be 0.
    """

    scenario: str
    label: str
    value: Callable[[dict[str, Any]], float]
    cell: Callable[[dict[str, Any]], str]
    numeric: bool = True
    limit: float | None = None
    zero: bool = False


def delivered_cell(r: dict[str, Any]) -> str:
    cell = f"{r['delivered']:,} / {r['expected']:,}"
    dropped = r["connected"] - r["open_at_end"]
    return cell + (f" ({dropped:,} clients dropped)" if dropped else "")


def rounds_cell(r: dict[str, Any]) -> str:
    """Each round's p99, with tiffin_rt's against Node's of the same round."""
    p99s = r.get("round_p99_ms")
    if p99s is None:
        return "one round"
    ratios = r.get("round_p99_ratio", [float("nan")] * len(p99s))
    return ", ".join(
        f"{p:.2f}" + (f" ({q:.2f}x)" if q == q else "") for p, q in zip(p99s, ratios, strict=False)
    )


def _us(key: str) -> Callable[[dict[str, Any]], str]:
    return lambda r: f"{r[key]:.2f}"


ROWS = [
    Row(
        "spaced",
        "spaced: server CPU per delivered event (µs)",
        lambda r: r["cpu_us_per_event"],
        _us("cpu_us_per_event"),
        limit=0.8,
    ),
    Row(
        "spaced",
        "spaced: delivered / expected",
        lambda r: r["delivered"],
        delivered_cell,
        numeric=False,
    ),
    Row(
        "spaced",
        "spaced: server write calls per delivered event",
        lambda r: r["writes_per_event"],
        lambda r: f"{r['writes_per_event']:.2f}",
    ),
    Row(
        "spaced",
        "spaced: mean gap between the writers' commits (ms)",
        lambda r: r["commit_gap_ms"],
        _us("commit_gap_ms"),
        numeric=False,
    ),
    Row(
        "spaced",
        "spaced: last commit to every client having every event (ms)",
        lambda r: r["drain_ms"],
        lambda r: f"{r['drain_ms']:.0f}",
        numeric=False,
    ),
    Row(
        "paced",
        "paced (20 ms apart): server CPU per delivered event (µs)",
        lambda r: r["cpu_us_per_event"],
        _us("cpu_us_per_event"),
        limit=0.8,
    ),
    Row(
        "paced",
        "paced: server write calls per delivered event",
        lambda r: r["writes_per_event"],
        lambda r: f"{r['writes_per_event']:.2f}",
    ),
    Row(
        "paced",
        "paced: server CPU per write call (µs)",
        lambda r: r["cpu_us_per_event"] / max(r["writes_per_event"], 1e-9),
        lambda r: f"{r['cpu_us_per_event'] / max(r['writes_per_event'], 1e-9):.2f}",
    ),
    Row(
        "paced",
        "paced: delivered / expected",
        lambda r: r["delivered"],
        delivered_cell,
        numeric=False,
    ),
    Row(
        "paced",
        "paced: mean gap between the writers' commits (ms)",
        lambda r: r["commit_gap_ms"],
        _us("commit_gap_ms"),
        numeric=False,
    ),
    Row(
        "burst",
        "burst: server CPU per delivered event (µs)",
        lambda r: r["cpu_us_per_event"],
        _us("cpu_us_per_event"),
        limit=0.5,
    ),
    Row(
        "burst",
        "burst: server write calls per delivered event",
        lambda r: r["writes_per_event"],
        lambda r: f"{r['writes_per_event']:.2f}",
    ),
    Row(
        "burst",
        "burst: delivered / expected",
        lambda r: r["delivered"],
        delivered_cell,
        numeric=False,
    ),
    Row(
        "e2e",
        "end-to-end: clients (open)",
        lambda r: r["connected"],
        lambda r: f"{r['sio_clients']:,} Socket.IO + {r['sse_clients']:,} SSE ({r['connected']:,})",
        numeric=False,
    ),
    Row("e2e", "end-to-end: UPDATE-to-client p50 (ms)", lambda r: r["p50_ms"], _us("p50_ms")),
    Row("e2e", "end-to-end: p99 (ms)", lambda r: r["p99_ms"], _us("p99_ms"), limit=1.0),
    Row(
        "e2e",
        "end-to-end: p99 in each round (ms; tiffin_rt: and to Node's in that round)",
        lambda r: r["p99_ms"],
        rounds_cell,
        numeric=False,
    ),
    Row(
        "e2e",
        "end-to-end: p50 / p99, Socket.IO clients (ms; ratio of p99)",
        lambda r: r["sio_p99_ms"],
        lambda r: f"{r['sio_p50_ms']:.2f} / {r['sio_p99_ms']:.2f}",
    ),
    Row(
        "e2e",
        "end-to-end: p50 / p99, SSE clients (ms; ratio of p99)",
        lambda r: r["sse_p99_ms"],
        lambda r: f"{r['sse_p50_ms']:.2f} / {r['sse_p99_ms']:.2f}",
    ),
    Row("e2e", "end-to-end: max (ms)", lambda r: r["max_ms"], lambda r: f"{r['max_ms']:.1f}"),
    Row(
        "e2e",
        "end-to-end: lost / duplicated",
        lambda r: r["lost"] + r["duplicated"],
        lambda r: f"{r['lost']} / {r['duplicated']}",
        numeric=False,
        zero=True,
    ),
    Row(
        "e2e",
        "end-to-end: UPDATE to NOTIFY at a bare asyncpg LISTEN, p50 / p99 (ms; the floor)",
        lambda r: r["notify_p99_ms"],
        lambda r: f"{r['notify_p50_ms']:.2f} / {r['notify_p99_ms']:.2f}",
        numeric=False,
    ),
    Row(
        "e2e",
        "end-to-end: the server's share, NOTIFY heard by the bare LISTEN to client, p50 / p99"
        " (ms; ratio of p99)",
        lambda r: r.get("server_p99_ms", float("nan")),
        lambda r: (
            f"{r.get('server_p50_ms', float('nan')):.2f} / "
            f"{r.get('server_p99_ms', float('nan')):.2f}"
        ),
    ),
    Row(
        "e2e",
        "end-to-end: the writer's UPDATE round trip alone, p99 / max (ms)",
        lambda r: r["commit_p99_ms"],
        lambda r: f"{r['commit_p99_ms']:.2f} / {r['commit_max_ms']:.1f}",
        numeric=False,
    ),
    Row(
        "idle",
        "idle: server memory per connection (KiB)",
        lambda r: r["kib_per_conn"],
        lambda r: f"{r['kib_per_conn']:.1f}",
        limit=0.5,
    ),
    Row(
        "idle",
        "idle: connections opened / held through 2 pings",
        lambda r: r["held"],
        lambda r: f"{r['opened']:,} / {r['held']:,} of {r['connections']:,}",
        numeric=False,
    ),
]


def render(results: dict[str, dict[str, dict[str, Any]]], servers: Sequence[str]) -> str:
    others = [s for s in servers if s != "tiffin"]
    header = ["metric", *(LABELS[s] for s in servers)]
    if "tiffin" in servers:
        header += [f"tiffin_rt / {LABELS[s]}" for s in others]
    header += ["target (issue 13)", "met"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    notes: list[str] = []
    for row in ROWS:
        if row.scenario not in results:
            continue
        cells = [row.label]
        values: dict[str, float] = {}
        for s in servers:
            r = results[row.scenario].get(s)
            if r is None or "error" in r:
                cells.append("failed" if r else "-")
                continue
            values[s] = row.value(r)
            cells.append(row.cell(r))
        if "tiffin" in servers:
            for s in others:
                both = "tiffin" in values and s in values
                cells.append(ratio(values["tiffin"], values[s]) if row.numeric and both else "")
        target, met = "", ""
        if row.limit is not None:
            target = f"≤ {row.limit:g}x Node"
            if "tiffin" in values and "node" in values and values["node"] > 0:
                met = "yes" if values["tiffin"] <= row.limit * values["node"] else "NO"
            else:
                met = "-"
        elif row.zero:
            target = "0 / 0"
            met = "-" if "tiffin" not in values else ("yes" if values["tiffin"] == 0 else "NO")
        note = coalescing_note(results, row) if met == "yes" else None
        if note is not None:
            met += "*"
            notes.append(note)
        cells += [target, met]
        lines.append("| " + " | ".join(cells) + " |")
    rounds = max((r.get("rounds", 1) for r in results.get("e2e", {}).values()), default=1)
    if rounds > 1:
        notes.append(
            f"end-to-end: each figure is the median of {rounds} rounds per server (servers"
            " alternating from round to round; lost and duplicated are summed over the rounds)."
        )
    return "\n".join([*lines, "", *notes] if notes else lines)


def coalescing_note(results: dict[str, dict[str, dict[str, Any]]], row: Row) -> str | None:
    """A CPU-per-event target met by writing several frames at once is not the same result."""
    if row.limit is None or row.scenario not in ("spaced", "paced"):
        return None
    mine = results[row.scenario].get("tiffin", {}).get("writes_per_event")
    node = results[row.scenario].get("node", {}).get("writes_per_event")
    if mine is None or node is None or mine >= 0.9 * node:
        return None
    return (
        f"* {row.scenario}: tiffin_rt made {mine:.2f} write calls per delivered event, Node"
        f" {node:.2f}: frames that queued up while it was busy went out together, so this is"
        " not the cost of one write per delivery (see docs/performance.md, Where the time goes)."
    )


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
        spaced_gap_ms=args.spaced_gap_ms,
        spaced_writers=args.spaced_writers,
        paced_gap_ms=args.paced_gap_ms,
        e2e_rate=args.rate,
        e2e_seconds=args.seconds,
        e2e_sio=args.e2e_clients,
        e2e_sse=args.e2e_clients,
        idle_connections=args.idle_connections,
        ping_interval=args.ping_interval,
        client_processes=args.client_processes,
        connect_seconds=args.connect_seconds,
    )
    if args.scenario == "all":
        scenarios = [*SCENARIOS, *OWN_RUNS]
    else:
        scenarios = [ALIASES.get(name, name) for name in args.scenario.split(",")]
        unknown = [name for name in scenarios if name not in SCENARIOS and name not in OWN_RUNS]
        if unknown:
            raise SystemExit(f"bench: unknown scenario(s) {', '.join(unknown)}")
    servers = [s for s in KNOWN if s in args.servers.split(",")]
    results_dir = BENCH / "results"
    results_dir.mkdir(exist_ok=True)
    opts.workdir = results_dir
    database = await Database.find(args.dsn)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    began = time.monotonic()
    try:
        for scenario in scenarios:
            if scenario == "cluster":  # tiffin_rt only: 2 and 3 nodes behind nginx
                from bench import cluster

                results[scenario] = await cluster.scenario(database, opts, args.cluster_nodes)
                continue
            if scenario == "riders":  # tiffin_rt only: rider location tracking
                from bench import riders

                results[scenario] = await riders.scenario(
                    database, opts, args.riders, args.riders_seconds
                )
                continue
            results[scenario] = {}
            rounds = args.e2e_rounds if scenario == "e2e" else 1
            runs: dict[str, list[dict[str, Any]]] = {}
            for number in range(rounds):
                # Servers alternate their order from round to round, so a machine that gets
                # busier or quieter during the run does not favour one of them.
                order = servers if number % 2 == 0 else servers[::-1]
                for kind in order:
                    if scenario not in RUNS.get(kind, SCENARIOS):
                        continue
                    if rounds > 1:
                        log(f"{scenario}: round {number + 1} of {rounds}")
                    result = await one_run(scenario, kind, database, opts, args)
                    runs.setdefault(kind, []).append(result)
            results[scenario] = combine_rounds(runs)
    finally:
        await asyncio.to_thread(database.stop)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (results_dir / f"bench-{stamp}.json").write_text(json.dumps(results, indent=2))
    print()
    if any(name not in OWN_RUNS for name in results):
        print(render({k: v for k, v in results.items() if k not in OWN_RUNS}, servers))
    if "cluster" in results:
        from bench import cluster

        print()
        print(cluster.render(results["cluster"]))
    if "riders" in results:
        from bench import riders

        print()
        print(riders.render(results["riders"]))
    print()
    print(
        f"{os.cpu_count()} cores, {cpu_model()}; {time.monotonic() - began:.0f} s; "
        f"ping interval {opts.ping_interval:g} s; clients in {opts.client_processes} processes"
    )
    return 0


async def one_run(
    scenario: str, kind: str, database: Database, opts: Options, args: argparse.Namespace
) -> dict[str, Any]:
    """One server through one scenario, on a database of its own, stopped afterwards."""
    # A name of this run's own: another bench on the same PostgreSQL (another checkout) must
    # not drop the database under this one's server.
    dbname = f"tiffin_rt_bench_{kind}_{os.getpid()}"
    dsn = await database.fresh(dbname, peer=kind != "tiffin", orders=opts.e2e_sio + opts.e2e_sse)
    log(f"{scenario}: starting {LABELS[kind]}")
    server = await start_server(kind, dsn, opts.ping_interval, opts.workdir)
    try:
        result: dict[str, Any] = await asyncio.wait_for(
            SCENARIOS[scenario](server, dsn, opts), args.scenario_timeout
        )
    except Exception as exc:
        log(f"{scenario} on {kind} failed: {type(exc).__name__}: {exc}")
        result = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        stop_server(server)
        await database.drop(dbname)
    log(f"  {json.dumps(result)}")
    return result


# Summed over rounds, not their median: one lost event in any round is a lost event.
SUMMED = ("lost", "duplicated")


def combine_rounds(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Each server's rounds as one result: every figure the median of its rounds (lost and
    duplicated events summed), each round's p99 kept, and for tiffin_rt each round's p99
    against Node's of the same round."""
    combined: dict[str, dict[str, Any]] = {}
    for kind, results in runs.items():
        failed = [r for r in results if "error" in r]
        if len(results) == 1 or failed:
            combined[kind] = failed[0] if failed else results[0]
            continue
        merged: dict[str, Any] = dict(results[0])
        for key, first in results[0].items():
            if isinstance(first, bool) or not isinstance(first, int | float):
                continue
            values = [r[key] for r in results]
            merged[key] = sum(values) if key in SUMMED else statistics.median(values)
        merged["rounds"] = len(results)
        merged["round_p99_ms"] = [r.get("p99_ms") for r in results]
        combined[kind] = merged
    mine, node = combined.get("tiffin"), combined.get("node")
    if mine is not None and node is not None and "round_p99_ms" in mine and "round_p99_ms" in node:
        mine["round_p99_ratio"] = [
            a / b if a and b else float("nan")
            for a, b in zip(mine["round_p99_ms"], node["round_p99_ms"], strict=False)
        ]
    return combined


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
        help="spaced, paced, burst (alias fanout), e2e, idle, cluster, riders, a comma-separated"
        " list,"
        " or all (default)",
    )
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help="comma-separated subset of tiffin,pysio,node,floor (default: all but floor)",
    )
    parser.add_argument(
        "--dsn", default=None, help="admin PostgreSQL URL (default 127.0.0.1:5432, else embedded)"
    )
    parser.add_argument(
        "--fanout-clients", type=int, default=1000, help="clients in the room (spaced, burst)"
    )
    parser.add_argument(
        "--fanout-events", type=int, default=300, help="events sent to it (spaced, burst)"
    )
    parser.add_argument(
        "--spaced-gap-ms",
        type=float,
        default=1.0,
        help="spaced: the writers start one committed UPDATE every this many ms",
    )
    parser.add_argument(
        "--paced-gap-ms",
        type=float,
        default=20.0,
        help="paced: the writers start one committed UPDATE every this many ms",
    )
    parser.add_argument(
        "--spaced-writers",
        type=int,
        default=4,
        help="spaced: database connections the UPDATEs are sent on in turn",
    )
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
    parser.add_argument(
        "--e2e-rounds",
        type=int,
        default=3,
        help="end-to-end: rounds per server, servers alternating; figures are the rounds'"
        " medians (a p99 on a shared machine moves from run to run)",
    )
    parser.add_argument(
        "--cluster-nodes",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[2, 3],
        help="cluster: the node counts behind nginx (default 2,3)",
    )
    parser.add_argument(
        "--idle-connections",
        type=int,
        default=5000,
        help="idle: connections held open (15,000 takes python-socketio over 3 minutes here)",
    )
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=5.0,
        help="Engine.IO ping interval, and ping timeout, given to every server (seconds)",
    )
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument(
        "--riders",
        type=int,
        default=2000,
        help="riders scenario: riders sending once a second, and as many customers watching",
    )
    parser.add_argument(
        "--riders-seconds", type=float, default=20.0, help="riders scenario: seconds measured"
    )
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
