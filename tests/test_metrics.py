"""GET /metrics: each metric moves when its event happens, on every transport; the token guard."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.brokers import BOTH, cluster_name
from tests.conftest import StartServer
from tests.helpers import (
    base_url,
    connect_refusal,
    make_settings,
    marker_arrived,
    sio_client,
    sse_events,
    token,
)
from tests.metrics_helpers import METRICS_ON, Scrape, polling_client, scrape
from tiffin_rt.config import ConfigError, load_settings
from tiffin_rt.keys import POOL

ORDER_1 = "/api/notifications/orders/1/status"
SCRAPE_TOKEN = "scrape-token-0123456789abcdef"
REPO = Path(__file__).resolve().parent.parent


def _open(s: Scrape, transport: str, namespace: str) -> float:
    return s.value("tiffin_rt_connections", transport=transport, namespace=namespace)


async def test_open_connections_and_connects_by_transport(
    start_server: StartServer, dsn: str
) -> None:
    settings = make_settings(dsn, metrics=METRICS_ON)
    url = base_url(await start_server(settings))
    before = await scrape(url)
    assert _open(before, "websocket", "/notifications") == 0
    ws, _ = await sio_client(url, token(settings, "alice"))
    polling = await polling_client(url, token(settings, "alice"))
    support, _ = await sio_client(url, token(settings, "alice"), namespace="/support", events=())
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {token(settings, 'alice')}"}
        async with http.get(url + ORDER_1, headers=headers) as stream:
            await anext(sse_events(stream))
            during = await scrape(url)
            assert _open(during, "websocket", "/notifications") == 1
            assert _open(during, "polling", "/notifications") == 1
            assert _open(during, "websocket", "/support") == 1
            assert _open(during, "sse", "sse") == 1
            assert during.value("tiffin_rt_engineio_sessions") == 3
            connects = "tiffin_rt_connects_total"
            assert during.value(connects, namespace="/notifications") == (
                before.value(connects, namespace="/notifications") + 2
            )
            assert during.value(connects, namespace="/support") == (
                before.value(connects, namespace="/support") + 1
            )
            sse = during.value(connects, namespace="sse")
            assert sse == before.value(connects, namespace="sse") + 1
    for client in (ws, polling, support):
        await client.disconnect()

    async def all_closed() -> bool:
        s = await scrape(url)
        return all(
            _open(s, t, n) == 0
            for t, n in [
                ("websocket", "/notifications"),
                ("polling", "/notifications"),
                ("sse", "sse"),
            ]
        )

    deadline = asyncio.get_running_loop().time() + 5
    while not await all_closed():
        assert asyncio.get_running_loop().time() < deadline, "connections still counted"
        await asyncio.sleep(0.05)


async def test_refusals_by_reason_on_socketio_and_http(start_server: StartServer, dsn: str) -> None:
    settings = make_settings(dsn, metrics=METRICS_ON, limits={"connect_per_ip": "3/minute"})
    url = base_url(await start_server(settings))
    before = await scrape(url)
    refusals = "tiffin_rt_refusals_total"
    error = await connect_refusal(url, {"token": "not-a-jwt"})
    assert error["code"] == "unauthorized"
    async with aiohttp.ClientSession() as http, http.get(url + ORDER_1) as response:
        assert response.status == 401
    ok, _ = await sio_client(url, token(settings, "alice"))
    error = await connect_refusal(url, {"token": token(settings, "alice")})
    assert error["code"] == "rate_limited"  # the fourth attempt from 127.0.0.1 in a minute
    await ok.disconnect()
    after = await scrape(url)
    assert after.value(refusals, namespace="/notifications", reason="unauthorized") == (
        before.value(refusals, namespace="/notifications", reason="unauthorized") + 1
    )
    assert after.value(refusals, namespace="http", reason="unauthorized") == (
        before.value(refusals, namespace="http", reason="unauthorized") + 1
    )
    assert after.value(refusals, namespace="/notifications", reason="rate_limited") == (
        before.value(refusals, namespace="/notifications", reason="rate_limited") + 1
    )
    limited = "tiffin_rt_rate_limited_total"
    assert after.value(limited, limit="connect_per_ip") == (
        before.value(limited, limit="connect_per_ip") + 1
    )


async def test_user_connection_limit_counts_as_its_own_reason(
    start_server: StartServer, dsn: str
) -> None:
    settings = make_settings(dsn, metrics=METRICS_ON, limits={"connections_per_user": 1})
    url = base_url(await start_server(settings))
    before = await scrape(url)
    first = await polling_client(url, token(settings, "alice"))
    error = await connect_refusal(url, {"token": token(settings, "alice")})
    assert error["code"] == "rate_limited"
    await first.disconnect()
    after = await scrape(url)
    key = {"namespace": "/notifications", "reason": "connections_per_user"}
    assert after.value("tiffin_rt_refusals_total", **key) == (
        before.value("tiffin_rt_refusals_total", **key) + 1
    )


async def test_pool_listener_and_build_are_exported(start_server: StartServer, dsn: str) -> None:
    settings = make_settings(dsn, metrics=METRICS_ON, database={"pool_max": 3})
    server = await start_server(settings)
    url = base_url(server)
    s = await scrape(url)
    assert s.value("tiffin_rt_db_pool_max") == 3
    pool = server.app[POOL]
    held = [await pool.acquire() for _ in range(3)]  # the whole pool, as a stuck database would
    try:
        full = await scrape(url)
        assert full.value("tiffin_rt_db_pool_connections", state="in_use") == 3
        assert full.value("tiffin_rt_db_pool_connections", state="idle") == 0
    finally:
        for conn in held:
            await pool.release(conn)
    s = await scrape(url)
    assert s.value("tiffin_rt_listener_connected") == 1
    assert "tiffin_rt_listener_cursor" in s.names()
    assert "process_resident_memory_bytes" in s.names()
    assert not any(name.startswith("tiffin_rt_broker_") for name in s.names())  # no broker set


async def test_metrics_off_is_no_route(start_server: StartServer, dsn: str) -> None:
    url = base_url(await start_server(make_settings(dsn)))
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as response:
        assert response.status == 404


# -- the token guard ----------------------------------------------------------------------


async def _status(url: str, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics", headers=headers) as r:
        await r.read()
        return r.status


async def test_token_guard_refuses_every_wrong_scrape_and_logs_no_token(
    start_server: StartServer, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(dsn, metrics={"enabled": True, "token": SCRAPE_TOKEN})
    url = base_url(await start_server(settings))
    caplog.set_level(logging.INFO)
    wrong = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {SCRAPE_TOKEN[:-1]}"},
        {"Authorization": f"Bearer {SCRAPE_TOKEN}x"},
        {"Authorization": f"Basic {SCRAPE_TOKEN}"},
        {"Authorization": SCRAPE_TOKEN},
        {"Authorization": f"Bearer {token(settings, 'root', 'admin')}"},  # a JWT is no scrape token
        {"Authorization": "Bearer " + "A" * 4000},
        {"Authorization": "Bearer " + SCRAPE_TOKEN.replace("0", "²")},
    ]
    for headers in wrong:
        assert await _status(url, headers) == 401, headers
    async with aiohttp.ClientSession() as http:
        async with http.get(url + f"/metrics?access_token={SCRAPE_TOKEN}") as r:
            assert r.status == 401  # a query string ends up in access logs: never accepted
        # Past aiohttp's header limit: refused by the HTTP parser, the server keeps going.
        async with http.get(
            url + "/metrics", headers={"Authorization": "Bearer " + "B" * 20_000}
        ) as r:
            assert r.status in (400, 431)
        raw = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n\r\n"
        reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
        writer.write(raw)
        status_line = await asyncio.wait_for(reader.readline(), 5)
        assert b" 401 " in status_line or b" 400 " in status_line
        writer.close()
    s = await scrape(url, SCRAPE_TOKEN)
    assert s.value("tiffin_rt_refusals_total", namespace="metrics", reason="unauthorized") >= len(
        wrong
    )
    assert SCRAPE_TOKEN not in caplog.text
    assert SCRAPE_TOKEN[:-1] not in caplog.text


def test_metrics_beyond_localhost_need_a_token(tmp_path: object) -> None:
    base = {"auth": {"jwt_secret": "s" * 40}}
    for host in ("0.0.0.0", "", "10.1.2.3", "example.com", "::"):
        with pytest.raises(ConfigError, match=r"metrics\.token: required"):
            load_settings(None, _env(base, host=host, enabled="true"))
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        load_settings(None, _env(base, host=host, enabled="true"))
    load_settings(None, _env(base, host="0.0.0.0", enabled="true", token=SCRAPE_TOKEN))
    load_settings(None, _env(base, host="0.0.0.0", enabled="false"))
    for short in ("short", "x" * 15, "é" * 20, "a b\x00" * 8):
        with pytest.raises(ConfigError, match=r"metrics\.token: at least 16 printable ASCII"):
            load_settings(None, _env(base, host="127.0.0.1", enabled="true", token=short))


def _env(base: dict[str, dict[str, str]], **values: str) -> dict[str, str]:
    env = {"TIFFIN_RT__AUTH__JWT_SECRET": base["auth"]["jwt_secret"]}
    env["TIFFIN_RT__SERVER__HOST"] = values["host"]  # a text setting: taken as written
    env["TIFFIN_RT__METRICS__ENABLED"] = values["enabled"]
    if "token" in values:
        env["TIFFIN_RT__METRICS__TOKEN"] = values["token"]
    return env



def test_serve_on_every_interface_without_a_token_stops_with_the_key() -> None:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "tiffin_rt", "serve"),
            *("--config", str(REPO / "config.yaml"), "--host", "0.0.0.0", "--port", "0"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "metrics.token: required" in done.stderr


async def test_listener_lag_observes_each_event(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(dsn, metrics=METRICS_ON)
    url = base_url(await start_server(settings))
    client, received = await sio_client(url, token(settings, "alice"))
    before = await scrape(url)
    try:
        await marker_arrived(db, "alice", received)
        await marker_arrived(db, "alice", received)
    finally:
        await client.disconnect()
    after = await scrape(url)
    count = "tiffin_rt_listener_lag_seconds_count"
    assert after.value(count) == before.value(count) + 2
    total = after.value("tiffin_rt_listener_lag_seconds_sum") - before.value(
        "tiffin_rt_listener_lag_seconds_sum"
    )
    assert 0 <= total < 10
    inf = after.value("tiffin_rt_listener_lag_seconds_bucket", le="+Inf")
    assert inf == after.value(count)


@pytest.mark.parametrize("broker", BOTH)
async def test_dashboard_and_alerts_use_only_exported_metrics(
    start_server: StartServer, dsn: str, broker: str
) -> None:
    """docs/grafana-dashboard.json and the alert rules in docs/operations.md name metrics that
    a server (with a broker, as a cluster runs) exports."""
    settings = make_settings(
        dsn, metrics=METRICS_ON, cluster={"broker": broker, "name": cluster_name()}
    )
    server = await start_server(settings)
    url = base_url(server)
    client, _ = await sio_client(url, token(settings, "alice"))
    try:
        await client.call("joinRoom", "order-1", namespace="/notifications")
        s = await scrape(url)
    finally:
        await client.disconnect()
    kind = "redis" if broker.startswith("redis") else "amqp"
    assert s.value("tiffin_rt_broker_connected", broker=kind) == 1
    exported = s.names()
    dashboard = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    operations = (REPO / "docs" / "operations.md").read_text()
    rules = operations[operations.index("### Alerts worth setting") :]
    named = set(METRIC_NAME.findall("\n".join(queries))) | set(METRIC_NAME.findall(rules))
    assert len(named) > 20
    assert named - exported == set()


METRIC_NAME = re.compile(r"\b((?:tiffin_rt|process)_[a-z_]+)\b")
