"""Long-polling answers hold at most as many packets as python-engineio's client decodes.

python-engineio's client (the official python-socketio client) refuses a polling payload of
more than `Payload.max_decode_packets` (16) packets ("Unexpected packet from server") and drops
the connection; a client that reconnects to be replayed more than that was dropped again,
forever. The server hands the rest to the next GET.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import socketio
from aiohttp.test_utils import TestServer
from engineio.payload import Payload

from tests.helpers import base_url, marker_arrived, token
from tests.replay_helpers import EVENTS, NAMESPACE, Log, set_statuses
from tiffin_rt.config import Settings

MORE_THAN_ONE_PAYLOAD = Payload.max_decode_packets * 3


async def _polling(url: str, auth: dict[str, Any]) -> tuple[socketio.AsyncClient, Log]:
    client = socketio.AsyncClient(reconnection=False)
    log = Log()
    for name in EVENTS:
        handler = (lambda n: lambda data=None: log.record(n, data))(name)
        client.on(name, handler, namespace=NAMESPACE)
    await client.connect(
        url, namespaces=[NAMESPACE], auth=auth, transports=["polling"], wait_timeout=5
    )
    return client, log


async def _last_event_id(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT coalesce(max(id), 0) FROM tiffin_rt.events"))


async def test_a_polling_client_is_replayed_more_missed_events_than_one_payload_holds(
    server: TestServer, settings: Settings, db: asyncpg.Connection
) -> None:
    last = await _last_event_id(db)
    statuses = ["preparing", "ready"] * (MORE_THAN_ONE_PAYLOAD // 2)
    missed = await set_statuses(db, 1, statuses)

    client, log = await _polling(
        base_url(server), {"token": token(settings, "alice"), "lastEventId": last}
    )
    try:
        ack = await client.call("joinRoom", "order-1", namespace=NAMESPACE, timeout=10)
        assert ack["ok"] is True
        await log.wait_for("orderStatusUpdate", len(missed))
        await marker_arrived(db, "alice", log)
        assert [u["eventId"] for u in log.of("orderStatusUpdate")] == missed
        assert client.connected
    finally:
        await client.disconnect()


async def test_a_polling_client_takes_a_burst_committed_at_once_without_being_dropped(
    server: TestServer, settings: Settings, db: asyncpg.Connection
) -> None:
    client, log = await _polling(base_url(server), {"token": token(settings, "alice")})
    try:
        last = await _last_event_id(db)
        await db.execute(  # one transaction: the whole burst waits for the client's next GET
            f"DO $$ BEGIN FOR i IN 1..{MORE_THAN_ONE_PAYLOAD} LOOP UPDATE orders SET status ="
            " CASE WHEN i % 2 = 0 THEN 'preparing' ELSE 'ready' END WHERE id = 1; END LOOP; END $$"
        )
        burst = [
            r["id"]
            for r in await db.fetch(
                "SELECT id FROM tiffin_rt.events WHERE id > $1 AND order_id = '1' ORDER BY id",
                last,
            )
        ]
        assert len(burst) == MORE_THAN_ONE_PAYLOAD
        await log.wait_for("orderStatusUpdate", len(burst))
        await marker_arrived(db, "alice", log)
        assert [u["eventId"] for u in log.of("orderStatusUpdate")] == burst
        assert client.connected
    finally:
        await client.disconnect()
