"""One user's events share one budget across connections: others are still served."""

from __future__ import annotations

from typing import Any

import pytest
import socketio
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import base_url, make_settings, token
from tiffin_rt.config import Settings

BUDGET = 12


@pytest.fixture
def settings(dsn: str) -> Settings:
    # Per connection and event name far above the user's budget: only the budget can refuse.
    return make_settings(
        dsn,
        limits={
            "events_per_connection": "1000/minute",
            "events_per_user": f"{BUDGET}/minute",
            "abuse_strikes": "1000/minute",
        },
    )


async def connect(url: str, tok: str, namespace: str, transport: str) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(
        url, namespaces=[namespace], auth={"token": tok}, transports=[transport], wait_timeout=5
    )
    return client


async def call(client: socketio.AsyncClient, namespace: str, event: str, data: Any) -> Any:
    return await client.call(event, data, namespace=namespace, timeout=10)


# Events that need no database and change nothing, on both namespaces.
CALLS = [
    ("/support", "presence", None),
    ("/support", "listConversations", {"status": "open"}),
    ("/notifications", "joinRoom", "user-alice"),
    ("/notifications", "leaveRoom", "vendor-x"),
]


async def test_a_user_over_the_budget_is_refused_on_every_connection_and_others_are_served(
    start_server: StartServer, settings: Settings
) -> None:
    server: TestServer = await start_server(settings)
    url = base_url(server)
    alice = token(settings, "alice")
    clients: list[tuple[socketio.AsyncClient, str]] = []
    try:
        for namespace, transport in [
            ("/support", "websocket"),
            ("/support", "polling"),
            ("/notifications", "websocket"),
            ("/notifications", "polling"),
        ]:
            clients.append((await connect(url, alice, namespace, transport), namespace))
        acks = []
        # Round-robin over connections and event names: each pair stays far under its own limit.
        for i in range(2 * BUDGET):
            client, namespace = clients[i % len(clients)]
            fitting = [c for c in CALLS if c[0] == namespace]
            _, event, data = fitting[(i // len(clients)) % len(fitting)]
            acks.append(await call(client, namespace, event, data))
        served = [a for a in acks if a.get("ok") or a["error"]["code"] != "rate_limited"]
        refused = [a for a in acks if not a.get("ok") and a["error"]["code"] == "rate_limited"]
        assert len(served) == BUDGET
        assert len(refused) == BUDGET
        assert acks[:BUDGET] == served  # the budget runs out, then stays out
        # Every connection of hers is refused now, in both namespaces.
        for client, namespace in clients:
            _, event, data = next(c for c in CALLS if c[0] == namespace)
            ack = await call(client, namespace, event, data)
            assert ack["error"]["code"] == "rate_limited"
        # Another user is served at once, on both namespaces.
        bob_tok = token(settings, "bob")
        for namespace in ("/support", "/notifications"):
            bob = await connect(url, bob_tok, namespace, "websocket")
            try:
                _, event, data = next(c for c in CALLS if c[0] == namespace)
                data = "user-bob" if data == "user-alice" else data
                ack = await call(bob, namespace, event, data)
                assert ack["ok"], ack
            finally:
                await bob.disconnect()
    finally:
        for client, _ in clients:
            await client.disconnect()
