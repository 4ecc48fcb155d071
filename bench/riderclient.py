"""A load-client process for the riders scenario (bench/riders.py): riders that send their
position once a second, or customers watching their order's riderLocation.

Raw Engine.IO 4 / Socket.IO 5 over WebSocket on aiohttp, as bench/loadclient.py, driven through
stdin/stdout, one JSON object per line:

  argv[1]: a JSON file: url, role ("rider" | "watcher"), conns (list of [token, order_id]),
           connect_concurrency, period (seconds between one rider's positions)
  stdout:  {"ready": n, "failed": m, "errors": [...]} once every connection is set up
  stdin:   "go <seconds>" (riders) -> {"sent", "ok", "refused": {code: n}, "sends": [[order,
           epoch_ms, t_send]], "acks": [seconds from emit to ack], "skipped": ticks missed
           while waiting for a late ack} after sending for that long
           "report" (watchers)     -> {"received", "open", "samples": [[order, iso, t_recv]]}
           "quit"
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from collections import Counter
from typing import Any

import aiohttp
import orjson
import uvloop

from bench.loadclient import emit, raise_fd_limit

NS = "/notifications"
EVENT = f"42{NS},"
ACK = f"43{NS},"
LOCATION = '["riderLocation",'
# Kitchen and the way to the customer: each rider moves a little on every send.
ORIGIN = (12.9716, 77.5946)


class Connection:
    def __init__(self, order_id: str) -> None:
        self.order_id = order_id
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.acks: dict[int, asyncio.Future[Any]] = {}
        self.next_ack = 10

    async def connect(
        self, session: aiohttp.ClientSession, url: str, token: str, join: bool
    ) -> None:
        ws = await session.ws_connect(
            f"{url}/socket.io/?EIO=4&transport=websocket",
            max_msg_size=0,
            timeout=aiohttp.ClientWSTimeout(ws_close=2),
        )
        self.ws = ws
        opening = await ws.receive_str(timeout=30)
        assert opening.startswith("0"), opening[:60]
        await ws.send_str(f"40{NS}," + orjson.dumps({"token": token}).decode())
        while True:
            packet = await ws.receive_str(timeout=30)
            if packet == "2":
                await ws.send_str("3")
            elif packet.startswith(f"44{NS}"):
                raise RuntimeError(f"refused: {packet[:120]}")
            elif packet.startswith(f"40{NS},"):
                break
        if join:
            await ws.send_str(
                f"42{NS},1" + orjson.dumps(["joinRoom", f"order-{self.order_id}"]).decode()
            )
            while True:
                packet = await ws.receive_str(timeout=30)
                if packet == "2":
                    await ws.send_str("3")
                elif packet.startswith(f"43{NS},1"):
                    if '"ok":true' not in packet:
                        raise RuntimeError(f"joinRoom refused: {packet[:160]}")
                    break

    async def call(self, event: str, data: Any) -> Any:
        assert self.ws is not None
        self.next_ack += 1
        ack_id = self.next_ack
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.acks[ack_id] = future
        await self.ws.send_str(f"42{NS},{ack_id}" + orjson.dumps([event, data]).decode())
        return await asyncio.wait_for(future, 30)

    async def read(
        self, samples: list[tuple[str, str, float]] | None, counts: Counter[str]
    ) -> None:
        assert self.ws is not None
        ws = self.ws
        try:
            while True:
                msg = await ws.receive()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                data: str = msg.data
                if data == "2":
                    await ws.send_str("3")
                elif data.startswith(ACK):
                    head, _, args = data[len(ACK) :].partition("[")
                    future = self.acks.pop(int(head), None)
                    if future is not None and not future.done():
                        future.set_result(orjson.loads("[" + args)[0])
                elif data.startswith(EVENT) and data.startswith(LOCATION, len(EVENT)):
                    now = time.time()
                    counts["received"] += 1
                    if samples is not None:
                        payload = orjson.loads(data[len(EVENT) :])[1]
                        samples.append((payload["orderId"], payload["timestamp"], now))
        except (aiohttp.ClientError, asyncio.CancelledError, ConnectionError):
            pass
        finally:
            counts["closed"] += 1


async def ride(conn: Connection, seconds: float, period: float, out: dict[str, Any]) -> None:
    """One position every `period` seconds, on a fixed schedule (a phone's GPS at 1 Hz)."""
    rng = random.Random(conn.order_id)
    start = time.monotonic() + rng.random() * period  # riders spread over the second
    end = start + seconds
    lat, lng = ORIGIN
    step = 0
    while (slot := start + step * period) < end:
        wait = slot - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        elif wait < -period:
            # Behind by a whole period (the last ack was late): a phone sends its current
            # position at the next tick, never a backlog of missed ones.
            missed = int(-wait // period)
            out["skipped"] += missed
            step += missed
            continue
        step += 1
        ms = int(time.time() * 1000)
        data = {
            "orderId": conn.order_id,
            "lat": lat - 0.0001 * step,
            "lng": lng + 0.0001 * step,
            "heading": 135.0,
            "speed": 6.0,
            "accuracy": 10,
            "timestamp": ms,
        }
        out["sent"] += 1
        sent_at = time.time()
        try:
            ack = await conn.call("locationUpdate", data)
        except TimeoutError:
            out["refused"]["timeout"] += 1
            continue
        out["acks"].append(time.time() - sent_at)
        if ack.get("ok"):
            out["ok"] += 1
            out["sends"].append((conn.order_id, ms, sent_at))
        else:
            out["refused"][ack.get("error", {}).get("code", "?")] += 1


async def main(job: dict[str, Any]) -> None:
    url: str = job["url"]
    role: str = job["role"]
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    gate = asyncio.Semaphore(int(job.get("connect_concurrency", 50)))
    conns: list[Connection] = []
    errors: list[str] = []
    failed = 0
    counts: Counter[str] = Counter()
    samples: list[tuple[str, str, float]] = []
    readers: list[asyncio.Task[None]] = []

    async def open_one(token: str, order_id: str) -> None:
        nonlocal failed
        conn = Connection(order_id)
        try:
            async with gate:
                await conn.connect(session, url, token, join=role == "watcher")
        except Exception as exc:
            failed += 1
            if len(errors) < 5:
                errors.append(f"{type(exc).__name__}: {exc}")
            return
        conns.append(conn)
        readers.append(
            asyncio.create_task(conn.read(samples if role == "watcher" else None, counts))
        )

    await asyncio.gather(*(open_one(t, o) for t, o in job["conns"]))
    emit({"ready": len(conns), "failed": failed, "errors": errors})

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).strip().decode()
        if not line or line == "quit":
            break
        if line.startswith("go "):
            out: dict[str, Any] = {
                "sent": 0,
                "ok": 0,
                "skipped": 0,
                "refused": Counter(),
                "sends": [],
                "acks": [],
            }
            period = float(job.get("period", 1.0))
            await asyncio.gather(*(ride(c, float(line[3:]), period, out) for c in conns))
            emit(out)
        elif line == "report":
            emit(
                {
                    "received": counts["received"],
                    "open": len(conns) - counts["closed"],
                    "samples": samples,
                }
            )
    os._exit(0)


if __name__ == "__main__":
    raise_fd_limit()
    with open(sys.argv[1], "rb") as job_file:
        uvloop.run(main(orjson.loads(job_file.read())))
