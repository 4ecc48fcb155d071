"""An order event that does not name the order's parties (the gateway's
`send_order_status_update`, a hand-written log row) is logged without the order row's lock, so
its id says nothing about which of the order's changes of hands a read of the row reflects. The
authorizer must not take such an id as the position of the parties it read: a change of hands
committed after that read (with an older id) still evicts the old party and admits the new one.

Demo orders: 1 = alice / spice-garden / rider rita.
"""

from __future__ import annotations

import asyncpg

from tests.conftest import StartServer
from tests.helpers import eventually, make_settings, running_transaction, token
from tests.test_hub_departures import agrees, client_on, gone
from tiffin_rt.keys import LISTENER
from tiffin_rt.transports.socketio.notifications import NOTIFICATION_GATEWAY

NS = "/notifications"


async def test_a_gateway_status_update_does_not_hide_a_change_of_hands_from_the_authorizer(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(dsn, database={"gap_timeout": 30.0}, limits={"order_cache_ttl": 0})
    server = await start_server(settings)
    url = str(server.make_url("")).rstrip("/")
    rita_tok = token(settings, "rita", "rider")
    clients = []
    try:
        async with running_transaction(dsn) as change:
            rita_ws = await client_on(url, rita_tok, "websocket")
            clients.append(rita_ws)
            assert (await rita_ws[0].call("joinRoom", "order-1", namespace=NS))["ok"] is True

            # The backend hands the order to ravi in a transaction still running ...
            await change.conn.execute("UPDATE orders SET rider_id = 'ravi' WHERE id = 1")
            # ... while the gateway logs a status update for the order (no row lock: committed).
            later = await server.app[NOTIFICATION_GATEWAY].send_order_status_update(
                "1", "preparing"
            )
            # rita joins again: the row still says rita (the change is not committed), rightly.
            rita_poll = await client_on(url, rita_tok, "polling")
            clients.append(rita_poll)
            assert (await rita_poll[0].call("joinRoom", "order-1", namespace=NS))["ok"] is True

            await change.end()
            await eventually(lambda: (server.app[LISTENER].cursor or 0) >= later, timeout=10)

            # The order is ravi's: rita is out of its room on every connection, ravi may join.
            await eventually(lambda: agrees(server, NS, "order-1") == set())
            ravi = await client_on(url, token(settings, "ravi", "rider"), "websocket")
            clients.append(ravi)
            ack = await ravi[0].call("joinRoom", "order-1", namespace=NS)
            assert ack["ok"] is True, ack
            ack = await rita_poll[0].call("joinRoom", "order-1", namespace=NS)
            assert ack["ok"] is False, ack
    finally:
        for client, _ in clients:
            await gone(client)
