"""Web Push: subscriptions over HTTP, pushes to users with no live connection, checked by a push
service of our own that verifies VAPID and decrypts each push as the browser would."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import socketio
from aiohttp.test_utils import TestServer

from tests.helpers import (
    Received,
    base_url,
    eventually,
    leave,
    marker_arrived,
    recording_client,
    token,
)
from tests.push_service import PushServiceForTests, push_service
from tiffin_rt.config import ConfigError, Settings, load_settings
from tiffin_rt.keys import SETTINGS
from tiffin_rt.push.keys import PUSH
from tiffin_rt.push.vapid import KeyPair, VapidSigner, generate_keys

StartServer = Callable[..., Awaitable[TestServer]]
ROUTE = "/api/push/subscriptions"


@pytest.fixture
def vapid() -> KeyPair:
    return generate_keys()


@pytest.fixture
async def pushes(vapid: KeyPair) -> AsyncIterator[PushServiceForTests]:
    async with push_service(vapid.public_key) as service:
        yield service


def push_config(vapid: KeyPair, **extra: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "vapid_private_key": vapid.private_key,
        "vapid_subject": "mailto:ops@tiffin.test",
        "http_hosts": ["127.0.0.1"],
        "retry_min_delay": 0.05,
        "retry_max_delay": 5,
        "ttl": 3600,
        "urgency": "high",
        "claim_delay": 0,
    } | extra


async def start(start_server: StartServer, vapid: KeyPair, **extra: Any) -> TestServer:
    # Every HTTP request counts against limits.connect_per_ip; these tests make many.
    return await start_server(
        push=push_config(vapid, **extra), limits={"connect_per_ip": "1000/minute"}
    )


def bearer(server: TestServer, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(_settings(server), user)}"}


def _settings(server: TestServer) -> Settings:
    return server.app[SETTINGS]


async def call(
    server: TestServer, method: str, user: str | None, body: Any = None, *, raw: bytes | None = None
) -> tuple[int, Any]:
    headers = bearer(server, user) if user else {}
    data = raw if raw is not None else (None if body is None else json.dumps(body))
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, base_url(server) + ROUTE, headers=headers, data=data) as resp,
    ):
        return resp.status, await resp.json()


async def notify(db: asyncpg.Connection, user: str, title: str, body: str = "body") -> int:
    return int(
        await db.fetchval(
            "SELECT tiffin_rt.notify_user($1, 'promo', $2, $3, '{\"code\": \"X1\"}'::jsonb)",
            user,
            title,
            body,
        )
    )


async def inbox_notification(server: TestServer, user: str, event_id: int) -> dict[str, Any]:
    """The notification as the inbox (and the live `notification` event) gives it."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(base_url(server) + "/api/notifications", headers=bearer(server, user)) as resp,
    ):
        page = await resp.json()
    (item,) = [n for n in page["notifications"] if n["id"] == event_id]
    return {k: v for k, v in item.items() if k not in ("read", "readAt")}


async def online(
    server: TestServer, user: str, transport: str = "websocket"
) -> tuple[socketio.AsyncClient, Received]:
    if transport == "websocket":
        return await recording_client(
            base_url(server),
            "/notifications",
            ("notification",),
            {"token": token(_settings(server), user)},
            Received(),
        )
    client = socketio.AsyncClient(reconnection=False)
    received = Received()
    client.on(
        "notification",
        lambda data=None: received.record("notification", data),
        namespace="/notifications",
    )
    await client.connect(
        base_url(server),
        namespaces=["/notifications"],
        auth={"token": token(_settings(server), user)},
        transports=["polling"],
        wait_timeout=5,
    )
    return client, received


async def test_offline_user_gets_the_notification_pushed_encrypted_and_signed(
    start_server: StartServer, vapid: KeyPair, pushes: PushServiceForTests, db: asyncpg.Connection
) -> None:
    server = await start(start_server, vapid)
    phone = pushes.new_device()
    status, body = await call(server, "POST", "alice", pushes.subscription(phone))
    assert status == 201
    assert body["created"] is True
    assert body["endpoint"] == pushes.subscription(phone)["endpoint"]
    status, again = await call(server, "POST", "alice", pushes.subscription(phone))
    assert (status, again["id"], again["created"]) == (200, body["id"], False)

    event_id = await notify(db, "alice", "Your order is on its way", "Rider Bob, 10 minutes")
    (push,) = await pushes.wait_for(phone)
    assert push.payload == await inbox_notification(server, "alice", event_id)
    assert push.payload["title"] == "Your order is on its way"
    assert push.payload["data"] == {"code": "X1"}
    assert push.headers["TTL"] == "3600"
    assert push.headers["Urgency"] == "high"
    assert push.claims["aud"] == pushes.origin
    assert push.claims["sub"] == "mailto:ops@tiffin.test"
    health = await _health(server)
    assert health["push"]["sent"] == 1


async def _health(server: TestServer) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.get(base_url(server) + "/healthz") as resp,
    ):
        return await resp.json()


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_push_only_while_the_user_has_no_live_connection(
    start_server: StartServer,
    vapid: KeyPair,
    pushes: PushServiceForTests,
    db: asyncpg.Connection,
    transport: str,
) -> None:
    # One worker: pushes are made in the order notifications were logged, so once bob's push
    # (logged after alice's notification) has arrived, any push for alice would have too.
    server = await start(start_server, vapid, workers=1)
    alice_phone, bob_phone = pushes.new_device(), pushes.new_device()
    assert (await call(server, "POST", "alice", pushes.subscription(alice_phone)))[0] == 201
    assert (await call(server, "POST", "bob", pushes.subscription(bob_phone)))[0] == 201

    client, live = await online(server, "alice", transport)
    first = await notify(db, "alice", "while online")
    await live.wait_for("notification")
    await notify(db, "bob", "marker for bob")
    await pushes.wait_for(bob_phone)
    assert pushes.to(alice_phone) == []  # alice had it live, on her socket only
    assert (await _health(server))["push"]["skippedOnline"] == 1

    await leave(client)
    await eventually(lambda: not server.app[PUSH].dispatcher.is_online("alice"))  # type: ignore[union-attr]
    second = await notify(db, "alice", "while away")
    (push,) = await pushes.wait_for(alice_phone)
    assert push.payload["id"] == second != first


async def test_always_pushes_even_to_a_connected_user(
    start_server: StartServer, vapid: KeyPair, pushes: PushServiceForTests, db: asyncpg.Connection
) -> None:
    server = await start(start_server, vapid, when="always")
    phone = pushes.new_device()
    await call(server, "POST", "alice", pushes.subscription(phone))
    client, live = await online(server, "alice")
    try:
        event_id = await notify(db, "alice", "both ways")
        (push,) = await pushes.wait_for(phone)
        (message,) = await live.wait_for("notification")
        assert push.payload == message
        assert message["id"] == event_id
    finally:
        await client.disconnect()


async def test_gone_subscription_is_removed(
    start_server: StartServer, vapid: KeyPair, pushes: PushServiceForTests, db: asyncpg.Connection
) -> None:
    server = await start(start_server, vapid)
    old, new = pushes.new_device(), pushes.new_device()
    old.answers.append((410, {}))
    await call(server, "POST", "alice", pushes.subscription(old))
    await call(server, "POST", "alice", pushes.subscription(new))
    await notify(db, "alice", "one")
    await pushes.wait_for(old)
    await pushes.wait_for(new)
    await eventually(lambda: server.app[PUSH].describe()["removed"] == 1)
    _, listed = await call(server, "GET", "alice")
    kept = [s["endpoint"] for s in listed["subscriptions"]]
    assert kept == [pushes.subscription(new)["endpoint"]]

    await notify(db, "alice", "two")
    await pushes.wait_for(new, 2)
    assert len(pushes.to(old)) == 1  # never asked again


async def test_rate_limited_push_is_retried_after_retry_after(
    start_server: StartServer, vapid: KeyPair, pushes: PushServiceForTests, db: asyncpg.Connection
) -> None:
    server = await start(start_server, vapid)
    phone = pushes.new_device()
    phone.answers.extend([(429, {"Retry-After": "1"}), (503, {}), (201, {})])
    await call(server, "POST", "alice", pushes.subscription(phone))
    await notify(db, "alice", "patience")
    refused, unavailable, accepted = await pushes.wait_for(phone, 3)
    assert [p.status for p in (refused, unavailable, accepted)] == [429, 503, 201]
    assert unavailable.at - refused.at >= 0.95  # Retry-After: 1 was honoured
    assert refused.payload == unavailable.payload == accepted.payload

    # Counted once the server has read the 201, a moment after the service recorded it.
    async def counts() -> tuple[int, int, int]:
        health = (await _health(server))["push"]
        return health["retried"], health["sent"], health["failed"]

    deadline = asyncio.get_running_loop().time() + 5
    while (seen := await counts()) != (2, 1, 0):
        assert asyncio.get_running_loop().time() < deadline, seen
        await asyncio.sleep(0.02)


async def test_a_retry_never_reaches_a_device_its_user_unsubscribed_from(
    start_server: StartServer, vapid: KeyPair, pushes: PushServiceForTests, db: asyncpg.Connection
) -> None:
    """A shared tablet: alice's push is refused for now (503), she logs out (DELETE) and bob
    logs in on the same browser, whose subscription is the same. Alice's retry must not show
    her payment on bob's screen."""
    server = await start(start_server, vapid, retry_min_delay=0.5, retry_max_delay=0.5)
    tablet = pushes.new_device()
    tablet.answers.append((503, {}))
    sub = pushes.subscription(tablet)
    assert (await call(server, "POST", "alice", sub))[0] == 201
    await notify(db, "alice", "Payment of €14.50 received")
    await pushes.wait_for(tablet)  # the 503: retried in 0.5 s
    assert await call(server, "DELETE", "alice", {"endpoint": sub["endpoint"]}) == (
        200,
        {"deleted": 1},
    )
    assert (await call(server, "POST", "bob", sub))[0] == 201
    await eventually(lambda: server.app[PUSH].describe()["failed"] == 1)  # abandoned, unsent
    await notify(db, "bob", "marker for bob")
    pushed = await pushes.wait_for(tablet, 2)
    assert [(p.status, p.payload["title"]) for p in pushed] == [
        (503, "Payment of €14.50 received"),
        (201, "marker for bob"),
    ]
    assert server.app[PUSH].describe()["sent"] == 1


async def test_retries_are_bounded(
    start_server: StartServer, vapid: KeyPair, pushes: PushServiceForTests, db: asyncpg.Connection
) -> None:
    server = await start(start_server, vapid, max_attempts=3)
    phone = pushes.new_device()
    phone.answers.extend([(500, {})] * 5 + [(429, {"Retry-After": "86400"})])
    await call(server, "POST", "alice", pushes.subscription(phone))
    await notify(db, "alice", "never")
    await pushes.wait_for(phone, 3)
    await eventually(lambda: server.app[PUSH].describe()["failed"] == 1)
    assert server.app[PUSH].describe()["retried"] == 2
    # still subscribed: a failing service is no reason to forget the device
    assert len((await call(server, "GET", "alice"))[1]["subscriptions"]) == 1


async def test_a_hanging_push_service_never_delays_live_delivery(
    start_server: StartServer, vapid: KeyPair, pushes: PushServiceForTests, db: asyncpg.Connection
) -> None:
    server = await start(start_server, vapid, workers=1, queue_size=3, timeout=60)
    stuck = pushes.new_device()
    stuck.hang = asyncio.Event()
    await call(server, "POST", "bob", pushes.subscription(stuck))
    client, live = await online(server, "alice")
    try:
        for n in range(10):  # bob is offline: his pushes fill the one worker and the queue
            await notify(db, "bob", f"for bob {n}")
            await notify(db, "alice", f"for alice {n}")
        # alice has every one of hers live (each wait is bounded far below push.timeout)
        got = await live.wait_for("notification", 10)
        assert [m["title"] for m in got] == [f"for alice {n}" for n in range(10)]
        await marker_arrived(db, "alice", live)
        stats = server.app[PUSH].describe()
        assert stats["dropped"] >= 10 - 1 - 3  # one in the worker, three queued
        assert stats["dropped"] + stats["queued"] == 10
        assert pushes.to(stuck) == []
    finally:
        await client.disconnect()
        stuck.hang.set()
    await pushes.wait_for(stuck)  # released: the one in the worker goes out


async def test_unsubscribe_removes_only_your_own_device(
    start_server: StartServer, vapid: KeyPair, pushes: PushServiceForTests, db: asyncpg.Connection
) -> None:
    server = await start(start_server, vapid)
    phone, laptop = pushes.new_device(), pushes.new_device()
    await call(server, "POST", "alice", pushes.subscription(phone))
    await call(server, "POST", "alice", pushes.subscription(laptop))
    endpoint = pushes.subscription(phone)["endpoint"]
    assert await call(server, "DELETE", "mallory", {"endpoint": endpoint}) == (200, {"deleted": 0})
    assert await call(server, "DELETE", "alice", {"endpoint": endpoint}) == (200, {"deleted": 1})
    assert await call(server, "DELETE", "alice", pushes.subscription(phone)) == (
        200,
        {"deleted": 0},
    )
    await notify(db, "alice", "to the laptop")
    await pushes.wait_for(laptop)
    assert pushes.to(phone) == []

    # The laptop's browser is now bob's: the endpoint moves to him.
    assert (await call(server, "POST", "bob", pushes.subscription(laptop)))[0] == 200
    assert (await call(server, "GET", "alice"))[1]["subscriptions"] == []


async def test_devices_per_user_are_bounded(
    start_server: StartServer, vapid: KeyPair, pushes: PushServiceForTests
) -> None:
    server = await start(start_server, vapid, max_subscriptions_per_user=2)
    devices = [pushes.new_device() for _ in range(3)]
    for device in devices:
        assert (await call(server, "POST", "alice", pushes.subscription(device)))[0] == 201
    listed = (await call(server, "GET", "alice"))[1]["subscriptions"]
    assert [s["endpoint"] for s in listed] == [
        pushes.subscription(d)["endpoint"] for d in reversed(devices[1:])
    ]


def _lies(good: dict[str, Any]) -> list[tuple[Any, str]]:
    keys = good["keys"]
    endpoint = good["endpoint"]

    def with_keys(**changes: Any) -> dict[str, Any]:
        return {**good, "keys": {**keys, **changes}}

    not_on_curve = "BA" + "A" * 85  # 65 bytes starting 0x04, but no point of P-256
    return [
        ([], "JSON object"),
        ("a string", "JSON object"),
        ({}, "endpoint"),
        ({**good, "endpoint": 42}, "endpoint"),
        ({**good, "endpoint": "ftp://127.0.0.1/x"}, "https"),
        ({**good, "endpoint": "http://push.example.com/x"}, "https"),
        ({**good, "endpoint": "https://"}, "no host"),
        ({**good, "endpoint": "https://user:pw@push.example.com/x"}, "user name"),
        ({**good, "endpoint": "https://push.example.com/x\u0000"}, "printable ASCII"),
        ({**good, "endpoint": "https://push.example.com/²"}, "printable ASCII"),
        ({**good, "endpoint": "https://push.example.com:99999/x"}, "not a valid URL"),
        ({**good, "endpoint": "https://push.example.com:8443/x"}, "port 443"),
        ({**good, "endpoint": "https://push.example.com/" + "a" * 2048}, "2048"),
        ({**good, "keys": None}, "keys"),
        ({**good, "keys": [keys["p256dh"], keys["auth"]]}, "keys"),
        (with_keys(p256dh=None), "keys.p256dh"),
        (with_keys(p256dh=keys["p256dh"][:-4]), "keys.p256dh: 65 bytes"),
        (with_keys(p256dh=keys["p256dh"][:40] + "²" + keys["p256dh"][41:]), "keys.p256dh"),
        (with_keys(p256dh=keys["p256dh"][:40] + "+" + keys["p256dh"][41:]), "keys.p256dh"),
        (with_keys(p256dh=not_on_curve), "not a P-256 public key"),
        (with_keys(auth="AAAAAAAAAAAAAAAAAAAA"), "keys.auth: 16 bytes"),
        (with_keys(auth=12345), "keys.auth"),
        (with_keys(extra="x"), "unknown field 'extra'"),
        ({**good, "deviceId": "order-01"}, "unknown field 'deviceId'"),
        ({**good, "expirationTime": "1700000000000"}, "expirationTime"),
        ({**good, "expirationTime": True}, "expirationTime"),
        ({**good, "expirationTime": -1}, "expirationTime"),
        ({**good, "expirationTime": 1e300}, "expirationTime"),
        ({"endpoint": endpoint}, "keys"),
    ]


async def test_invalid_subscriptions_are_refused_with_a_clear_400(
    start_server: StartServer, vapid: KeyPair, pushes: PushServiceForTests
) -> None:
    server = await start(start_server, vapid)
    good = pushes.subscription(pushes.new_device())
    for lie, says in _lies(good):
        status, body = await call(server, "POST", "alice", lie)
        assert status == 400, (lie, body)
        assert body["error"]["code"] == "bad_request"
        assert says in body["error"]["message"], (lie, body)
    for raw, says in [
        (b"{not json", "must be JSON"),
        (b'{"endpoint": NaN}', "must be JSON"),
        (b'{"expirationTime": Infinity}', "must be JSON"),
        (b"\xff\xfe", "must be JSON"),
    ]:
        status, body = await call(server, "POST", "alice", raw=raw)
        assert (status, body["error"]["code"]) == (400, "bad_request")
        assert says in body["error"]["message"]
    status, body = await call(server, "POST", "alice", raw=b" " * 5000)
    assert (status, body["error"]["code"]) == (413, "too_large")
    status, body = await call(server, "DELETE", "alice", {"endpoint": "javascript:alert(1)"})
    assert status == 400
    status, body = await call(server, "POST", None, good)
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    # nothing stored, and the server still takes a good one
    assert (await call(server, "GET", "alice"))[1]["subscriptions"] == []
    assert (await call(server, "POST", "alice", good))[0] == 201


async def test_push_routes_say_when_push_is_off(server: TestServer) -> None:
    status, body = await call(server, "POST", "alice", {"endpoint": "https://x.example/1"})
    assert (status, body["error"]["code"]) == (404, "not_found")
    assert "push.enabled" in body["error"]["message"]


async def test_the_public_key_is_served_for_the_page(
    start_server: StartServer, vapid: KeyPair
) -> None:
    server = await start(start_server, vapid)
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            base_url(server) + "/api/push/vapid-public-key", headers=bearer(server, "alice")
        ) as resp,
    ):
        assert (resp.status, await resp.json()) == (200, {"publicKey": vapid.public_key})


def test_push_keys_command_prints_a_working_config(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tiffin_rt", "push", "keys"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    path = tmp_path / "config.yaml"
    path.write_text(f"auth: {{jwt_secret: {'s' * 32}}}\n" + result.stdout)
    settings = load_settings(path, environ={})
    assert settings.push.enabled
    public = result.stdout.strip().splitlines()[-1].lstrip("# ").strip()
    assert VapidSigner(settings.push.vapid_private_key, "mailto:a@b.example").public_key == public


@pytest.mark.parametrize(
    ("push", "message"),
    [
        ("{enabled: true}", "push: vapid_private_key: required with enabled: true"),
        (
            "{enabled: true, vapid_private_key: abc, vapid_subject: 'mailto:a@b.example'}",
            "vapid_private_key: a raw P-256 private key is 32 bytes",
        ),
        (
            "{enabled: true, vapid_private_key: 'not base64!', vapid_subject: 'mailto:a@b.c'}",
            "vapid_private_key: not base64url",
        ),
        ("{vapid_subject: 'ops@example.com'}", "push.vapid_subject: a mailto: or https:// URL"),
        ("{when: sometimes}", "push.when"),
        ("{urgency: urgent}", "push.urgency"),
        ("{ttl: -1}", "push.ttl"),
        ("{workers: 0}", "push.workers"),
    ],
)
def test_push_config_errors_name_the_key(tmp_path: Path, push: str, message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"auth: {{jwt_secret: {'s' * 32}}}\npush: {push}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert message in str(info.value)


async def test_a_user_connected_to_another_node_is_not_pushed_and_each_push_goes_out_once(
    start_server: StartServer, vapid: KeyPair, pushes: PushServiceForTests, db: asyncpg.Connection
) -> None:
    # Two nodes on one database: each hears every event, each sees only its own connections.
    node_a = await start(start_server, vapid, workers=1, claim_delay=0.5)
    node_b = await start(start_server, vapid, workers=1, claim_delay=0.5)
    alice_phone, bob_phone = pushes.new_device(), pushes.new_device()
    await call(node_a, "POST", "alice", pushes.subscription(alice_phone))
    await call(node_b, "POST", "bob", pushes.subscription(bob_phone))
    client, live = await online(node_a, "alice")
    try:
        await notify(db, "alice", "seen on node a")
        await notify(db, "bob", "bob is away")
        await live.wait_for("notification")
        (push,) = await pushes.wait_for(bob_phone)
        assert push.payload["title"] == "bob is away"

        def claimed_elsewhere() -> int:
            return sum(n.app[PUSH].describe()["claimedElsewhere"] for n in (node_a, node_b))

        # node b found alice's notification claimed by node a (which delivered it live), and
        # one node found bob's claimed by the other: nothing more is coming.
        await eventually(lambda: claimed_elsewhere() == 2)
        assert pushes.to(alice_phone) == []
        assert len(pushes.to(bob_phone)) == 1
        assert node_a.app[PUSH].describe()["skippedOnline"] == 1
    finally:
        await client.disconnect()


async def test_a_user_back_within_the_claim_delay_is_not_pushed(
    start_server: StartServer, vapid: KeyPair, pushes: PushServiceForTests, db: asyncpg.Connection
) -> None:
    server = await start(start_server, vapid, claim_delay=1.0)
    phone = pushes.new_device()
    await call(server, "POST", "alice", pushes.subscription(phone))
    await notify(db, "alice", "while reloading the page")
    await eventually(lambda: server.app[PUSH].describe()["queued"] == 1)
    client, _ = await online(server, "alice")  # back (the replay brings it) before the claim
    try:
        await eventually(lambda: server.app[PUSH].describe()["skippedOnline"] == 1)
        assert server.app[PUSH].describe()["claimedElsewhere"] == 0
        assert pushes.to(phone) == []
    finally:
        await client.disconnect()


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/push/x",
        "https://192.168.1.1/push/x",
        "https://127.0.0.2:5432/x",
        "https://[::1]:8080/push/x",
        "https://[::ffff:127.0.0.1]/push/x",
        "https://[fe80::1]/push/x",
        "https://0.0.0.0/push/x",
        "https://224.0.0.1/push/x",
        # IPv6 addresses that carry an IPv4 one: a NAT64 gateway (64:ff9b::/96, AWS's and
        # DNS64's), a 6to4 relay and the old IPv4-compatible form reach that IPv4 address.
        "https://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
        "https://[64:ff9b::a00:1]/push/x",
        "https://[2002:a9fe:a9fe::1]/push/x",
        "https://[::127.0.0.1]/push/x",
    ],
)
async def test_an_internal_address_is_no_push_service(
    start_server: StartServer, vapid: KeyPair, pushes: PushServiceForTests, endpoint: str
) -> None:
    """The server POSTs to what a subscription names: never into its own network."""
    server = await start(start_server, vapid)
    sub = pushes.subscription(pushes.new_device()) | {"endpoint": endpoint}
    status, body = await call(server, "POST", "alice", sub)
    assert status == 400, body
    assert "public address" in body["error"]["message"]
    _, listed = await call(server, "GET", "alice")
    assert listed["subscriptions"] == []


async def test_a_name_that_resolves_inward_is_never_connected_to(
    start_server: StartServer,
    vapid: KeyPair,
    pushes: PushServiceForTests,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = await start(start_server, vapid, max_attempts=1)
    inward, phone = pushes.new_device(), pushes.new_device()
    sub = pushes.subscription(inward) | {"endpoint": "https://localhost/push/x"}
    assert (await call(server, "POST", "alice", sub))[0] == 201
    await notify(db, "alice", "for the inward name")
    await eventually(lambda: server.app[PUSH].describe()["failed"] == 1)
    # localhost resolves (to 127.0.0.1 and ::1): refused at resolution, before any connection.
    assert any("ClientConnectorDNSError" in r.getMessage() for r in caplog.records)
    # The marker: a push to a trusted host after it goes out as usual.
    await call(server, "POST", "bob", pushes.subscription(phone))
    await notify(db, "bob", "marker")
    await pushes.wait_for(phone)
    assert pushes.to(inward) == []


async def test_a_redirect_from_a_push_service_is_not_followed(
    start_server: StartServer, vapid: KeyPair, pushes: PushServiceForTests, db: asyncpg.Connection
) -> None:
    server = await start(start_server, vapid, max_attempts=1)
    phone, elsewhere = pushes.new_device(), pushes.new_device()
    phone.answers.append((307, {"Location": f"{pushes.origin}/push/{elsewhere.token}"}))
    await call(server, "POST", "alice", pushes.subscription(phone))
    await call(server, "POST", "bob", pushes.subscription(elsewhere))
    await notify(db, "alice", "redirected")
    [answered] = await pushes.wait_for(phone)
    assert answered.status == 307
    await eventually(lambda: server.app[PUSH].describe()["failed"] == 1)
    # The marker: bob's own push. Had the redirect been followed, alice's push would have
    # been posted to bob's device too (and refused there: wait_for asserts nothing was).
    await notify(db, "bob", "marker")
    [only] = await pushes.wait_for(elsewhere)
    assert only.payload["title"] == "marker"
