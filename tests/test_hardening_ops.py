"""Operations hardening: settings the wire can carry, pool faults, readiness, the CLI."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import engineio
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import (
    TEST_SECRET,
    base_url,
    connect_refusal,
    disconnecting,
    make_settings,
    sio_client,
    token,
)
from tests.tcp_proxy import FreezableProxy
from tiffin_rt.config import ConfigError, Settings, load_settings
from tiffin_rt.db import migrate
from tiffin_rt.db.triggers import TRIGGER_NAMES

NS = "/notifications"


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"auth: {{jwt_secret: {TEST_SECRET}}}\n{text}")
    return path


@pytest.mark.parametrize("interval", ["0.5", "1.5", "25.25", "0"])
def test_a_ping_interval_the_handshake_cannot_announce_is_refused(
    tmp_path: Path, interval: str
) -> None:
    path = write_config(tmp_path, f"delivery: {{ping_interval: {interval}}}\n")
    with pytest.raises(ConfigError, match=r"delivery\.ping_interval: a whole number of seconds"):
        load_settings(path, environ={})
    with pytest.raises(ConfigError, match=r"delivery\.ping_interval: a whole number of seconds"):
        load_settings(
            write_config(tmp_path, ""), environ={"TIFFIN_RT__DELIVERY__PING_INTERVAL": interval}
        )


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_a_real_client_is_told_the_configured_ping_interval(
    start_server: StartServer, transport: str
) -> None:
    server = await start_server(delivery={"ping_interval": 2.0, "ping_timeout": 1.5})
    client = engineio.AsyncClient()
    await client.connect(base_url(server), transports=[transport], engineio_path="socket.io")
    try:
        # what python-engineio's client read from the open packet
        assert (client.ping_interval, client.ping_timeout) == (2.0, 1.5)
    finally:
        await client.disconnect()


# --- a silently dead pooled connection (#14) -------------------------------------------------


@pytest.fixture
async def proxy(dsn: str) -> AsyncIterator[FreezableProxy]:
    """PostgreSQL behind a TCP proxy whose open connections can be frozen."""
    front = FreezableProxy(dsn)
    await front.start()
    yield front
    await front.close()


async def test_a_silently_dead_pooled_connection_answers_unavailable_and_is_replaced(
    start_server: StartServer, proxy: FreezableProxy
) -> None:
    settings = make_settings(
        proxy.dsn,
        database={"command_timeout": 1, "pool_min": 1, "pool_max": 1},
        limits={"order_cache_ttl": 0},  # every joinRoom reads the order
    )
    server = await start_server(settings)
    url = base_url(server)
    tok = token(settings, "alice")
    headers = {"Authorization": f"Bearer {tok}"}

    async with (
        disconnecting(sio_client(url, tok)) as (client, _),
        disconnecting(sio_client(url, tok, namespace="/support", events=())) as (support, _),
        aiohttp.ClientSession() as http,
    ):

        async def join(room: str) -> Any:
            return await client.call("joinRoom", room, namespace=NS, timeout=30)

        async def joined_after_recovery() -> None:
            # the dead connection was dropped: the next query gets a fresh one
            ack = await join("order-2")
            assert (ack["ok"], ack["room"]) == (True, "order-2")

        async def over_socketio() -> None:
            reply = await join("order-1")
            assert reply["ok"] is False
            assert reply["error"]["code"] == "unavailable"

        async def over_support() -> None:
            reply = await support.call(
                "startConversation", {"subject": "lunch?"}, namespace="/support", timeout=30
            )
            assert reply["ok"] is False
            assert reply["error"]["code"] == "unavailable"

        async def over_rest() -> None:
            async with http.get(f"{url}/api/notifications", headers=headers) as response:
                assert response.status == 503
                assert (await response.json())["error"]["code"] == "unavailable"

        async def over_sse() -> None:
            async with http.get(
                f"{url}/api/notifications/orders/1/status", params={"access_token": tok}
            ) as response:
                assert response.status == 503
                assert (await response.json())["error"]["code"] == "unavailable"

        async def readiness() -> None:
            async with http.get(f"{url}/readyz") as response:
                assert response.status == 503
                body = await response.json()
                # Whichever way the dead database shows first: the frozen connection's
                # timeout, or a new connection the proxy refuses (another query, such as the
                # kitchen queue's retry, may have taken the pool's one connection first).
                check = body["checks"]["database"]
                assert check in ("unreachable: TimeoutError", "unreachable: ConnectionResetError")

        for probe in (over_socketio, over_support, over_rest, over_sse, readiness):
            await joined_after_recovery()
            # the pooled connection (and the listener's) go silent; new ones are refused
            assert proxy.freeze() >= 2
            # each answers instead of waiting on the dead connection for good
            await asyncio.wait_for(probe(), 30)
            proxy.thaw()
        await joined_after_recovery()


# --- /readyz: schema access and the orders table's triggers (#15) ----------------------------


async def readyz(url: str) -> tuple[int, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/readyz") as response:
        return response.status, (await response.json())["checks"]


READY = {"database": "ok", "schema": "ok", "triggers": "ok", "listener": "ok"}


async def test_readiness_fails_while_an_orders_trigger_is_missing_or_disabled(
    server: TestServer, url: str, db: asyncpg.Connection, settings: Settings
) -> None:
    assert await readyz(url) == (200, READY)
    for name in TRIGGER_NAMES:
        await db.execute(f"DROP TRIGGER {name} ON public.orders")
        status, checks = await readyz(url)
        assert (status, checks["triggers"]) == (503, f"missing {name} on public.orders")
        await migrate.upgrade(db, settings.orders)  # `tiffin-rt db upgrade` puts it back
        assert await readyz(url) == (200, READY)
    await db.execute("ALTER TABLE public.orders DISABLE TRIGGER tiffin_rt_order_status")
    status, checks = await readyz(url)
    assert (status, checks["triggers"]) == (503, "disabled tiffin_rt_order_status on public.orders")
    await db.execute("ALTER TABLE public.orders ENABLE TRIGGER tiffin_rt_order_status")
    assert await readyz(url) == (200, READY)
    await db.execute("DROP TABLE public.orders")
    status, checks = await readyz(url)
    assert status == 503
    assert checks["triggers"] == f"missing {', '.join(TRIGGER_NAMES)} on public.orders"


@pytest.fixture
async def app_role(dsn: str, db: asyncpg.Connection, settings: Settings) -> AsyncIterator[str]:
    """A login role that is not a superuser, granted what the server needs; its dsn."""
    role = f"tiffin_app_{uuid.uuid4().hex[:8]}"
    await migrate.upgrade(db, settings.orders)
    await db.execute(f'CREATE ROLE "{role}" LOGIN')
    for grant in (
        f'GRANT USAGE ON SCHEMA tiffin_rt, public TO "{role}"',
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA tiffin_rt TO "{role}"',
        f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA tiffin_rt TO "{role}"',
        f'GRANT SELECT, UPDATE ON public.orders TO "{role}"',
    ):
        await db.execute(grant)
    parts = urlsplit(dsn)
    yield urlunsplit(parts._replace(netloc=f"{role}@{parts.netloc.rpartition('@')[2]}"))
    await db.execute(f'DROP OWNED BY "{role}"')
    await db.execute(f'DROP ROLE "{role}"')


async def test_readiness_fails_while_the_role_has_lost_access_to_the_schema(
    app_role: str, start_server: StartServer, db: asyncpg.Connection
) -> None:
    role = urlsplit(app_role).username
    server = await start_server(make_settings(app_role, database={"auto_migrate": False}))
    url = base_url(server)
    assert await readyz(url) == (200, READY)
    lost = {
        "REVOKE USAGE ON SCHEMA tiffin_rt FROM {}": "this role has no USAGE on schema tiffin_rt",
        "REVOKE SELECT ON tiffin_rt.events FROM {}": "this role lacks SELECT on tiffin_rt.events",
        "REVOKE INSERT ON tiffin_rt.support_messages FROM {}": (
            "this role lacks INSERT on tiffin_rt.support_messages"
        ),
        "REVOKE SELECT ON public.orders FROM {}": "this role lacks SELECT on public.orders",
    }
    for revoke, said in lost.items():
        await db.execute(revoke.format(f'"{role}"'))
        status, checks = await readyz(url)
        assert (status, checks["schema"]) == (503, said)
        grant = revoke.replace("REVOKE", "GRANT").replace(" FROM ", " TO ")
        await db.execute(grant.format(f'"{role}"'))
        assert await readyz(url) == (200, READY)


# --- an event id held past gap_timeout (#13) -------------------------------------------------


async def late_counters(url: str) -> dict[str, int]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as response:
        events = (await response.json())["events"]
    return {k: events[k] for k in ("lateWatched", "lateDelivered", "lateAbandoned")}


async def eventually_counters(url: str, expected: dict[str, int], seconds: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if await late_counters(url) == expected:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"/healthz never showed {expected}: {await late_counters(url)}")


async def set_status(conn: asyncpg.Connection, order_id: int, status: str) -> None:
    await conn.execute("UPDATE public.orders SET status = $2 WHERE id = $1", order_id, status)


@asynccontextmanager
async def held_past_gap_timeout(
    url: str, settings: Settings, db: asyncpg.Connection, dsn: str
) -> AsyncIterator[tuple[asyncpg.transaction.Transaction, Any]]:
    """Order 1's update holds a lower event id in an open transaction while order 3's commits
    and is delivered past it; yields that transaction and the admin's recorder."""
    async with disconnecting(sio_client(url, token(settings, "admin", "admin"))) as (
        client,
        received,
    ):
        for room in ("order-1", "order-3"):
            assert (await client.call("joinRoom", room, namespace=NS))["ok"] is True
        other = await asyncpg.connect(dsn)
        try:
            slow = db.transaction()
            await slow.start()
            await set_status(db, 1, "confirmed")  # takes the lower id
            await set_status(other, 3, "ready")  # commits first
            updates = await received.wait_for("orderStatusUpdate", 1, timeout=10)
            assert [u["orderId"] for u in updates] == ["3"]  # delivered past the gap
            watched = {"lateWatched": 1, "lateDelivered": 0, "lateAbandoned": 0}
            await eventually_counters(url, watched)
            yield slow, received
        finally:
            await other.close()


async def test_an_event_committed_within_the_late_window_is_delivered_late(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(dsn, database={"gap_timeout": 0.2, "late_event_window": 120})
    server = await start_server(settings)
    url = base_url(server)
    async with held_past_gap_timeout(url, settings, db, dsn) as (slow, received):
        await slow.commit()
        updates = await received.wait_for("orderStatusUpdate", 2, timeout=10)
        assert [(u["orderId"], u["status"]) for u in updates] == [
            ("3", "ready"),
            ("1", "confirmed"),
        ]
        await eventually_counters(url, {"lateWatched": 0, "lateDelivered": 1, "lateAbandoned": 0})


async def test_a_rolled_back_holder_ends_the_watch_without_a_warning(
    start_server: StartServer, dsn: str, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(dsn, database={"gap_timeout": 0.2, "late_event_window": 300})
    server = await start_server(settings)
    url = base_url(server)
    async with held_past_gap_timeout(url, settings, db, dsn) as (slow, _):
        await slow.rollback()
        # long before the window ends, the watch is over: nothing can fill the id any more.
        # (It waits for every transaction that was running in the cluster when the gap was
        # seen, so a long one of another test on the same server may take a while to end.)
        idle = {"lateWatched": 0, "lateDelivered": 0, "lateAbandoned": 0}
        await eventually_counters(url, idle, seconds=90)
    assert "stopped watching" not in caplog.text


async def test_an_event_held_past_the_late_window_is_logged_and_counted(
    start_server: StartServer, dsn: str, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(dsn, database={"gap_timeout": 0.2, "late_event_window": 1})
    server = await start_server(settings)
    url = base_url(server)
    async with held_past_gap_timeout(url, settings, db, dsn) as (slow, received):
        # the id the open transaction holds, seen from inside it
        held = await db.fetchval("SELECT max(id) FROM tiffin_rt.events WHERE order_id = '1'")
        await eventually_counters(url, {"lateWatched": 0, "lateDelivered": 0, "lateAbandoned": 1})
        warnings = [r for r in caplog.records if "stopped watching" in r.getMessage()]
        assert len(warnings) == 1
        assert warnings[0].levelname == "WARNING"
        assert f"[{held}]" in warnings[0].getMessage()
        assert "database.late_event_window (1s)" in warnings[0].getMessage()
        await slow.commit()
        await set_status(db, 3, "delivered")  # the marker: delivery is in log order
        updates = await received.wait_for("orderStatusUpdate", 2, timeout=10)
        # as documented: the abandoned event stays in the log and reaches no client live
        assert [(u["orderId"], u["status"]) for u in updates] == [
            ("3", "ready"),
            ("3", "delivered"),
        ]


# --- connections_per_user counts every transport, as the README says ------------------------


async def test_connections_per_user_counts_socketio_sse_and_http_together(
    start_server: StartServer, settings: Settings
) -> None:
    server = await start_server(limits={"connections_per_user": 2})
    url = base_url(server)
    tok = token(settings, "alice")
    async with (
        disconnecting(sio_client(url, tok)),
        aiohttp.ClientSession() as http,
        http.get(
            f"{url}/api/notifications/orders/1/status", params={"access_token": tok}
        ) as stream,
    ):
        assert stream.status == 200
        await stream.content.readline()  # the stream is open: two connections now
        refusal = await connect_refusal(url, {"token": tok})
        assert refusal["code"] == "rate_limited"
        async with http.get(
            f"{url}/api/notifications", headers={"Authorization": f"Bearer {tok}"}
        ) as response:
            assert response.status == 429
            assert (await response.json())["error"]["code"] == "rate_limited"
        other = token(settings, "bob")  # another user is not affected
        async with disconnecting(sio_client(url, other)):
            pass


async def test_a_listener_whose_connection_dies_mid_read_reconnects_and_catches_up(
    start_server: StartServer, proxy: FreezableProxy, dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(proxy.dsn, database={"command_timeout": 1})
    server = await start_server(settings)
    url = base_url(server)
    async with disconnecting(sio_client(url, token(settings, "admin", "admin"))) as (
        client,
        received,
    ):
        assert (await client.call("joinRoom", "order-1", namespace=NS))["ok"] is True
        locker = await asyncpg.connect(dsn)  # straight to PostgreSQL, not through the proxy
        try:
            hold = locker.transaction()
            await hold.start()
            await locker.execute("LOCK TABLE tiffin_rt.events IN ACCESS EXCLUSIVE MODE")
            # an empty wake-up makes the listener read the log: the read waits on the lock
            await db.execute("SELECT pg_notify('tiffin_rt_events', '')")
            waiting = (
                "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                " 'tiffin_rt-listener' AND datname = current_database()"
                " AND wait_event_type = 'Lock'"
            )
            for _ in range(500):
                if await db.fetchval(waiting):
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the listener never read the log")
            proxy.freeze()  # its answer will never arrive
            await hold.rollback()
            proxy.thaw()
        finally:
            await locker.close()
        await set_status(db, 1, "confirmed")
        updates = await received.wait_for("orderStatusUpdate", 1, timeout=20)
        assert [(u["orderId"], u["status"]) for u in updates] == [("1", "confirmed")]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{ping_interval: true}", r"delivery\.ping_interval: .*a number of seconds, not True"),
        ("{ping_timeout: yes}", r"delivery\.ping_timeout: .*a number of seconds, not True"),
        ("{ping_interval: 86400000}", r"delivery: .*a browser timer's limit"),
        ("{ping_interval: 2147000, ping_timeout: 484}", r"delivery: .*a browser timer's limit"),
    ],
)
def test_a_ping_setting_no_client_can_keep_is_refused(
    tmp_path: Path, text: str, error: str
) -> None:
    with pytest.raises(ConfigError, match=error):
        load_settings(write_config(tmp_path, f"delivery: {text}\n"), environ={})
