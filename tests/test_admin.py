"""The admin view: refused without a token, with a bad one and to every role but admin, on
every path and on Socket.IO; for an admin, live counts, the listener, rooms and members on
every transport, and recent warnings with tokens masked."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import asyncpg
import jwt
import pytest
import socketio

from tests.conftest import StartServer
from tests.helpers import base_url, eventually, make_settings, sio_client, token
from tests.metrics_helpers import METRICS_ON, polling_client
from tests.replay_helpers import set_statuses
from tests.test_hardening_slow import event_stream
from tiffin_rt.config import Settings
from tiffin_rt.keys import LISTENER

PATHS = ("/admin", "/admin/state")


async def _get(
    url: str, path: str, headers: dict[str, str] | None = None
) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as http, http.get(url + path, headers=headers) as response:
        await response.read()
        return response


def _bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


async def test_admin_view_refuses_everyone_but_admins_on_every_path(
    start_server: StartServer, settings: Settings
) -> None:
    url = base_url(await start_server(settings))
    forged = jwt.encode({"sub": "eve", "role": "admin", "exp": 2_000_000_000}, "y" * 40, "HS256")
    for path in PATHS:
        assert (await _get(url, path)).status == 401
        assert (await _get(url, path, _bearer(forged))).status == 401
        assert (
            await _get(url, path, _bearer(token(settings, "root", "admin", ttl=-60)))
        ).status == 401
        assert (await _get(url, path, {"Authorization": "Bearer " + "x" * 5000})).status == 401
        for role, vendor in (
            ("customer", None),
            ("rider", None),
            ("support", None),
            ("kitchen", "v1"),
        ):
            tok = token(settings, "u1", role, vendor_id=vendor)
            response = await _get(url, path, _bearer(tok))
            assert response.status == 403, (path, role)
            response = await _get(url, f"{path}?access_token={tok}")
            assert response.status == 403, (path, role)
        admin = token(settings, "root", "admin")
        assert (await _get(url, path, _bearer(admin))).status == 200
        assert (await _get(url, f"{path}?access_token={admin}")).status == 200
    async with aiohttp.ClientSession(
        cookies={settings.auth.cookie_name: token(settings, "c", "customer")}
    ) as http, http.get(url + "/admin/state") as response:
        assert response.status == 403


@pytest.mark.parametrize("namespace", ["/admin", "/"])
async def test_no_socketio_namespace_serves_the_admin_view(
    start_server: StartServer, settings: Settings, namespace: str
) -> None:
    url = base_url(await start_server(settings))
    client = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(
            url,
            namespaces=[namespace],
            auth={"token": token(settings, "root", "admin")},
            transports=["websocket"],
            wait_timeout=5,
        )
    await client.disconnect()


async def test_the_page_is_self_contained(start_server: StartServer, settings: Settings) -> None:
    url = base_url(await start_server(settings))
    async with (
        aiohttp.ClientSession() as http,
        http.get(url + "/admin", headers=_bearer(token(settings, "root", "admin"))) as response,
    ):
        page = await response.text()
        assert response.headers["Content-Type"].startswith("text/html")
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert "tiffin_rt admin" in page
    assert "<script src" not in page
    assert "http://" not in page
    assert "https://" not in page
    assert "innerHTML" not in page  # names from clients are written as text only


async def test_state_shows_connections_rooms_listener_and_recent_errors(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(dsn, metrics=METRICS_ON)
    server = await start_server(settings)
    url = base_url(server)
    admin = _bearer(token(settings, "root", "admin"))
    alice = token(settings, "alice")
    ws, _ = await sio_client(url, alice)
    polling = await polling_client(url, token(settings, "bob", "rider"))
    try:
        ack = await ws.call("joinRoom", "order-1", namespace="/notifications")
        assert ack["ok"] is True
        async with aiohttp.ClientSession() as http, event_stream(http, url, alice) as sse:
            [event_id] = await set_statuses(db, 1, ["preparing"])
            await sse.until(lambda: any(u["eventId"] == event_id for u in sse.updates))
            await eventually(lambda: server.app[LISTENER].cursor == event_id)
            careless = token(settings, "carol")
            logging.getLogger("tiffin_rt.example").warning("a careless line with %s", careless)
            async with http.get(url + "/admin/state", headers=admin) as response:
                assert response.status == 200
                state: dict[str, Any] = await response.json()
    finally:
        await ws.disconnect()
        await polling.disconnect()
    notifications = state["connections"]["socketio"]["/notifications"]
    assert notifications == {"websocket": 1, "polling": 1}
    assert state["connections"]["sse"] == 1
    listener = state["listener"]
    assert listener["connected"] is True
    assert listener["cursor"] == event_id
    assert listener["logHead"] == event_id
    assert listener["behind"] == 0
    assert listener["lastLagSeconds"] is not None
    assert listener["lastLagSeconds"] >= 0
    rooms = {r["room"]: r for r in state["rooms"]}
    order = rooms["order-1"]
    members = {(m["user"], m["role"], m["namespace"], m["transport"]) for m in order["members"]}
    assert members == {
        ("alice", "customer", "/notifications", "websocket"),
        ("alice", "customer", "sse", "sse"),
    }
    assert ("bob", "rider", "/notifications", "polling") in {
        (m["user"], m["role"], m["namespace"], m["transport"]) for m in rooms["user-bob"]["members"]
    }
    messages = [e["message"] for e in state["recentErrors"]]
    assert any("a careless line with [redacted]" in m for m in messages)
    assert careless not in str(state)
    careless_line = next(e for e in state["recentErrors"] if "careless" in e["message"])
    assert careless_line["level"] == "WARNING"
    assert careless_line["logger"] == "tiffin_rt.example"
