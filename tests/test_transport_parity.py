"""Transport parity: the same tests, and the same behaviour, on every transport a client gets.

`lean-websocket`: a client that opens on WebSocket gets the lean transport (websocket.py,
wsconnection.py); `stock-websocket`: python-engineio's own WebSocket (what
`delivery.websocket_compression: true` selects); `stock-polling`: long-polling;
`stock-upgrade`: long-polling upgraded to WebSocket (socket.io-client's default). The official
python-socketio client where it can say what is tested, raw Engine.IO / Socket.IO frames
(tests/raw_engineio.py) where a hostile or silent client is needed. A client that breaks the
protocol gets one WARNING line and its session ends at once; one that is only refused (a
namespace without a token, a reserved event name) is told so and stays. The first test checks
that a WebSocket-first client really gets the lean transport: a silent fallback fails it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
import socketio
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import Received, base_url, make_settings, token
from tests.raw_engineio import ack, connect_namespace, raw_session
from tiffin_rt import keys
from tiffin_rt.config import Settings
from tiffin_rt.transports.socketio.stock import StockSocket
from tiffin_rt.transports.socketio.websocket import LeanWebSocket

NS = "/notifications"
LIMIT = 4096  # limits.max_message_bytes for these servers
CLIENT_TRANSPORTS = {"websocket": ["websocket"], "polling": ["polling"], "upgrade": None}


@dataclass(frozen=True)
class Transport:
    path: str  # how the client connects: websocket, polling or upgrade (tests/raw_engineio.py)
    compression: bool  # delivery.websocket_compression
    socket_class: type[Any]  # the server's Engine.IO socket for such a client


TRANSPORTS = {
    "lean-websocket": Transport("websocket", False, LeanWebSocket),
    "stock-websocket": Transport("websocket", True, StockSocket),
    "stock-polling": Transport("polling", False, StockSocket),
    "stock-upgrade": Transport("upgrade", False, StockSocket),
}
WEBSOCKETS = [name for name, t in TRANSPORTS.items() if t.path != "polling"]


@dataclass
class Served:
    server: TestServer
    url: str
    settings: Settings
    transport: Transport

    @property
    def path(self) -> str:
        return self.transport.path

    @property
    def sio(self) -> Any:
        return self.server.app[keys.SOCKETIO]


async def serve(
    start_server: StartServer, dsn: str, name: str, **sections: dict[str, Any]
) -> Served:
    transport = TRANSPORTS[name]
    limits = {"max_message_bytes": LIMIT, "abuse_strikes": "6/minute"} | sections.pop("limits", {})
    delivery = {"websocket_compression": transport.compression} | sections.pop("delivery", {})
    settings = make_settings(dsn, limits=limits, delivery=delivery, **sections)
    server = await start_server(settings)
    return Served(server, base_url(server), settings, transport)


@pytest.fixture(params=list(TRANSPORTS))
async def served(request: pytest.FixtureRequest, start_server: StartServer, dsn: str) -> Served:
    return await serve(start_server, dsn, request.param)


async def official_client(served: Served) -> tuple[socketio.AsyncClient, Received]:
    """python-socketio's client on this transport (upgraded to WebSocket if that is its path)."""
    client = socketio.AsyncClient(reconnection=False)
    received = Received()
    for name in ("orderStatusUpdate", "disconnect"):
        client.on(name, (lambda n: lambda data=None: received.record(n, data))(name), namespace=NS)
    await client.connect(
        served.url,
        namespaces=[NS],
        auth={"token": token(served.settings, "alice")},
        transports=CLIENT_TRANSPORTS[served.path],
        wait_timeout=5,
    )
    if served.path == "upgrade":
        for _ in range(100):
            if client.transport() == "websocket":
                break
            await asyncio.sleep(0.05)
        assert client.transport() == "websocket"
    return client, received


@contextmanager
def warnings_logged(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """The WARNING (and worse) records logged inside the block."""
    caplog.set_level(logging.WARNING)
    caplog.clear()
    found: list[logging.LogRecord] = []
    yield found
    found.extend(r for r in caplog.records if r.levelno >= logging.WARNING)


async def socketio_connections(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as response:
        count: int = (await response.json())["connections"]["socketio"]
        return count


async def eventually_no_socketio(url: str) -> None:
    for _ in range(100):
        if await socketio_connections(url) == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the server still counts the session")


# -- which transport, and the official client on it --------------------------------------------


async def test_websocket_first_clients_get_the_lean_transport_the_others_the_stock_one(
    served: Served, db: asyncpg.Connection
) -> None:
    client, received = await official_client(served)
    try:
        assert served.sio.lean_transport is True  # the startup check found every internal
        socket = served.sio.eio.sockets[client.eio.sid]
        assert type(socket) is served.transport.socket_class
        assert socket.upgraded is (served.path != "polling")  # a WebSocket is "upgraded"
        joined = await client.call("joinRoom", "order-1", namespace=NS, timeout=5)
        assert joined["ok"] is True
        await db.execute("UPDATE orders SET status = 'confirmed' WHERE id = 1")
        [update] = await received.wait_for("orderStatusUpdate")
        assert (update["orderId"], update["status"]) == ("1", "confirmed")
    finally:
        await client.disconnect()
    await eventually_no_socketio(served.url)


async def test_acks_answer_each_call_and_binary_arguments_arrive(served: Served) -> None:
    client, _ = await official_client(served)
    try:
        rooms = [f"order-{n}" for n in range(1, 9)]  # under limits.events_per_connection
        answers = await asyncio.gather(
            *(client.call("leaveRoom", room, namespace=NS, timeout=5) for room in rooms)
        )
        assert [(a["ok"], a["room"]) for a in answers] == [(True, room) for room in rooms]
        # A bytes argument travels as a binary attachment; it reaches the handler (which wants
        # text for a room name) on every transport.
        answer = await client.call("joinRoom", b"order-1", namespace=NS, timeout=5)
        assert answer["error"]["code"] == "invalid_room"
        assert client.connected
    finally:
        await client.disconnect()


async def test_max_payload_is_announced_and_enforced_for_the_official_client(
    served: Served,
) -> None:
    async with raw_session(served.url, served.path) as session:
        assert session.handshake["maxPayload"] == LIMIT
    client, received = await official_client(served)
    try:
        near = await client.call("joinRoom", "x" * (LIMIT - 200), namespace=NS, timeout=5)
        assert near["error"]["code"] == "invalid_room"  # handled: under the limit
        await client.emit("joinRoom", "x" * LIMIT, namespace=NS)
        await received.wait_for("disconnect")
    finally:
        await client.disconnect()
    await eventually_no_socketio(served.url)


# -- pings -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TRANSPORTS))
async def test_pings_answered_keep_the_connection(
    start_server: StartServer, dsn: str, name: str
) -> None:
    served = await serve(start_server, dsn, name, delivery={"ping_interval": 1, "ping_timeout": 1})
    async with raw_session(served.url, served.path) as session:
        await connect_namespace(session, NS, token(served.settings, "alice"))
        pings = 0
        while pings < 3:  # the next ping is sent only once the last one was answered
            message = await session.next_unanswered()
            assert message not in (None, "1"), "the session ended"
            if message == "2":
                pings += 1
                await session.send("3")
        await session.send(f'42{NS},1["joinRoom","order-1"]')
        [joined] = await ack(session, NS, 1)
        assert joined["ok"] is True


@pytest.mark.parametrize("name", list(TRANSPORTS))
async def test_a_client_that_stops_answering_pings_is_closed_and_forgotten(
    start_server: StartServer, dsn: str, name: str
) -> None:
    delivery = {"ping_interval": 1, "ping_timeout": 0.5}
    served = await serve(start_server, dsn, name, delivery=delivery)
    async with raw_session(served.url, served.path) as session:
        await connect_namespace(session, NS, token(served.settings, "alice"))
        assert await socketio_connections(served.url) == 1
        seen: list[str | bytes] = []
        while (message := await session.next_unanswered()) not in (None, "1"):  # never answers
            assert message is not None
            seen.append(message)
        session.ended = True
        assert "2" in seen
    await eventually_no_socketio(served.url)


# -- WebSocket close codes ---------------------------------------------------------------------


@pytest.mark.parametrize("name", WEBSOCKETS)
@pytest.mark.parametrize(
    ("case", "code"), [("leaving", 1001), ("too big", 1009), ("ended by the server", 1000)]
)
async def test_websocket_close_codes(
    start_server: StartServer, dsn: str, name: str, case: str, code: int
) -> None:
    served = await serve(start_server, dsn, name)
    async with raw_session(served.url, served.path) as session:
        await connect_namespace(session, NS, token(served.settings, "alice"))
        ws = session.ws
        assert ws is not None
        if case == "leaving":  # a browser leaving the page: its code is echoed
            await ws.close(code=1001)
        else:
            await ws.send_str("4" + "x" * LIMIT if case == "too big" else "abc")
            while not ws.closed:
                await ws.receive(timeout=5)
        assert ws.close_code == code
    await eventually_no_socketio(served.url)


# -- acks in order -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TRANSPORTS))
async def test_a_flood_of_events_is_answered_whole_and_in_order(
    start_server: StartServer, dsn: str, name: str
) -> None:
    flood = "1000/second"
    served = await serve(
        start_server,
        dsn,
        name,
        limits={
            "events_per_connection": flood,
            "events_per_user": flood,
            "max_message_bytes": 65536,
        },
    )
    async with raw_session(served.url, served.path) as session:
        await connect_namespace(session, NS, token(served.settings, "alice"))
        count = 300  # far past what a lean connection may have waiting before reading pauses
        events = [f'42{NS},{n}["leaveRoom","order-{n}"]' for n in range(1, count + 1)]
        # A long-polling POST may carry 16 packets (python-engineio's max_decode_packets).
        batch = 16 if served.path == "polling" else count
        for first in range(0, count, batch):
            await session.send(*events[first : first + batch])
        acks: list[int] = []
        replies: list[object] = []
        while len(acks) < count:
            text = await session.receive()
            assert isinstance(text, str), text
            if text.startswith(f"43{NS},"):
                body = text[len(f"43{NS},") :]
                ack_id = body[: body.index("[")]
                acks.append(int(ack_id))
                replies.extend(json.loads(body[len(ack_id) :]))
        assert acks == list(range(1, count + 1))
        assert replies == [{"ok": True, "room": f"order-{i}"} for i in range(1, count + 1)]


# -- protocol faults and refusals (raw frames) -------------------------------------------------


def assert_nothing_answered(seen: list[str | bytes], case: str = "") -> None:
    """Before its session ended, the client got no answer to what broke the protocol.

    (What a connection is sent on connect, such as `unreadCount`, may still arrive.)
    """
    answers = [m for m in seen if not (isinstance(m, str) and m.startswith(f"42{NS},"))]
    assert answers == [], case


async def assert_ends_with_one_warning(
    served: Served, caplog: pytest.LogCaptureFixture, *messages: str | bytes
) -> None:
    """Each message, sent alone on a fresh joined session, ends it with one WARNING line."""
    for message in messages:
        async with raw_session(served.url, served.path) as session:
            await connect_namespace(session, NS, token(served.settings, "alice"))
            with warnings_logged(caplog) as logged:
                await session.send(message)
                assert_nothing_answered(await session.until_end(), repr(message))
            assert len(logged) == 1, (repr(message), [r.getMessage() for r in logged])
            assert logged[0].exc_info is None
            assert "closing" in logged[0].getMessage()


async def test_invalid_engineio_packets_end_the_session(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    # No packet type, an empty message, bad base64 in a binary packet, types Engine.IO lacks.
    await assert_ends_with_one_warning(served, caplog, "abc", "", "b1", "x4", "7", "9")


async def test_malformed_socketio_packets_end_the_session(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    await assert_ends_with_one_warning(
        served,
        caplog,
        "4abc",  # no Socket.IO packet type
        "42/notifications,{}",  # not an event array
        '42/notifications,[{"joinRoom":1}]',  # an event name that is a JSON object
        '42/notifications,[["joinRoom"]]',
        '42/notifications,abc["joinRoom","order-1"]',  # not an ack id
        '42/support,["history",{}]',  # a namespace it has not joined
        '42["joinRoom","order-1"]',  # the root namespace, never joined
    )


async def test_binary_attachments_are_counted_and_capped(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    placeholder = '{"_placeholder":true,"num":0}'
    for count in ("1000000", "9999999999", "11"):
        await assert_ends_with_one_warning(
            served, caplog, f'45{count}-{NS},["joinRoom",{placeholder}]'
        )
    # Few attachments, but more than limits.max_message_bytes in all.
    async with raw_session(served.url, served.path) as session:
        await connect_namespace(session, NS, token(served.settings, "alice"))
        with warnings_logged(caplog) as logged:
            await session.send(f'453-{NS},["joinRoom",{placeholder}]')
            for _ in range(2):  # the second one passes the limit
                await session.send(b"x" * (LIMIT // 2))
            assert_nothing_answered(await session.until_end())
        assert len(logged) == 1
    # Within both limits the event is handled (and refused: a room name is text).
    async with raw_session(served.url, served.path) as session:
        await connect_namespace(session, NS, token(served.settings, "alice"))
        await session.send(f'451-{NS},7["joinRoom",{placeholder}]')
        await session.send(b"order-1")
        [answer] = await ack(session, NS, 7)
        assert answer["error"]["code"] == "invalid_room"


async def test_namespaces_without_a_token_check_are_refused(served: Served) -> None:
    async with raw_session(served.url, served.path) as session:
        for packet, namespace in (("40", ""), ("40/random,", "/random,"), ("40/admin", "/admin,")):
            await session.send(packet)
            refusal = await session.receive()
            assert isinstance(refusal, str)
            assert refusal.startswith(f"44{namespace}"), refusal
            body = json.loads(refusal[2 + len(namespace) :])
            assert body["message"] == "Invalid namespace"
            assert body["data"]["code"] == "invalid_namespace"
        # Refused, not closed: the session can still join a real namespace.
        await connect_namespace(session, NS, token(served.settings, "alice"))
        await session.send(f'42{NS},1["joinRoom","order-1"]')
        [joined] = await ack(session, NS, 1)
        assert (joined["ok"], joined["room"]) == (True, "order-1")


async def test_reserved_event_names_are_unknown_events(
    served: Served, db: asyncpg.Connection
) -> None:
    bob = token(served.settings, "bob")
    async with raw_session(served.url, served.path) as session:
        await connect_namespace(session, NS, token(served.settings, "alice"))
        await session.send(f'42{NS},1["joinRoom","order-1"]')
        assert (await ack(session, NS, 1))[0]["ok"] is True
        names = ["disconnect", "connect", "connect_error", "__disconnect_final", "disconnecting"]
        for number, name in enumerate(names, start=2):
            args = [name, {"token": bob}] if name == "connect" else [name]
            await session.send(f"42{NS},{number}" + json.dumps(args))
            [answer] = await ack(session, NS, number)
            assert answer["error"]["code"] == "unknown_event", name
        # Still alice, still in order-1: the update arrives (the marker that nothing else did).
        await db.execute("UPDATE orders SET status = 'confirmed' WHERE id = 1")
        while True:
            message = await session.receive()
            assert isinstance(message, str)
            if message.startswith(f'42{NS},["orderStatusUpdate"'):
                break
            assert '"error"' not in message, message
        await session.send(f'42{NS},9["joinRoom","order-3"]')  # bob's order
        assert (await ack(session, NS, 9))[0]["error"]["code"] == "forbidden"


async def test_abuse_closes_the_whole_connection(served: Served) -> None:
    async with raw_session(served.url, served.path) as session:
        await connect_namespace(session, NS, token(served.settings, "alice"))
        for number in range(1, 8):  # the seventh is past abuse_strikes
            await session.send(f'42{NS},{number}["disconnect"]')
        seen = await session.until_end()
        errors = [m for m in seen if isinstance(m, str) and m.startswith(f'42{NS},["error"')]
        assert len(errors) == 1
        assert json.loads(errors[0][len(f"42{NS},") :])[1]["code"] == "rate_limited"


async def test_acks_nobody_asked_for_are_dropped_silently(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    async with raw_session(served.url, served.path) as session:
        await connect_namespace(session, NS, token(served.settings, "alice"))
        with warnings_logged(caplog) as logged:
            await session.send(f'43{NS},12["x"]', f"43{NS},0[]", f'43{NS},["x"]', "43/nowhere,1[]")
            await session.send(f'42{NS},5["joinRoom","order-1"]')
            [joined] = await ack(session, NS, 5)
            assert (joined["ok"], joined["room"]) == (True, "order-1")
        assert logged == []


async def test_oversized_messages_end_the_session(served: Served) -> None:
    async with raw_session(served.url, served.path) as session:
        await connect_namespace(session, NS, token(served.settings, "alice"))
        await session.send(f'42{NS},["joinRoom","' + "x" * LIMIT + '"]')
        assert_nothing_answered(await session.until_end())
        if served.path == "polling":
            assert session.post_status == 413
            assert session.post_body["error"]["code"] == "too_large"


async def test_ended_sessions_are_forgotten(served: Served) -> None:
    async with raw_session(served.url, served.path) as session:
        await connect_namespace(session, NS, token(served.settings, "alice"))
        await session.send("abc")
        assert_nothing_answered(await session.until_end())
    for _ in range(100):
        if await socketio_connections(served.url) == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the server still counts the session")
