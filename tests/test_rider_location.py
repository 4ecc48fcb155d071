"""Rider location: `locationUpdate` from the order's rider, `riderLocation` to its watchers on
every transport, latest wins for a slow client, the last position for a late joiner.

Demo orders: 1 = alice / spice-garden / rider rita; 3 = bob / green-bowl / rider ravi;
2 = alice, no rider. Alice's orders go to 12.9352, 77.6245 (delivery_lat / delivery_lng).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import asyncpg
import pytest
import socketio
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import Received, base_url, eventually, leave, sse_events, token
from tests.raw_engineio import ack, connect_namespace, raw_session
from tiffin_rt.config import Settings

NS = "/notifications"
TRACKING = {
    "updates_per_rider": "50/second",
    "store_interval": 0.2,
    "destination_lat_column": "delivery_lat",
    "destination_lng_column": "delivery_lng",
}
TRANSPORTS = {"websocket": ["websocket"], "polling": ["polling"], "upgrade": None}
KITCHEN = (12.9716, 77.5946)


def position(order: str = "1", n: int = 0, **fields: Any) -> dict[str, Any]:
    """A position n steps along the way from the kitchen, timestamped now."""
    return {
        "orderId": order,
        "lat": KITCHEN[0] - 0.001 * n,
        "lng": KITCHEN[1] + 0.001 * n,
        "heading": 135.0,
        "speed": 6.5,
        "accuracy": 8,
        "timestamp": int(time.time() * 1000),
        **fields,
    }


async def client(
    url: str,
    tok: str,
    transports: list[str] | None = ["websocket"],  # noqa: B006
) -> tuple[socketio.AsyncClient, Received]:
    received = Received()
    sio = socketio.AsyncClient(reconnection=False)
    for name in ("riderLocation", "orderStatusUpdate"):
        sio.on(name, (lambda n: lambda data=None: received.add(n, data))(name), namespace=NS)
    await sio.connect(
        url, namespaces=[NS], auth={"token": tok}, transports=transports, wait_timeout=5
    )
    if transports is None:
        await eventually(lambda: sio.transport() == "websocket")
    return sio, received


@asynccontextmanager
async def clients(
    url: str,
    settings: Settings,
    *who: tuple[str, str],
    transports: list[str] | None = ["websocket"],  # noqa: B006
) -> AsyncIterator[list[tuple[socketio.AsyncClient, Received]]]:
    opened = [await client(url, token(settings, sub, role), transports) for sub, role in who]
    try:
        yield opened
    finally:
        for sio, _ in opened:
            await sio.disconnect()


@pytest.fixture
async def tracked(start_server: StartServer) -> TestServer:
    return await start_server(tracking=TRACKING)


async def send(rider: socketio.AsyncClient, data: Any) -> Any:
    return await rider.call("locationUpdate", data, namespace=NS, timeout=5)


@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_a_riders_positions_reach_the_customer_in_order(
    tracked: TestServer, settings: Settings, transport: str
) -> None:
    url = base_url(tracked)
    async with clients(
        url, settings, ("alice", "customer"), ("rita", "rider"), transports=TRANSPORTS[transport]
    ) as [(alice, to_alice), (rita, _)]:
        assert (await alice.call("joinRoom", "order-1", namespace=NS))["ok"]
        sent = [position(n=n) for n in range(6)]
        for data in sent:
            ack = await send(rita, data)
            assert ack["ok"] is True, ack
            assert ack["orderId"] == "1"
        got = await to_alice.wait_for("riderLocation", 6)
        assert [(g["lat"], g["lng"]) for g in got] == [(d["lat"], d["lng"]) for d in sent]
        first = got[0]
        assert first["riderId"] == "rita"
        assert first["orderId"] == "1"
        assert (first["heading"], first["speed"], first["accuracy"]) == (135.0, 6.5, 8.0)
        assert first["timestamp"].endswith("Z")
        eta = first["eta"]
        assert eta["method"] == "straight_line"
        # kitchen to alice's door: about 5.1 km at 20 km/h, about 15 minutes
        assert 4800 < eta["straightLineMeters"] < 5400
        assert 850 < eta["estimatedSeconds"] < 980
        assert got[-1]["eta"]["straightLineMeters"] < eta["straightLineMeters"]


async def test_an_order_without_destination_has_no_eta(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    server = await start_server(tracking={"updates_per_rider": "50/second"})
    async with clients(base_url(server), settings, ("alice", "customer"), ("rita", "rider")) as [
        (alice, to_alice),
        (rita, _),
    ]:
        await alice.call("joinRoom", "order-1", namespace=NS)
        assert (await send(rita, position()))["eta"] is None
        [got] = await to_alice.wait_for("riderLocation")
        assert got["eta"] is None


async def test_a_destination_that_is_no_number_means_no_eta_not_a_refusal(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    await start_server()  # creates the demo orders table
    await db.execute(
        "ALTER TABLE orders ADD COLUMN dest_lat text, ADD COLUMN dest_lng numeric;"
        " UPDATE orders SET dest_lat = 'n/a', dest_lng = 77.6 WHERE id = 1;"
        " UPDATE orders SET dest_lat = '12.97', dest_lng = 1e400 WHERE id = 3;"
        " UPDATE orders SET dest_lat = '12.97', dest_lng = 77.6 WHERE id = 2"
    )
    server = await start_server(
        tracking={
            "updates_per_rider": "50/second",
            "destination_lat_column": "dest_lat",
            "destination_lng_column": "dest_lng",
        }
    )
    async with clients(base_url(server), settings, ("rita", "rider"), ("ravi", "rider")) as [
        (rita, _),
        (ravi, _),
    ]:
        for rider, order in ((rita, "1"), (ravi, "3")):
            ack = await send(rider, position(order))
            assert ack["ok"] is True, ack
            assert ack["eta"] is None
        await db.execute("UPDATE orders SET rider_id = 'rita' WHERE id = 2")
        ack = await eventually_accepted(rita, "2")
        assert ack["eta"]["method"] == "straight_line"


async def eventually_accepted(rider: socketio.AsyncClient, order: str) -> Any:
    """An assignment reaches the server through the log: until then the rider is refused."""
    for n in range(100):
        ack = await send(rider, position(order, n=n))
        if ack["ok"]:
            return ack
        await asyncio.sleep(0.05)
    raise AssertionError("the assigned rider was never accepted")


async def test_refused_for_orders_not_assigned_finished_or_to_non_riders(
    tracked: TestServer, settings: Settings, db: asyncpg.Connection
) -> None:
    url = base_url(tracked)
    async with clients(
        url, settings, ("rita", "rider"), ("alice", "customer"), ("ravi", "rider")
    ) as [(rita, _), (alice, to_alice), (ravi, _)]:
        await alice.call("joinRoom", "order-1", namespace=NS)
        for order in ("3", "2", "999"):  # ravi's, nobody's, none
            ack = await send(rita, position(order))
            assert ack == {
                "ok": False,
                "error": {"code": "forbidden", "message": f"order {order} is not assigned to you"},
            }
        ack = await send(alice, position())
        assert ack["error"]["code"] == "forbidden"
        assert ack["error"]["message"] == "only riders send locationUpdate"
        assert (await send(rita, position(n=1)))["ok"]
        await db.execute("UPDATE orders SET status = 'delivered' WHERE id = 1")
        await to_alice.wait_for("orderStatusUpdate")
        ack = await send(rita, position(n=2))
        assert ack["error"] == {
            "code": "order_closed",
            "message": "order 1 is delivered; it takes no more positions",
        }
        # ravi's own order still works: nothing else was held up
        assert (await send(ravi, position("3")))["ok"]
        assert [g["lat"] for g in to_alice.of("riderLocation")] == [position(n=1)["lat"]]
        # a late joiner of a finished order gets no position
        late, to_late = await client(url, token(settings, "alice"))
        try:
            # a position would have come before the ack
            assert (await late.call("joinRoom", "order-1", namespace=NS))["ok"]
            assert (await send(ravi, position("3", n=1)))["ok"]
            assert to_late.of("riderLocation") == []
        finally:
            await late.disconnect()


NOW_ISO = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

# Each case: fields of a good position replaced by raw JSON text, as a hostile client writes it
# (python-socketio's own client would turn NaN into null); None removes the field.
LYING: list[tuple[str, dict[str, str | None], str]] = [
    ("lat NaN", {"lat": "NaN"}, "lat: a finite number from -90 to 90"),
    ("lat Infinity", {"lat": "Infinity"}, "lat: a finite number from -90 to 90"),
    ("lng -Infinity", {"lng": "-Infinity"}, "lng: a finite number from -180 to 180"),
    ("lat 1e400", {"lat": "1e400"}, "lat: a finite number from -90 to 90"),
    ("lat huge integer", {"lat": "9" * 400}, "lat: a finite number from -90 to 90"),
    ("lat out of range", {"lat": "90.0001"}, "lat: a finite number from -90 to 90"),
    ("lng out of range", {"lng": "-180.5"}, "lng: a finite number from -180 to 180"),
    ("lat a string", {"lat": '"12.97"'}, "lat: a JSON number from -90 to 90"),
    ("lat a bool", {"lat": "true"}, "lat: a JSON number from -90 to 90"),
    ("lat null", {"lat": "null"}, "lat: a JSON number from -90 to 90"),
    ("lat missing", {"lat": None}, "lat: a JSON number from -90 to 90"),
    ("lat superscript", {"lat": '"\u00b2"'}, "lat: a JSON number"),
    ("heading 400", {"heading": "400"}, "heading: a finite number from 0 to 360"),
    ("speed negative", {"speed": "-1"}, "speed: a finite number from 0 to 150"),
    ("speed NaN", {"speed": "NaN"}, "speed: a finite number from 0 to 150"),
    ("accuracy a string", {"accuracy": '"8"'}, "accuracy: a JSON number"),
    ("extra field", {"riderId": '"ravi"'}, "unknown field 'riderId'"),
    ("orderId with zero", {"orderId": '"01"'}, "orderId: order ids are integers"),
    ("orderId as room", {"orderId": '"order-01"'}, "orderId: order ids are integers"),
    ("orderId superscript", {"orderId": '"\u00b2"'}, "orderId: order ids are integers"),
    ("orderId NUL", {"orderId": '"1\\u0000"'}, "orderId: order ids are integers"),
    ("orderId a bool", {"orderId": "true"}, "orderId: an order id is a non-empty string"),
    ("orderId missing", {"orderId": None}, "orderId: an order id is a non-empty string"),
    ("timestamp future", {"timestamp": str(int(time.time() * 1000) + 3_600_000)}, "ahead of"),
    ("timestamp a bool", {"timestamp": "false"}, "timestamp: epoch milliseconds"),
    ("timestamp NaN", {"timestamp": "NaN"}, "timestamp: epoch milliseconds"),
    ("timestamp Infinity", {"timestamp": "Infinity"}, "timestamp: epoch milliseconds"),
    ("timestamp text", {"timestamp": '"yesterday"'}, "timestamp: epoch milliseconds"),
    ("timestamp no zone", {"timestamp": '"2026-12-01T10:00:00"'}, "timestamp: epoch millis"),
    ("timestamp huge", {"timestamp": "1" + "0" * 30}, "timestamp: epoch milliseconds"),
    ("timestamp missing", {"timestamp": None}, "timestamp: epoch milliseconds"),
    ("timestamp NUL for T", {"timestamp": json.dumps(NOW_ISO.replace("T", "\0"))}, "timestamp: e"),
    ("timestamp tab for T", {"timestamp": json.dumps(NOW_ISO.replace("T", "\t"))}, "timestamp: e"),
    ("timestamp NUL at end", {"timestamp": json.dumps(NOW_ISO + "\0")}, "timestamp: epoch"),
]


def raw_position(change: dict[str, str | None]) -> str:
    fields = {k: json.dumps(v) for k, v in position(n=1).items()}
    fields.update(change)  # type: ignore[arg-type]
    return "{" + ",".join(f'"{k}":{v}' for k, v in fields.items() if v is not None) + "}"


@pytest.mark.parametrize("path", ["websocket", "polling"])
@pytest.mark.parametrize(("case", "change", "message"), LYING, ids=[c[0] for c in LYING])
async def test_a_lying_rider_is_refused_with_a_clear_error(
    tracked: TestServer,
    settings: Settings,
    case: str,
    change: dict[str, str | None],
    message: str,
    path: str,
) -> None:
    url = base_url(tracked)
    async with (
        clients(url, settings, ("alice", "customer")) as [(alice, to_alice)],
        raw_session(url, path) as rita,
    ):
        await alice.call("joinRoom", "order-1", namespace=NS)
        await connect_namespace(rita, NS, token(settings, "rita", "rider"))
        await rita.send(f'42{NS},7["locationUpdate",{raw_position(change)}]')
        [answer] = await ack(rita, NS, 7)
        assert answer["ok"] is False, answer
        assert answer["error"]["code"] == "invalid_payload"
        assert message in answer["error"]["message"], answer
        # the connection stays, and a good position still goes through, alone
        await rita.send(f'42{NS},8["locationUpdate",{raw_position({})}]')
        [good] = await ack(rita, NS, 8)
        assert good["ok"], good
        [got] = await to_alice.wait_for("riderLocation")
        assert got["lat"] == position(n=1)["lat"]


async def test_not_an_object_and_iso_timestamps(tracked: TestServer, settings: Settings) -> None:
    async with clients(base_url(tracked), settings, ("rita", "rider")) as [(rita, _)]:
        for bad in ([1, 2], "1", None, 5):
            ack = await send(rita, bad)
            assert ack["error"]["code"] == "invalid_payload"
        ok = await send(
            rita, position(timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        )
        assert ok["ok"], ok


async def test_an_older_position_than_the_last_is_refused(
    tracked: TestServer, settings: Settings
) -> None:
    async with clients(base_url(tracked), settings, ("rita", "rider")) as [(rita, _)]:
        now = int(time.time() * 1000)
        assert (await send(rita, position(timestamp=now)))["ok"]
        ack = await send(rita, position(timestamp=now - 5000))
        assert ack["error"]["code"] == "stale_position"
        ack = await send(rita, position(timestamp=now - 3_600_000))
        assert ack["error"]["code"] == "stale_position"


async def test_one_position_per_second_per_rider_by_default(
    start_server: StartServer, settings: Settings
) -> None:
    server = await start_server()
    async with clients(base_url(server), settings, ("rita", "rider")) as [(rita, _)]:
        assert (await send(rita, position()))["ok"]
        ack = await send(rita, position(n=1))
        assert ack["error"]["code"] == "rate_limited"
        assert ack["error"]["message"].startswith("at most 1/second positions per rider")
        # another connection of the same rider shares the budget
        other, _ = await client(base_url(server), token(settings, "rita", "rider"))
        try:
            assert (await send(other, position(n=2)))["error"]["code"] == "rate_limited"
        finally:
            await other.disconnect()
        # 0.85 s later (a 1 Hz sender's message that came early) it is taken
        await asyncio.sleep(0.85)
        assert (await send(rita, position(n=3)))["ok"]


async def test_a_late_joiner_gets_the_last_position_at_once(
    tracked: TestServer, settings: Settings
) -> None:
    url = base_url(tracked)
    async with clients(url, settings, ("rita", "rider")) as [(rita, _)]:
        for n in range(3):
            assert (await send(rita, position(n=n)))["ok"]
        for transport in TRANSPORTS.values():
            late, to_late = await client(url, token(settings, "alice"), transport)
            try:
                assert (await late.call("joinRoom", "order-1", namespace=NS))["ok"]
                [got] = await to_late.wait_for("riderLocation")
                assert got["lat"] == position(n=2)["lat"]
                assert got["riderId"] == "rita"
            finally:
                await leave(late)


async def test_the_last_position_survives_a_restart_through_the_database(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    first = await start_server(tracking=TRACKING)
    async with clients(base_url(first), settings, ("rita", "rider")) as [(rita, _)]:
        for n in range(4):
            assert (await send(rita, position(n=n)))["ok"]
        row = await _stored(db, position(n=3)["lat"])
        assert row["rider_id"] == "rita"
    # a second node (or this one restarted) has nothing in memory: it reads the table
    second = await start_server(tracking=TRACKING)
    async with clients(base_url(second), settings, ("alice", "customer")) as [(alice, to_alice)]:
        assert (await alice.call("joinRoom", "order-1", namespace=NS))["ok"]
        [got] = await to_alice.wait_for("riderLocation")
        assert (got["lat"], got["riderId"]) == (position(n=3)["lat"], "rita")
        assert got["eta"]["method"] == "straight_line"


async def _stored(db: asyncpg.Connection, lat: float) -> asyncpg.Record:
    async def row() -> asyncpg.Record:
        while True:
            found = await db.fetchrow(
                "SELECT * FROM tiffin_rt.rider_positions WHERE order_id = '1' AND lat = $1", lat
            )
            if found is not None:
                return found
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(row(), 5)


async def test_positions_are_written_at_most_once_per_interval_per_rider(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    server = await start_server(tracking={**TRACKING, "store_interval": 1.0, "trail": True})
    async with clients(base_url(server), settings, ("rita", "rider")) as [(rita, _)]:
        for n in range(20):  # 20 positions within about a second
            assert (await send(rita, position(n=n)))["ok"]
            await asyncio.sleep(0.05)
        await _stored(db, position(n=19)["lat"])
        trail = await db.fetchval("SELECT count(*) FROM tiffin_rt.rider_trail")
        assert 1 <= trail <= 3, trail


async def test_reassignment_moves_the_stream_to_the_new_rider(
    tracked: TestServer, settings: Settings, db: asyncpg.Connection
) -> None:
    url = base_url(tracked)
    async with clients(
        url, settings, ("alice", "customer"), ("rita", "rider"), ("ravi", "rider")
    ) as [(alice, to_alice), (rita, _), (ravi, _)]:
        await alice.call("joinRoom", "order-1", namespace=NS)
        assert (await send(rita, position(n=1)))["ok"]
        await to_alice.wait_for("riderLocation")
        assert (await send(ravi, position(n=2)))["error"]["code"] == "forbidden"
        await db.execute("UPDATE orders SET rider_id = 'ravi' WHERE id = 1")
        ack = await eventually_refused(rita)
        assert ack["error"] == {"code": "forbidden", "message": "order 1 is not assigned to you"}
        assert (await send(ravi, position(n=3)))["ok"]
        # rita's positions accepted before the change reached the server came first; then
        # ravi's, and nothing of rita's after it
        await to_alice.wait_for("riderLocation", 2)
        await eventually(lambda: to_alice.of("riderLocation")[-1]["riderId"] == "ravi")
        riders = [g["riderId"] for g in to_alice.of("riderLocation")]
        assert riders == ["rita"] * (len(riders) - 1) + ["ravi"]
        assert to_alice.of("riderLocation")[-1]["lat"] == position(n=3)["lat"]
    # given back to rita: a late joiner, before her next position, gets none of ravi's
    await db.execute("UPDATE orders SET rider_id = 'rita' WHERE id = 1")
    async with clients(url, settings, ("alice", "customer"), ("ravi", "rider")) as [
        (late, to_late),
        (ravi, _),
    ]:
        await eventually_refused(ravi)
        await late.call("joinRoom", "order-1", namespace=NS)
        await late.call("joinRoom", "order-3", namespace=NS)  # alice may not: a round trip
        assert to_late.of("riderLocation") == []


async def eventually_refused(rider: socketio.AsyncClient) -> Any:
    """The reassignment reaches the server through the log: until then the old rider is in."""
    for n in range(100):
        ack = await send(rider, position(n=10 + n))
        if not ack["ok"]:
            return ack
        await asyncio.sleep(0.05)
    raise AssertionError("the reassigned rider was never refused")


# -- slow clients: latest wins -------------------------------------------------------------------

EVENT = "42/notifications,"


class StalledPolling:
    """A long-polling Socket.IO client that polls only when told to."""

    def __init__(self, http: aiohttp.ClientSession, endpoint: str) -> None:
        self.http = http
        self.endpoint = endpoint
        self.events: list[tuple[str, Any]] = []
        self.acks: dict[int, Any] = {}

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, url: str, tok: str) -> StalledPolling:
        async with http.get(f"{url}/socket.io/?EIO=4&transport=polling") as response:
            opening = await response.text()
        sid = json.loads(opening[1:])["sid"]
        client = cls(http, f"{url}/socket.io/?EIO=4&transport=polling&sid={sid}")
        await client.post("40/notifications," + json.dumps({"token": tok}))
        while not any(p.startswith("40/notifications,") for p in await client.poll()):
            pass
        return client

    async def post(self, text: str) -> None:
        async with self.http.post(self.endpoint, data=text.encode()) as response:
            assert response.status == 200, await response.text()

    async def poll(self) -> list[str]:
        async with asyncio.timeout(10), self.http.get(self.endpoint) as response:
            body = await response.text()
            assert response.status == 200, body
        packets = body.split("\x1e")
        for pkt in packets:
            if pkt == "2":
                await self.post("3")
            elif pkt.startswith(EVENT):
                name, data = json.loads(pkt[len(EVENT) :])
                self.events.append((name, data))
            elif pkt.startswith("43/notifications,"):
                rest = pkt[len("43/notifications,") :]
                ack_id, _, args = rest.partition("[")
                self.acks[int(ack_id)] = json.loads("[" + args)[0]
        return packets

    async def call(self, ack_id: int, event: str, data: Any) -> Any:
        await self.post(f"42/notifications,{ack_id}" + json.dumps([event, data]))
        while ack_id not in self.acks:
            await self.poll()
        return self.acks[ack_id]

    def locations(self) -> list[dict[str, Any]]:
        return [d for name, d in self.events if name == "riderLocation"]


async def test_a_slow_polling_client_gets_the_newest_position_never_a_backlog(
    tracked: TestServer, settings: Settings
) -> None:
    url = base_url(tracked)
    async with (
        aiohttp.ClientSession() as http,
        clients(url, settings, ("rita", "rider"), ("alice", "customer")) as [
            (rita, _),
            (fast, to_fast),
        ],
    ):
        slow = await StalledPolling.open(http, url, token(settings, "alice"))
        assert (await slow.call(1, "joinRoom", "order-1"))["ok"]
        await fast.call("joinRoom", "order-1", namespace=NS)
        sent = [position(n=n) for n in range(10)]
        for data in sent:  # the slow client does not poll meanwhile
            assert (await send(rita, data))["ok"]
        # the client that keeps up got every one, in order
        got = await to_fast.wait_for("riderLocation", 10)
        assert [g["lat"] for g in got] == [d["lat"] for d in sent]
        # the slow one: the first (queued before it fell behind), then only the newest
        while len(slow.locations()) < 2:
            await slow.poll()
        assert [g["lat"] for g in slow.locations()] == [sent[0]["lat"], sent[-1]["lat"]]
        async with http.get(f"{url}/healthz") as response:
            health = await response.json()
        assert health["tracking"]["socketio"]["superseded"] == 8
        assert health["tracking"]["socketio"]["waiting"] == 0


async def test_a_slow_client_that_leaves_mid_way_is_forgotten(
    tracked: TestServer, settings: Settings
) -> None:
    url = base_url(tracked)
    async with (
        aiohttp.ClientSession() as http,
        clients(url, settings, ("rita", "rider")) as [(rita, _)],
    ):
        slow = await StalledPolling.open(http, url, token(settings, "alice"))
        assert (await slow.call(1, "joinRoom", "order-1"))["ok"]
        for n in range(3):
            assert (await send(rita, position(n=n)))["ok"]

        async def waiting() -> int:
            async with http.get(f"{url}/healthz") as response:
                return int((await response.json())["tracking"]["socketio"]["waiting"])

        assert await waiting() == 1
        await slow.post("1")  # Engine.IO close: the client leaves
        for _ in range(100):
            if await waiting() == 0:
                break
            await asyncio.sleep(0.05)
        assert await waiting() == 0
        assert (await send(rita, position(n=5)))["ok"]  # the server carries on


# -- SSE -------------------------------------------------------------------------------------


def location_url(url: str, order: str = "1") -> str:
    return f"{url}/api/notifications/orders/{order}/location"


def bearer(settings: Settings, sub: str, role: str = "customer") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(settings, sub, role)}"}


async def test_sse_streams_the_latest_first_then_live_and_ends_on_delivery(
    tracked: TestServer, settings: Settings, db: asyncpg.Connection
) -> None:
    url = base_url(tracked)
    async with (
        clients(url, settings, ("rita", "rider")) as [(rita, _)],
        aiohttp.ClientSession() as http,
    ):
        for n in range(3):
            assert (await send(rita, position(n=n)))["ok"]
        async with http.get(location_url(url), headers=bearer(settings, "alice")) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            events = sse_events(response)
            first = await asyncio.wait_for(anext(events), 5)
            assert (first.event, first.id) == (None, None)
            assert first.json()["lat"] == position(n=2)["lat"]
            for n in (3, 4):
                assert (await send(rita, position(n=n)))["ok"]
                got = await asyncio.wait_for(anext(events), 5)
                assert got.json()["lat"] == position(n=n)["lat"]
                assert got.json()["riderId"] == "rita"
            await db.execute("UPDATE orders SET status = 'delivered' WHERE id = 1")
            end = await asyncio.wait_for(anext(events), 5)
            assert end.event == "end"
            assert end.json() == {
                "code": "order_closed",
                "message": "order 1 is delivered; no more positions",
            }
            assert [e async for e in events] == []
        async with http.get(location_url(url), headers=bearer(settings, "alice")) as response:
            assert response.status == 204


async def test_sse_location_has_the_status_streams_policy(
    tracked: TestServer, settings: Settings
) -> None:
    url = base_url(tracked)
    async with aiohttp.ClientSession() as http:
        cases = [
            (location_url(url), {}, 401),
            (location_url(url), bearer(settings, "bob"), 403),
            (location_url(url, "999"), bearer(settings, "bob"), 403),
            (location_url(url, "999"), bearer(settings, "sam", "support"), 404),
            (location_url(url, "01"), bearer(settings, "alice"), 400),
            (location_url(url, "order-1"), bearer(settings, "alice"), 400),
            (location_url(url, "3"), bearer(settings, "rita", "rider"), 403),
        ]
        for address, headers, status in cases:
            async with http.get(address, headers=headers) as response:
                assert response.status == status, (address, headers)
                assert "error" in await response.json()


async def test_sse_stream_of_a_reassigned_rider_ends_the_customers_goes_on(
    tracked: TestServer, settings: Settings, db: asyncpg.Connection
) -> None:
    url = base_url(tracked)
    async with (
        aiohttp.ClientSession() as http,
        clients(url, settings, ("ravi", "rider")) as [(ravi, _)],
        http.get(location_url(url), headers=bearer(settings, "rita", "rider")) as old,
        http.get(location_url(url), headers=bearer(settings, "alice")) as customer,
    ):
        assert (old.status, customer.status) == (200, 200)
        to_old, to_customer = sse_events(old), sse_events(customer)
        await db.execute("UPDATE orders SET rider_id = 'ravi' WHERE id = 1")
        end = await asyncio.wait_for(anext(to_old), 5)
        assert (end.event, end.json()["code"]) == ("end", "forbidden")
        for n in range(100):
            ack = await send(ravi, position(n=n))
            if ack["ok"]:
                break
            await asyncio.sleep(0.05)
        got = await asyncio.wait_for(anext(to_customer), 5)
        assert got.json()["riderId"] == "ravi"


async def test_an_sse_client_leaving_mid_stream_is_let_go(
    tracked: TestServer, settings: Settings
) -> None:
    url = base_url(tracked)
    async with clients(url, settings, ("rita", "rider")) as [(rita, _)]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(location_url(url), headers=bearer(settings, "alice")) as response,
        ):
            assert response.status == 200
        # the stream is gone within about a second (the departures timer)
        async with aiohttp.ClientSession() as http:

            async def streams() -> int:
                async with http.get(f"{url}/healthz") as response:
                    return int((await response.json())["tracking"]["sse"]["streams"])

            for _ in range(60):
                if await streams() == 0:
                    break
                await asyncio.sleep(0.05)
            assert await streams() == 0
        assert (await send(rita, position()))["ok"]
