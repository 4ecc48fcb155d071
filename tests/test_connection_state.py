"""Each Socket.IO connection's state is one object, created on connect, dropped on disconnect."""

from __future__ import annotations

import asyncio
from typing import Any

import socketio
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import base_url, eventually, sio_client, token
from tiffin_rt.config import Settings
from tiffin_rt.keys import RATE_LIMITS, SETTINGS, SOCKETIO


def _namespace(server: TestServer, name: str) -> Any:
    return server.app[SOCKETIO].namespace_handlers[name]


async def test_nothing_of_a_connection_is_kept_after_it_ends(
    server: TestServer, settings: Settings
) -> None:
    url = base_url(server)
    for name in ("/notifications", "/support"):
        namespace = _namespace(server, name)
        client, _ = await sio_client(url, token(settings, "alice", ttl=600), name)
        sid = client.get_sid(name)
        conn = namespace.connection(sid)
        assert conn is not None
        assert conn.identity.user_id == "alice"
        assert conn in namespace._expiry  # its token expiry is watched
        await client.disconnect()
        await eventually(lambda ns=namespace, s=sid: ns.connection(s) is None)
        assert conn not in namespace._expiry
        assert len(namespace._expiry) == 0
    assert server.app[RATE_LIMITS].user_connections("alice") == 0


async def test_a_user_out_of_budget_and_strikes_is_told_why_and_disconnected(
    start_server: StartServer,
) -> None:
    """Refusals for the user's budget count as strikes; past them the connection ends."""
    server = await start_server(
        limits={
            "events_per_connection": "1000/minute",
            "events_per_user": "3/minute",
            "abuse_strikes": "2/minute",
        }
    )
    settings = server.app[SETTINGS]
    client, received = await sio_client(
        base_url(server), token(settings, "alice"), "/support", events=("error",)
    )
    ended = asyncio.Event()
    client.on("disconnect", lambda *_: ended.set(), namespace="/support")
    try:
        codes = []
        for _ in range(10):
            if ended.is_set():
                break
            try:
                ack = await client.call("presence", None, namespace="/support", timeout=2)
            except (socketio.exceptions.TimeoutError, socketio.exceptions.BadNamespaceError):
                break  # the connection ended before this event was answered
            codes.append("ok" if ack.get("ok") else ack["error"]["code"])
        await asyncio.wait_for(ended.wait(), 5)
        assert codes[:3] == ["ok", "ok", "ok"]
        assert set(codes[3:]) == {"rate_limited"}
        assert received.of("error") == [
            {"code": "rate_limited", "message": "too many refused events; disconnecting"}
        ]
    finally:
        await client.disconnect()
