"""Payments: a status change in the backend's payments table reaches the customer once on
every transport and in the inbox; odd rows are delivered as far as they can be, and logged."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import pytest
import socketio
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import (
    Received,
    SseEvent,
    base_url,
    marker_arrived,
    sse_events,
    token,
)
from tests.payments_helpers import add_payment, create_payments_table, payments_section
from tiffin_rt.config import Settings
from tiffin_rt.db import migrate

EVENTS = ("paymentStatusUpdate", "notification", "orderStatusUpdate")


async def _client(url: str, tok: str, transport: str) -> tuple[socketio.AsyncClient, Received]:
    client = socketio.AsyncClient(reconnection=False)
    received = Received()
    for name in EVENTS:
        client.on(
            name, (lambda n: lambda data=None: received.record(n, data))(name), "/notifications"
        )
    await client.connect(
        url,
        namespaces=["/notifications"],
        auth={"token": tok},
        transports=[transport],
        wait_timeout=5,
    )
    return client, received


async def _inbox(url: str, settings: Settings, user: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token(settings, user)}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(url + "/api/notifications", headers=headers) as response,
    ):
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


async def test_a_committed_payment_change_reaches_the_customer_once_everywhere(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    await create_payments_table(db)
    server = await start_server(settings.model_copy(update={"payments": _payments()}))
    url = base_url(server)
    alice = token(settings, "alice")
    ws, on_ws = await _client(url, alice, "websocket")
    polling, on_polling = await _client(url, alice, "polling")
    bob, on_bob = await _client(url, token(settings, "bob"), "websocket")
    sse: list[SseEvent] = []
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            url + "/api/notifications/orders/1/status",
            headers={"Authorization": f"Bearer {alice}"},
        ) as response,
    ):
        stream = sse_events(response)
        sse.append(await asyncio.wait_for(anext(stream), 5))  # the order's current status

        payment = await add_payment(db, 1, Decimal("14.50"), "EUR", reference="pi_1")
        async with db.transaction():
            await db.execute("UPDATE payments SET status = 'succeeded' WHERE id = $1", payment)
        await db.execute("UPDATE orders SET status = 'confirmed' WHERE id = 1")  # the marker

        while (event := await asyncio.wait_for(anext(stream), 5)).event is not None:
            sse.append(event)
        marker = event
    await marker_arrived(db, "alice", on_ws, on_polling)
    await marker_arrived(db, "bob", on_bob)
    try:
        expected = [
            {"status": "pending", "previousStatus": None},
            {"status": "succeeded", "previousStatus": "pending"},
        ]
        for received in (on_ws, on_polling):
            updates = received.of("paymentStatusUpdate")
            assert [
                {"status": u["status"], "previousStatus": u["previousStatus"]} for u in updates
            ] == expected
            assert updates[1] | {"timestamp": None, "eventId": None} == {
                "paymentId": str(payment),
                "orderId": "1",
                "status": "succeeded",
                "previousStatus": "pending",
                "amount": "14.50",
                "currency": "EUR",
                "timestamp": None,
                "eventId": None,
            }
            titles = [n["title"] for n in received.of("notification")]
            assert titles == ["Payment of €14.50 pending", "Payment of €14.50 received"]
            assert [n["data"]["paymentId"] for n in received.of("notification")] == [
                str(payment)
            ] * 2
        assert on_bob.of("paymentStatusUpdate") == []
        assert on_bob.of("notification") == []

        payments_on_sse = [e for e in sse if e.event == "paymentStatusUpdate"]
        assert [e.json() for e in payments_on_sse] == on_ws.of("paymentStatusUpdate")
        assert [int(e.id or 0) for e in payments_on_sse] == [
            u["eventId"] for u in on_ws.of("paymentStatusUpdate")
        ]
        assert marker.json()["status"] == "confirmed"

        inbox = await _inbox(url, settings, "alice")
        assert [n["title"] for n in inbox["notifications"]] == [
            "Payment of €14.50 received",
            "Payment of €14.50 pending",
        ]
        assert inbox["unread"] == 2
        assert (await _inbox(url, settings, "bob"))["unread"] == 0
    finally:
        for client in (ws, polling, bob):
            await client.disconnect()


def _payments(**overrides: Any) -> Any:
    from tiffin_rt.config import PaymentsSettings

    return PaymentsSettings.model_validate(payments_section(**overrides))


AMOUNTS = ["14.5", "0.05", "0.005", "0.015", "2.5", "3.5", "-14.5", "1234567.505", "999", "1e20"]


@pytest.mark.parametrize("locale", ["en", "de", "fr", "en_IN", "ja"])
async def test_amounts_are_written_as_babel_writes_them_for_every_currency(
    db: asyncpg.Connection, locale: str
) -> None:
    from babel.numbers import format_currency, list_currencies

    from tiffin_rt.config import OrdersSettings, PaymentsSettings
    from tiffin_rt.db import migrate

    await create_payments_table(db)
    await migrate.upgrade(db, OrdersSettings(), PaymentsSettings(table="payments", locale=locale))
    codes = [*sorted(list_currencies()), "XYZ"]
    cases = [(Decimal(a), c) for a in AMOUNTS for c in codes]
    rows = await db.fetch(
        "SELECT tiffin_rt.format_money(a, c) AS text"
        " FROM unnest($1::numeric[], $2::text[]) AS t(a, c)",
        [a for a, _ in cases],
        [c for _, c in cases],
    )
    wrong = [
        (str(a), c, row["text"], format_currency(a, c, locale=locale))
        for (a, c), row in zip(cases, rows, strict=True)
        if row["text"] != format_currency(a, c, locale=locale)
    ]
    assert wrong == []
    assert await db.fetchval("SELECT tiffin_rt.format_money('NaN', 'EUR')") is None
    assert await db.fetchval("SELECT tiffin_rt.format_money(NULL, 'EUR')") is None


# (order id, amount, currency, status) as the backend's row holds them, what the customer's
# paymentStatusUpdate says (None: nobody gets one), its notification title, what is logged.
ODD_ROWS: list[tuple[Any, Any, Any, str, dict[str, Any] | None, str | None, str | None]] = [
    (
        "1",
        None,
        "EUR",
        "pending",
        {"amount": None, "currency": "EUR"},
        "Payment pending",
        "no amount",
    ),
    (
        "1",
        "14.5",
        "XYZ",
        "pending",
        {"amount": "14.50", "currency": "XYZ"},
        "Payment of XYZ14.50 pending",
        "currency XYZ is not an ISO 4217 code",
    ),
    (
        "1",
        "1450",
        " jpy ",
        "captured",
        {"amount": "1450", "currency": "JPY"},
        "Payment of ¥1,450 received",
        None,
    ),
    (
        "1",
        "123456789012345678901234567890.125",
        "EUR",
        "succeeded",
        {"amount": "123456789012345678901234567890.125", "currency": "EUR"},
        "Payment of €123,456,789,012,345,678,901,234,567,890.12 received",
        None,
    ),
    (
        "1",
        "7",
        "ユーロ",
        "failed",
        {"amount": "7.00", "currency": "ユーロ"},
        "Payment of ユーロ7.00 failed",
        "currency ユーロ is not an ISO 4217 code",
    ),
    (
        "1",
        "abc",
        "EUR",
        "pending",
        {"amount": None},
        "Payment pending",
        "amount abc is not a number",
    ),
    (
        "1",
        "NaN",
        "EUR",
        "pending",
        {"amount": None},
        "Payment pending",
        "amount NaN is not a finite number",
    ),
    *(
        (
            "1",
            huge,
            "EUR",
            "pending",
            {"amount": None},
            "Payment pending",
            f"amount {huge} is out of range",
        )
        for huge in ("1e100000", "123456789e131060", "1e131071", "1e-21", "-1e40")
    ),
    (
        "1",
        "3",
        "EUR",
        "bezahlt ✓",
        {"status": "bezahlt ✓", "amount": "3.00"},
        "Payment of €3.00: bezahlt ✓",
        None,
    ),
    ("01", "3", "EUR", "refunded", {"orderId": "1"}, "Payment of €3.00 refunded", None),
    ("x1", "3", "EUR", "pending", None, None, "order id x1 is not an id of public.orders"),
    ("99", "3", "EUR", "pending", None, None, "no order 99 in public.orders"),
    (None, "3", "EUR", "pending", None, None, "no order id"),
]


async def test_odd_rows_reach_the_customer_as_far_as_they_can_and_are_logged(
    start_server: StartServer,
    settings: Settings,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await create_payments_table(db, amount_type="text", order_id_type="text")
    server = await start_server(settings.model_copy(update={"payments": _payments()}))
    client, received = await _client(base_url(server), token(settings, "alice"), "websocket")
    caplog.set_level(logging.WARNING)
    try:
        for order_id, amount, currency, status, *_ in ODD_ROWS:
            await add_payment(db, order_id, amount, currency, status=status)
        await marker_arrived(db, "alice", received)
    finally:
        await client.disconnect()
    reached = [row for row in ODD_ROWS if row[4] is not None]
    updates = received.of("paymentStatusUpdate")
    assert len(updates) == len(reached)
    for update, (_, _, _, status, expected, _, _) in zip(updates, reached, strict=True):
        assert update["status"] == status
        assert update | (expected or {}) == update, (update, expected)
        assert isinstance(update["amount"], str | None)
    assert [n["title"] for n in received.of("notification")] == [row[5] for row in reached]
    warnings = [r.getMessage() for r in caplog.records if r.name == "tiffin_rt.core.payments"]
    for *_, issue in ODD_ROWS:
        if issue is not None:
            assert sum(issue in w for w in warnings) == 1, (issue, warnings)
    assert sum("sent to nobody" in w for w in warnings) == 3
    assert len(warnings) == sum(1 for row in ODD_ROWS if row[6] is not None)
    # An event for no room is delivered to nobody, quietly (no sink fails on it).
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("amount_type", "stored", "currency", "expected"),
    [
        ("bigint", 1450, "EUR", "14.50"),
        ("bigint", 1450, "JPY", "1450"),
        ("bigint", 14505, "KWD", "14.505"),
        ("bigint", 5, "EUR", "0.05"),
        ("bigint", -250, "usd", "-2.50"),
        ("numeric", Decimal("1450.5"), "EUR", "14.505"),
    ],
)
async def test_amounts_in_minor_units_are_exact_decimals(
    start_server: StartServer,
    settings: Settings,
    db: asyncpg.Connection,
    amount_type: str,
    stored: Any,
    currency: str,
    expected: str,
) -> None:
    await create_payments_table(db, amount_type=amount_type)
    payments = _payments(amount_in_minor_units=True)
    await start_server(settings.model_copy(update={"payments": payments}))
    await add_payment(db, 1, stored, currency)
    amount = await db.fetchval(
        "SELECT payload->>'amount' FROM tiffin_rt.events WHERE kind = 'payment_status'"
    )
    assert amount == expected


async def test_a_float_column_is_read_as_the_decimal_it_prints(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    await create_payments_table(db, amount_type="double precision")
    await start_server(settings.model_copy(update={"payments": _payments()}))
    await add_payment(db, 1, 0.1 + 0.2, "EUR")  # 0.30000000000000004 as a float
    await add_payment(db, 1, 14.5, "EUR")
    rows = await db.fetch(
        "SELECT payload->>'amount' AS a FROM tiffin_rt.events"
        " WHERE kind = 'payment_status' ORDER BY id"
    )
    assert [r["a"] for r in rows] == ["0.30000000000000004", "14.50"]


async def _payment_triggers(db: asyncpg.Connection) -> list[str]:
    rows = await db.fetch(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass('public.payments')"
        " AND NOT tgisinternal ORDER BY 1"
    )
    return [r["tgname"] for r in rows]


async def test_upgrade_installs_the_payment_triggers_and_downgrade_or_no_table_removes_them(
    db: asyncpg.Connection,
) -> None:
    from tiffin_rt.config import OrdersSettings, PaymentsSettings
    from tiffin_rt.db import migrate

    await create_payments_table(db)
    payments = PaymentsSettings(table="payments")
    await migrate.upgrade(db, OrdersSettings(), payments)
    await migrate.upgrade(db, OrdersSettings(), payments)  # idempotent
    installed = ["tiffin_rt_payment_insert", "tiffin_rt_payment_status"]
    assert await _payment_triggers(db) == installed
    applied = await migrate.upgrade(db, OrdersSettings(), PaymentsSettings(table=""))
    assert await _payment_triggers(db) == []
    assert applied == ["payment triggers removed from payments"]
    await migrate.upgrade(db, OrdersSettings(), payments)
    await migrate.downgrade(db)
    assert await _payment_triggers(db) == []
    await add_payment(db, 1, Decimal(1), "EUR")  # the backend's writes still work

    with pytest.raises(migrate.SchemaError, match=r"payments\.currency_column: table payments"):
        await migrate.upgrade(
            db, OrdersSettings(), PaymentsSettings(table="payments", currency_column="cur")
        )
    with pytest.raises(migrate.SchemaError, match=r"payments\.table: table public\.pay does not"):
        await migrate.upgrade(db, OrdersSettings(), PaymentsSettings(table="public.pay"))


async def test_payments_config_errors_name_the_key() -> None:
    from tiffin_rt.config import ConfigError, load_settings

    base = {"TIFFIN_RT__AUTH__JWT_SECRET": "x" * 40}
    cases = {
        "TIFFIN_RT__PAYMENTS__TABLE": ("pay;drop", "payments.table: not a table name"),
        "TIFFIN_RT__PAYMENTS__LOCALE": ("xx_YY_ZZ", "payments.locale: not a locale"),
        "TIFFIN_RT__PAYMENTS__WEBHOOK_SECRET": ("short", "payments.webhook_secret: at least 16"),
        "TIFFIN_RT__PAYMENTS__WEBHOOK_TOLERANCE": ("0", "payments.webhook_tolerance"),
    }
    for key, (value, message) in cases.items():
        with pytest.raises(ConfigError, match=message.replace(".", r"\.")) as caught:
            load_settings(None, base | {key: value})
        if "SECRET" in key:
            assert value not in str(caught.value)
    with pytest.raises(ConfigError, match=r"payments\.webhook_secret") as caught:
        load_settings(None, base | {"TIFFIN_RT__PAYMENTS__WEBHOOK_SECRET": "[1234567]"})
    assert "1234567" not in str(caught.value)
    settings = load_settings(None, base | {"TIFFIN_RT__PAYMENTS__WEBHOOK_SECRET": "s" * 32})
    assert "s" * 32 not in repr(settings)
    assert "s" * 32 not in str(settings.model_dump())


async def test_an_sse_stream_resumed_from_last_event_id_replays_the_missed_payments(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    await create_payments_table(db)
    server = await start_server(settings.model_copy(update={"payments": _payments()}))
    url = base_url(server)
    await db.execute("UPDATE orders SET status = 'confirmed' WHERE id = 1")
    seen = await db.fetchval("SELECT max(id) FROM tiffin_rt.events")
    payment = await add_payment(db, 1, Decimal("9.99"), "GBP")
    await db.execute("UPDATE payments SET status = 'authorized' WHERE id = $1", payment)
    await db.execute("UPDATE orders SET status = 'preparing' WHERE id = 1")
    headers = {"Authorization": f"Bearer {token(settings, 'alice')}", "Last-Event-ID": str(seen)}
    async with (
        aiohttp.ClientSession() as http,
        http.get(url + "/api/notifications/orders/1/status", headers=headers) as response,
    ):
        stream = sse_events(response)
        replayed = [await asyncio.wait_for(anext(stream), 5) for _ in range(3)]
    assert [(e.event, e.json()["status"]) for e in replayed] == [
        ("paymentStatusUpdate", "pending"),
        ("paymentStatusUpdate", "authorized"),
        (None, "preparing"),
    ]
    assert replayed[1].json()["amount"] == "9.99"
    assert replayed[1].json()["currency"] == "GBP"
    ids = [int(e.id or 0) for e in replayed]
    assert ids == sorted(ids)
    assert ids[0] > seen
    # The first event of a fresh stream is still the order's status, from order events only.
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            url + "/api/notifications/orders/1/status",
            headers={"Authorization": headers["Authorization"]},
        ) as response,
    ):
        first = await asyncio.wait_for(anext(sse_events(response)), 5)
    assert (first.event, first.json()["status"], first.json()["previousStatus"]) == (
        None,
        "preparing",
        "confirmed",
    )


async def test_readiness_fails_while_a_payments_trigger_is_missing_or_disabled(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    await create_payments_table(db)
    server = await start_server(settings.model_copy(update={"payments": _payments()}))
    url = base_url(server) + "/readyz"

    async def readyz() -> tuple[int, str]:
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            return response.status, (await response.json())["checks"]["triggers"]

    assert await readyz() == (200, "ok")
    await db.execute("DROP TRIGGER tiffin_rt_payment_status ON public.payments")
    # Payment changes would reach nobody: a load balancer must not send traffic here.
    assert await readyz() == (503, "missing tiffin_rt_payment_status on public.payments")
    await migrate.upgrade(db, settings.orders, _payments())  # `db upgrade` puts it back
    assert await readyz() == (200, "ok")
    await db.execute("ALTER TABLE public.payments DISABLE TRIGGER tiffin_rt_payment_insert")
    assert await readyz() == (503, "disabled tiffin_rt_payment_insert on public.payments")
    await db.execute("DROP TRIGGER tiffin_rt_order_status ON public.orders")
    assert await readyz() == (
        503,
        "missing tiffin_rt_order_status on public.orders;"
        " disabled tiffin_rt_payment_insert on public.payments",
    )


async def test_readiness_does_not_ask_for_payment_triggers_without_payments(
    server: TestServer, db: asyncpg.Connection
) -> None:
    await create_payments_table(db)  # a payments table the server was not told about
    async with aiohttp.ClientSession() as http, http.get(base_url(server) + "/readyz") as r:
        assert (r.status, (await r.json())["checks"]["triggers"]) == (200, "ok")
