"""Protocol conformance: raw Engine.IO / Socket.IO frames, the same behaviour on every path.

Each test runs on the lean WebSocket transport (`fast`) and on python-engineio's own
(`stock`, chosen by `delivery.websocket_compression: true`), each over WebSocket first,
long-polling, and long-polling upgraded to WebSocket. A client that breaks the protocol gets
one WARNING line and its session ends at once; one that is only refused (a namespace without
a token, a reserved event name) is told so and stays.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import aiohttp
import asyncpg
import pytest

from tests.conftest import StartServer
from tests.helpers import base_url, make_settings, token
from tests.raw_engineio import PATHS, TRANSPORTS, ack, connect_namespace, raw_session
from tiffin_rt.config import Settings

NS = "/notifications"
LIMIT = 4096  # limits.max_message_bytes for these servers


@dataclass
class Served:
    url: str
    settings: Settings
    path: str


@pytest.fixture(
    params=[(t, p) for t in TRANSPORTS for p in PATHS], ids=lambda combo: "-".join(combo)
)
async def served(request: pytest.FixtureRequest, start_server: StartServer, dsn: str) -> Served:
    transport, path = request.param
    settings = make_settings(
        dsn,
        delivery=TRANSPORTS[transport],
        limits={"max_message_bytes": LIMIT, "abuse_strikes": "6/minute"},
    )
    server = await start_server(settings)
    return Served(base_url(server), settings, path)


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
