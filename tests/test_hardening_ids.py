"""Numbers and order ids from clients: one strict parser, the same answer on every transport.

`²` is a digit to `str.isdigit()` but not to `int()`; `01`, `+1` and ` 1` are order 1 to
PostgreSQL's cast but not the room `order-1` events are sent to. Demo orders 1 and 2 are alice's.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from tests.helpers import eventually, sio_client, sse_events, token
from tests.support_clients import NAMESPACE as SUPPORT
from tiffin_rt.config import Settings
from tiffin_rt.core.parse import (
    InvalidNumber,
    InvalidOrderId,
    OrderIdFormat,
    parse_int,
    parse_optional_int,
)

NS = "/notifications"
UUID = "123e4567-e89b-12d3-a456-426614174000"

# Unicode digits (superscript, Arabic-Indic, fullwidth), signs, spaces, leading zeros, floats,
# numbers past bigint: none is a number here.
NOT_NUMBERS = ["²", "\u0661", "\uff11", "+1", "-1", " 1", "1 ", "01", "00", "1.0", "1e3", "0x1"]
NOT_NUMBERS += ["9" * 19]


@pytest.mark.parametrize("text", NOT_NUMBERS)
def test_the_parser_takes_only_canonical_ascii_decimals(text: str) -> None:
    with pytest.raises(InvalidNumber):
        parse_int(text, "n")


def test_the_parser_bounds_and_types() -> None:
    assert parse_int("0", "n") == 0
    assert parse_int("9223372036854775807", "n") == 2**63 - 1
    assert parse_int(42, "n") == 42
    assert parse_optional_int(None, "n") is None
    assert parse_optional_int("", "n") is None
    for bad in (True, 1.0, -1, 2**63, "9223372036854775808", None, [1]):
        with pytest.raises(InvalidNumber):
            parse_int(bad, "n")
    with pytest.raises(InvalidNumber):
        parse_int("0", "n", low=1)


@pytest.mark.parametrize(
    ("column_type", "good", "bad"),
    [
        ("bigint", ["1", "-3", "0", 7], ["01", "+1", " 1", "1.0", "²", "-0", "9" * 20, True, ""]),
        ("integer", ["2147483647"], ["2147483648"]),
        ("uuid", [UUID], [UUID.upper(), UUID.replace("-", ""), "{" + UUID + "}"]),
        ("text", ["01", "+1", "A-7"], ["", None, 1.5]),
    ],
)
def test_order_ids_only_as_the_database_prints_them(
    column_type: str, good: list[Any], bad: list[Any]
) -> None:
    ids = OrderIdFormat(column_type)
    for value in good:
        assert ids.parse(value) == str(value)
    for value in bad:
        with pytest.raises(InvalidOrderId):
            ids.parse(value)


async def _answer(
    method: str, url: str, tok: str, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method, url, headers={"Authorization": f"Bearer {tok}", **(headers or {})}
        ) as response,
    ):
        return response.status, await response.json()


def _no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == []


@pytest.mark.parametrize("bad", ["²", "\u0661", "01", "+1", "%201", "1.0", "9" * 20])
async def test_every_http_number_refuses_unicode_digits_and_other_spellings_with_400(
    bad: str,
    server: TestServer,
    url: str,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tok = token(settings, "alice")
    quoted = bad if bad.startswith("%") else aiohttp.helpers.quote(bad, safe="")
    order = "/api/notifications/orders/1/status"
    cases = [
        ("GET", f"{url}{order}?lastEventId={quoted}", None, "bad_request"),
        ("GET", f"{url}/api/notifications?limit={quoted}", None, "bad_request"),
        ("GET", f"{url}/api/notifications?before={quoted}", None, "bad_request"),
        ("POST", f"{url}/api/notifications/{quoted}/read", None, "bad_request"),
        ("GET", f"{url}/api/support/conversations/{quoted}/messages", None, "invalid_payload"),
        ("GET", f"{url}/api/support/conversations/1/messages?before={quoted}", None, None),
        ("GET", f"{url}/api/support/conversations/1/messages?limit={quoted}", None, None),
    ]
    if not bad.startswith("%"):
        cases.append(("GET", url + order, {"Last-Event-ID": bad}, "bad_request"))
    for method, target, headers, code in cases:
        status, body = await _answer(method, target, tok, headers)
        assert status == 400, (target, body)
        assert body["error"]["code"] == (code or "invalid_payload"), (target, body)
    _no_errors_logged(caplog)


async def test_a_unicode_digit_last_event_id_on_socketio_is_a_resync_not_a_drop(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    for bad in ("²", "01", "+1", " 1", True, 1.5, -1):
        client, log = await sio_client(
            url,
            token(settings, "alice"),
            events=("resync", "orderStatusUpdate"),
            auth={"lastEventId": bad},
        )
        try:
            [resync] = await log.wait_for("resync")
            assert resync["reason"] == "invalid", bad
            assert "lastEventId" in resync["message"]
            # Still connected and served: a change of alice's order arrives.
            await db.execute("UPDATE orders SET status = 'ready' WHERE id = 1")
            # (the previous round's 'pending' may arrive live first: the listener is not waited on)
            await eventually(
                lambda log=log: [u["status"] for u in log.of("orderStatusUpdate")][-1:] == ["ready"]
            )
            assert {u["orderId"] for u in log.of("orderStatusUpdate")} == {"1"}
        finally:
            await client.disconnect()
        await db.execute("UPDATE orders SET status = 'pending' WHERE id = 1")


async def test_support_events_refuse_unicode_digits_as_invalid_payload(
    server: TestServer, url: str, settings: Settings
) -> None:
    client, _ = await sio_client(url, token(settings, "alice"), namespace=SUPPORT, events=())
    try:
        ack = await client.call(
            "startConversation", {"subject": "lunch"}, namespace=SUPPORT, timeout=10
        )
        conversation = ack["conversation"]["id"]
        for data in (
            {"conversationId": "²"},
            {"conversationId": "0" + str(conversation)},
            {"conversationId": conversation, "before": "²"},
            {"conversationId": conversation, "limit": "\uff11"},
            {"conversationId": conversation, "limit": "+5"},
        ):
            ack = await client.call("history", data, namespace=SUPPORT, timeout=10)
            assert ack["ok"] is False, data
            assert ack["error"]["code"] == "invalid_payload", data
        ack = await client.call(
            "history", {"conversationId": str(conversation), "limit": "5"}, namespace=SUPPORT
        )
        assert ack["ok"] is True
    finally:
        await client.disconnect()


@pytest.mark.parametrize("alias", ["order-002", "order-01", "order-02", "order-1.0", "order-0x1"])
async def test_order_id_aliases_are_refused_by_join_and_leave(
    alias: str, server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    client, log = await sio_client(url, token(settings, "alice"), events=("orderStatusUpdate",))
    try:
        for event in ("joinRoom", "leaveRoom"):
            ack = await client.call(event, alias, namespace=NS)
            assert ack["ok"] is False, (event, ack)
            assert ack["error"]["code"] == "invalid_room", (event, ack)
        # The canonical name still joins, and its updates arrive.
        joined = await client.call("joinRoom", "order-2", namespace=NS)
        assert (joined["ok"], joined["room"]) == (True, "order-2")
        await db.execute("UPDATE orders SET status = 'ready' WHERE id = 2")
        [update] = await log.wait_for("orderStatusUpdate")
        assert update["orderId"] == "2"
    finally:
        await client.disconnect()


async def test_a_support_conversation_names_its_order_only_canonically(
    server: TestServer, url: str, settings: Settings
) -> None:
    client, _ = await sio_client(url, token(settings, "alice"), namespace=SUPPORT, events=())
    try:
        for alias in ("02", "+2", " 2"):
            ack = await client.call(
                "startConversation", {"subject": "lunch", "orderId": alias}, namespace=SUPPORT
            )
            assert ack["ok"] is False, alias
            assert ack["error"]["code"] == "invalid_room", (alias, ack)
        ack = await client.call(
            "startConversation", {"subject": "lunch", "orderId": 2}, namespace=SUPPORT
        )
        assert ack["conversation"]["orderId"] == "2"
    finally:
        await client.disconnect()


@pytest.mark.parametrize("alias", ["01", "+1", "%201", "1.0", "%C2%B2", "00000000001"])
async def test_sse_refuses_order_id_aliases_with_400(
    alias: str, server: TestServer, url: str, settings: Settings
) -> None:
    status, body = await _answer(
        "GET", f"{url}/api/notifications/orders/{alias}/status", token(settings, "alice")
    )
    assert status == 400
    assert body["error"]["code"] == "bad_request"
    # The canonical id streams.
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{url}/api/notifications/orders/1/status",
            headers={"Authorization": f"Bearer {token(settings, 'alice')}"},
        ) as response,
    ):
        first = await anext(sse_events(response))
        assert first.json()["orderId"] == "1"
