"""Web Push against hostile clients and push services: answers that trickle, garble or never end,
endpoints on other ports, and one user registering thousands of devices."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from tests.helpers import eventually
from tests.push_service import PushServiceForTests, b64url, push_service
from tests.test_push import StartServer, call, notify, start
from tiffin_rt.core.push import PushSubscription
from tiffin_rt.push.guard import GuardedPoster, PublicOnlyResolver
from tiffin_rt.push.keys import PUSH
from tiffin_rt.push.sender import PushSender
from tiffin_rt.push.vapid import KeyPair, VapidSigner, generate_keys

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
LOCAL = frozenset({"127.0.0.1"})


@pytest.fixture
def vapid() -> KeyPair:
    return generate_keys()


@pytest.fixture
async def pushes(vapid: KeyPair) -> AsyncIterator[PushServiceForTests]:
    async with push_service(vapid.public_key) as service:
        yield service


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    await reader.readexactly(length)


async def _answer(writer: asyncio.StreamWriter, *chunks: bytes, pause: float = 0.0) -> None:
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(pause)
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def trickling(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A 201, one byte every 0.3 s: never complete within push.timeout."""
    await _read_request(reader)
    answer = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
    await _answer(writer, *(answer[n : n + 1] for n in range(len(answer))), pause=0.3)


async def huge_header(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    await _answer(writer, b"HTTP/1.1 201 Created\r\nX-Big: " + b"a" * 2_000_000 + b"\r\n\r\n")


async def many_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    await _answer(writer, b"HTTP/1.1 201 Created\r\n" + b"X-A: b\r\n" * 100_000 + b"\r\n")


async def endless_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    chunk = b"1000\r\n" + b"x" * 4096 + b"\r\n"
    await _answer(
        writer, b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n", *[chunk] * 10_000
    )


async def garbled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    await _answer(writer, b"\x00\xff\r\nFAKE LOG LINE: push sent\r\n\r\n")


@pytest.mark.parametrize(
    ("handler", "status"),
    [
        (trickling, None),
        (huge_header, None),
        (many_headers, None),
        (endless_body, 201),
        (garbled, None),
    ],
)
async def test_a_hostile_push_service_costs_one_bounded_attempt(
    vapid: KeyPair, pushes: PushServiceForTests, handler: Handler, status: int | None
) -> None:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    device = pushes.new_device()
    sub = PushSubscription(
        f"http://127.0.0.1:{port}/push/x", device.public_key(), b64url(device.auth)
    )
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=1.0),
        connector=aiohttp.TCPConnector(resolver=PublicOnlyResolver(LOCAL)),
    ) as session:
        sender = PushSender(
            session,
            VapidSigner(vapid.private_key, "mailto:a@b.example"),
            ttl=60,
            urgency="high",
            trusted=LOCAL,
        )
        try:
            # push.timeout is 1 s: the guard here is only against a hang
            outcome = await asyncio.wait_for(sender.send(sub, b'{"title": "x"}'), 10)
        finally:
            server.close()
    assert outcome.status == status, outcome
    # What the service sent is logged on one line (aiohttp quotes its bytes).
    assert "\n" not in outcome.error
    assert "\r" not in outcome.error


async def test_an_endpoint_on_another_port_is_refused_and_never_posted_to(
    start_server: StartServer, vapid: KeyPair, pushes: PushServiceForTests, db: asyncpg.Connection
) -> None:
    """Every push service answers on 443; another port is some other server (SSH, SMTP, an
    admin page) that a user could otherwise make the server POST to and learn it answered."""
    server = await start(start_server, vapid, max_attempts=5)
    sub = pushes.subscription(pushes.new_device()) | {"endpoint": "https://push.example.com:22/x"}
    status, body = await call(server, "POST", "alice", sub)
    assert (status, body["error"]["code"]) == (400, "bad_request")
    assert "port 443" in body["error"]["message"]
    # A device stored before the rule is never posted to either, and not retried.
    await db.execute(
        "INSERT INTO tiffin_rt.push_subscriptions (user_id, endpoint, p256dh, auth)"
        " VALUES ('alice', 'https://93.184.215.14:8443/x', $1, $2)",
        sub["keys"]["p256dh"],
        sub["keys"]["auth"],
    )
    await notify(db, "alice", "to an old device")
    await eventually(lambda: server.app[PUSH].describe()["failed"] == 1)
    assert server.app[PUSH].describe()["retried"] == 0
    # and the user can still remove it
    assert await call(server, "DELETE", "alice", {"endpoint": "https://93.184.215.14:8443/x"}) == (
        200,
        {"deleted": 1},
    )


async def test_a_user_registering_hundreds_of_devices_keeps_the_newest_and_is_told(
    start_server: StartServer, vapid: KeyPair, pushes: PushServiceForTests, db: asyncpg.Connection
) -> None:
    server = await start(start_server, vapid, max_subscriptions_per_user=5)
    devices = [pushes.new_device() for _ in range(300)]
    forgotten = []
    for device in devices:
        status, body = await call(server, "POST", "mallory", pushes.subscription(device))
        assert status == 201
        forgotten.append(body["forgotten"])
    assert forgotten == [0] * 5 + [1] * 295  # each past the fifth displaced the oldest
    stored = await db.fetchval(
        "SELECT count(*) FROM tiffin_rt.push_subscriptions WHERE user_id = 'mallory'"
    )
    assert stored == 5
    listed = (await call(server, "GET", "mallory"))[1]["subscriptions"]
    assert [s["endpoint"] for s in listed] == [
        pushes.subscription(d)["endpoint"] for d in reversed(devices[-5:])
    ]


async def test_devices_registered_at_once_still_keep_the_per_user_bound(
    start_server: StartServer, vapid: KeyPair, pushes: PushServiceForTests, db: asyncpg.Connection
) -> None:
    """A user's (or an attacker's) script registering many devices at once: each notification
    is pushed to every stored device, so the bound holds whatever the concurrency."""
    server = await start(start_server, vapid, max_subscriptions_per_user=3)
    devices = [pushes.new_device() for _ in range(120)]
    at_once = asyncio.Semaphore(12)  # within limits.connections_per_user (20 in flight)

    async def register(device: Any) -> tuple[int, Any]:
        async with at_once:
            return await call(server, "POST", "mallory", pushes.subscription(device))

    answers = await asyncio.gather(*(register(d) for d in devices))
    assert {status for status, _ in answers} == {201}
    stored = await db.fetchval(
        "SELECT count(*) FROM tiffin_rt.push_subscriptions WHERE user_id = 'mallory'"
    )
    assert stored == 3
    # Each answer told the truth: 120 registered, 117 forgotten along the way.
    assert sum(body["forgotten"] for _, body in answers) == 120 - 3
    assert len((await call(server, "GET", "mallory"))[1]["subscriptions"]) == 3


async def test_connections_stay_open_to_a_bounded_number_of_push_services() -> None:
    """Devices on many distinct hosts (one user's ten, or many users') leave no open socket per
    host: aiohttp bounds connections in use, not idle ones."""
    answered = 0

    async def accept(request: web.Request) -> web.Response:
        nonlocal answered
        await request.read()
        answered += 1
        return web.Response(status=201)

    app = web.Application()
    app.router.add_post("/push/{token}", accept)
    runner = web.AppRunner(app)
    await runner.setup()
    ports = []
    for _ in range(40):
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ports.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=PublicOnlyResolver(LOCAL))
        ) as session:
            poster = GuardedPoster(session, LOCAL, keep_alive_origins=8)
            for _ in range(2):
                for port in ports:
                    answer = await poster.post(f"http://127.0.0.1:{port}/push/x", data=b"x")
                    assert answer.status == 201
            assert answered == 80
            assert runner.server is not None
            server = runner.server
            # the first eight services kept theirs (reused on the second round), no other did
            await eventually(lambda: len(server.connections) == 8)
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    "retry_after",
    [
        "99999999999999999999 Jan 2026 00:00:00 GMT",  # a day no C long holds: OverflowError
        "Mon, 01 Jan 99999 00:00:00 GMT",
        "9" * 400,  # more seconds than a float holds
        "-5",
        "soon",
    ],
)
async def test_an_unreadable_retry_after_is_retried_with_backoff(
    start_server: StartServer,
    vapid: KeyPair,
    pushes: PushServiceForTests,
    db: asyncpg.Connection,
    retry_after: str,
) -> None:
    """A push service's header is its own to garble: the push is retried as if it gave none
    (or waits the longest delay), never lost to an exception nor left out of the counts."""
    server = await start(start_server, vapid, max_attempts=2, retry_max_delay=1)
    phone = pushes.new_device()
    phone.answers.extend([(429, {"Retry-After": retry_after}), (201, {})])
    await call(server, "POST", "alice", pushes.subscription(phone))
    await notify(db, "alice", "after the garbled 429")
    refused, accepted = await pushes.wait_for(phone, 2)
    assert [p.status for p in (refused, accepted)] == [429, 201]
    await eventually(lambda: server.app[PUSH].describe()["sent"] == 1)
    stats = server.app[PUSH].describe()
    assert (stats["retried"], stats["failed"]) == (1, 0)
