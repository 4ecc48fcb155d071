"""An order event that commits after an SSE stream opened reaches the stream, even when its id
is below the first event's: the first event's id is the newest order event committed when the
stream read the order, and an event logged without the order row's lock (the gateway's
`send_order_status_update`; likewise a payment's status, logged by the payments table's
trigger) can commit before an order change that took an earlier id.

Demo orders: 1 = alice / spice-garden / rider rita, status pending.
"""

from __future__ import annotations

import asyncio

import aiohttp
import asyncpg

from tests.conftest import StartServer
from tests.helpers import (
    make_settings,
    running_transaction,
    sse_events,
    statuses_until,
    token,
)
from tests.payments_helpers import add_payment, create_payments_table, payments_section
from tiffin_rt.transports.socketio.notifications import NOTIFICATION_GATEWAY


async def test_a_status_change_committed_after_the_stream_opened_reaches_it(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(dsn, database={"gap_timeout": 30.0})
    server = await start_server(settings)
    url = str(server.make_url("")).rstrip("/")
    alice = token(settings, "alice")
    async with running_transaction(dsn) as change:
        # The kitchen confirms the order in a transaction still running ...
        await change.conn.execute("UPDATE orders SET status = 'confirmed' WHERE id = 1")
        # ... while the gateway logs a status for it: a later id, committed first.
        gateway = server.app[NOTIFICATION_GATEWAY]
        gateway_event = await gateway.send_order_status_update("1", "pending")
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {alice}"}) as http,
            http.get(f"{url}/api/notifications/orders/1/status") as response,
        ):
            stream = sse_events(response)
            first = (await asyncio.wait_for(anext(stream), 5)).json()
            assert (first["status"], first["eventId"]) == ("pending", gateway_event)
            await change.end()
            await db.execute("UPDATE orders SET status = 'preparing' WHERE id = 1")
            assert await statuses_until(stream, "preparing") == ["confirmed", "preparing"]


async def test_a_resumed_stream_gets_an_update_committed_after_its_replay_with_a_lower_id(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    """The same on a resume: the replay read the gateway's update, not the order change still
    running; that change, committed later with a lower id, follows the replay."""
    settings = make_settings(dsn, database={"gap_timeout": 30.0})
    server = await start_server(settings)
    url = str(server.make_url("")).rstrip("/")
    alice = token(settings, "alice")
    # where the client resumes from: an event of the log (of no order)
    resume_from = await db.fetchval("SELECT tiffin_rt.notify_user('nobody', 't', 'x', '')")
    async with running_transaction(dsn) as change:
        await change.conn.execute("UPDATE orders SET status = 'confirmed' WHERE id = 1")
        gateway = server.app[NOTIFICATION_GATEWAY]
        gateway_event = await gateway.send_order_status_update("1", "pending")
        headers = {"Authorization": f"Bearer {alice}", "Last-Event-ID": str(resume_from)}
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            http.get(f"{url}/api/notifications/orders/1/status") as response,
        ):
            assert response.status == 200
            stream = sse_events(response)
            replayed = await asyncio.wait_for(anext(stream), 5)
            assert (replayed.id, replayed.json()["status"]) == (str(gateway_event), "pending")
            await change.end()
            await db.execute("UPDATE orders SET status = 'preparing' WHERE id = 1")
            assert await statuses_until(stream, "preparing") == ["confirmed", "preparing"]


async def test_a_payment_committed_after_the_stream_opened_with_a_lower_id_reaches_it(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    """A payment's status, logged by the payments table's trigger, takes no lock on the order:
    its transaction can commit after an order change with a later id and after the stream read
    the order; the payment still reaches the stream."""
    await create_payments_table(db)
    settings = make_settings(dsn, database={"gap_timeout": 30.0}, payments=payments_section())
    server = await start_server(settings)
    url = str(server.make_url("")).rstrip("/")
    alice = token(settings, "alice")
    async with running_transaction(dsn) as payment:
        await add_payment(payment.conn, 1, "14.50")
        await db.execute("UPDATE orders SET status = 'confirmed' WHERE id = 1")
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {alice}"}) as http,
            http.get(f"{url}/api/notifications/orders/1/status") as response,
        ):
            stream = sse_events(response)
            assert (await asyncio.wait_for(anext(stream), 5)).json()["status"] == "confirmed"
            await payment.end()
            await db.execute("UPDATE orders SET status = 'preparing' WHERE id = 1")
            got: list[tuple[str | None, str]] = []
            while not got or got[-1] != (None, "preparing"):
                event = await asyncio.wait_for(anext(stream), 5)
                got.append((event.event, event.json()["status"]))
            assert got == [("paymentStatusUpdate", "pending"), (None, "preparing")]
