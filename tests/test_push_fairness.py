"""Web Push under a slow or hostile push service: one user's stuck devices never hold up other
users' pushes, retries and waiting pushes stay bounded, and the VAPID header cache is bounded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.push_service import PushServiceForTests, push_service
from tests.test_push import StartServer, call, notify, start
from tiffin_rt.push.keys import PUSH
from tiffin_rt.push.vapid import HEADER_REUSE_SECONDS, KeyPair, VapidSigner, generate_keys


@pytest.fixture
def vapid() -> KeyPair:
    return generate_keys()


@pytest.fixture
async def pushes(vapid: KeyPair) -> AsyncIterator[PushServiceForTests]:
    async with push_service(vapid.public_key) as service:
        yield service


async def test_a_user_with_many_hanging_devices_does_not_hold_up_another_users_push(
    start_server: StartServer, vapid: KeyPair, pushes: PushServiceForTests, db: asyncpg.Connection
) -> None:
    # push.timeout is a minute: bob's push can only arrive in time if it never queues behind
    # alice's stuck devices.
    server = await start(start_server, vapid, workers=3, timeout=60)
    stuck = asyncio.Event()
    alice_devices = [pushes.new_device() for _ in range(6)]
    for device in alice_devices:
        device.hang = stuck
        assert (await call(server, "POST", "alice", pushes.subscription(device)))[0] == 201
    bob_phone = pushes.new_device()
    assert (await call(server, "POST", "bob", pushes.subscription(bob_phone)))[0] == 201
    try:
        for n in range(4):  # more of alice's notifications than there are workers
            await notify(db, "alice", f"for alice {n}")
        await notify(db, "bob", "for bob")
        (push,) = await pushes.wait_for(bob_phone, timeout=10)
        assert push.payload["title"] == "for bob"
        stats = server.app[PUSH].describe()
        assert stats["inFlight"] <= 2  # alice's one slot and bob's
        assert stats["sent"] >= 1
    finally:
        stuck.set()
    # released, alice's pushes all go out (one device at a time: her own slot)
    for device in alice_devices:
        await pushes.wait_for(device, 4, timeout=20)


async def test_one_users_retries_waiting_on_a_timer_are_bounded(
    start_server: StartServer, vapid: KeyPair, pushes: PushServiceForTests, db: asyncpg.Connection
) -> None:
    # alice's push service answers 429 Retry-After 60 to everything: each retry waits a minute
    # in memory. At most push.user_queue_size of hers wait (queued or for a retry).
    server = await start(start_server, vapid, user_queue_size=2, retry_max_delay=60)
    throttled = pushes.new_device()
    throttled.answers.extend([(429, {"Retry-After": "60"})] * 20)
    await call(server, "POST", "alice", pushes.subscription(throttled))
    bob_phone = pushes.new_device()
    await call(server, "POST", "bob", pushes.subscription(bob_phone))
    for n in range(6):
        await notify(db, "alice", f"for alice {n}")
    await pushes.wait_for(throttled, 2)
    await notify(db, "bob", "marker")  # bob is not held up by alice's retries
    await pushes.wait_for(bob_phone)
    stats = server.app[PUSH].describe()
    # queued: two of alice's and bob's
    assert (stats["retriesWaiting"], stats["dropped"], stats["queued"]) == (2, 4, 3), stats
    assert len(pushes.to(throttled)) == 2


def test_the_vapid_header_cache_is_bounded_and_keeps_the_busy_push_service() -> None:
    signer = VapidSigner(generate_keys().private_key, "mailto:ops@tiffin.test", max_origins=50)
    fcm = "https://fcm.googleapis.com/fcm/send/abc"
    first = signer.headers(fcm, now=1000.0)
    # an attacker's subscriptions on thousands of distinct hosts, while the busy service is used
    for n in range(2000):
        signer.headers(f"https://h{n}.attacker.example/push", now=1000.0)
        if n % 10 == 0:
            assert signer.headers(fcm, now=1000.0) is first  # still the cached header
    assert signer.cached_origins <= 50
    # after the reuse window every entry is stale: the next signing trims them
    later = 1000.0 + HEADER_REUSE_SECONDS + 1
    assert signer.headers(fcm, now=later) is not first
    assert signer.cached_origins == 1
