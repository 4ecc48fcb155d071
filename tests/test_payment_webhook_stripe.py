"""POST /api/webhooks/payments with what Stripe really sends: events out of order (ties in one
second), PaymentIntent statuses in the contract's words, refunds announced on the Charge, and
objects or event types that change no payment, answered 200 so the provider stops retrying."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import base_url, marker_arrived, sio_client, token
from tests.payments_helpers import (
    add_payment,
    charge_refunded,
    create_payments_table,
    intent_event,
    payments_section,
    post_webhook,
    stripe_event,
)
from tests.replay_helpers import delivered_live
from tiffin_rt.keys import SETTINGS

T = 1764617301  # an event's `created`: Stripe's unix seconds


@pytest.fixture
async def served(start_server: StartServer, db: asyncpg.Connection) -> tuple[TestServer, str]:
    await create_payments_table(db)
    server = await start_server(payments=payments_section())
    await add_payment(db, 1, Decimal("14.50"), "EUR", reference="pi_1")
    return server, base_url(server)


async def _status(db: asyncpg.Connection, reference: str = "pi_1") -> str:
    return str(
        await db.fetchval("SELECT status FROM payments WHERE provider_reference = $1", reference)
    )


async def _logged(db: asyncpg.Connection, reference: str = "pi_1") -> list[str]:
    """The statuses the customer was sent for this payment, in order (the insert's first)."""
    rows = await db.fetch(
        "SELECT payload->>'status' AS status FROM tiffin_rt.events"
        " WHERE kind = 'payment_status' AND payload->>'reference' = $1 ORDER BY id",
        reference,
    )
    return [r["status"] for r in rows]


async def test_a_late_older_delivery_never_moves_the_payment_back(
    served: tuple[TestServer, str], db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    server, url = served
    client, received = await sio_client(
        url, token(server.app[SETTINGS], "alice"), events=("paymentStatusUpdate", "notification")
    )
    caplog.set_level(logging.INFO, logger="tiffin_rt.transports.payment_webhook")
    try:
        for body in (
            intent_event("evt_ok", "pi_1", "succeeded", T + 5),
            charge_refunded("evt_refund", "ch_1", "pi_1", T + 60),
        ):
            status, answer = await post_webhook(url, body)
            assert (status, answer["outcome"]) == (200, "changed")
        # Stripe retried the processing event for a while: it arrives last, and is older.
        late = intent_event("evt_late", "pi_1", "processing", T)
        status, answer = await post_webhook(url, late)
        assert (status, answer["outcome"], answer["changed"], answer["duplicate"]) == (
            200,  # taken: a provider retries anything else
            "superseded",
            False,
            False,
        )
        assert answer["reason"] == f"event evt_refund (created {T + 60}, refunded) is newer"
        status, answer = await post_webhook(url, late)  # and its retry is a duplicate
        assert (status, answer["outcome"]) == (200, "duplicate")

        assert await _status(db) == "refunded"
        await marker_arrived(db, "alice", received)
        assert [u["status"] for u in received.of("paymentStatusUpdate")] == [
            "succeeded",
            "refunded",
        ]
        assert await _logged(db) == ["pending", "succeeded", "refunded"]
        assert await db.fetchval(
            "SELECT outcome FROM tiffin_rt.payment_webhooks WHERE event_id = 'evt_late'"
        ) == ("superseded")
        [line] = [r for r in caplog.records if "superseded" in r.getMessage()]
        assert line.levelno == logging.INFO
        assert "'evt_late'" in line.getMessage()
        assert "'evt_refund'" in line.getMessage()
    finally:
        await client.disconnect()


# (event type, intent status, seconds after T) in the order they arrive; the status it ends at.
SEQUENCES: dict[str, tuple[list[tuple[str, str, int]], str]] = {
    "processing after succeeded, same second": (
        [("", "succeeded", 0), ("", "processing", 0)],
        "succeeded",
    ),
    "succeeded after processing, same second": (
        [("", "processing", 0), ("", "succeeded", 0)],
        "succeeded",
    ),
    "authorized then captured, same second, capture first": (
        [("", "succeeded", 0), ("payment_intent.amount_capturable_updated", "requires_capture", 0)],
        "succeeded",
    ),
    "a failed attempt, then a retry that succeeds": (
        [("payment_intent.payment_failed", "requires_payment_method", 0), ("", "succeeded", 9)],
        "succeeded",
    ),
    "the retry's success arrives before the failed attempt": (
        [("", "succeeded", 9), ("payment_intent.payment_failed", "requires_payment_method", 0)],
        "succeeded",
    ),
    "failure and success in one second, failure last": (
        [("", "succeeded", 0), ("payment_intent.payment_failed", "requires_payment_method", 0)],
        "succeeded",
    ),
    "failure and processing in one second, processing last": (
        [("payment_intent.payment_failed", "requires_payment_method", 0), ("", "processing", 0)],
        "failed",
    ),
    "a failed attempt, then the customer's next try asks for 3-D Secure": (
        [
            ("payment_intent.payment_failed", "requires_payment_method", 0),
            ("", "requires_action", 4),
        ],
        "pending",
    ),
    "a hold released: canceled after authorized, same second, arriving first": (
        [("", "canceled", 0), ("payment_intent.amount_capturable_updated", "requires_capture", 0)],
        "canceled",
    ),
}


@pytest.mark.parametrize("sequence", SEQUENCES)
async def test_deliveries_end_at_the_newest_status_whatever_order_they_arrive_in(
    served: tuple[TestServer, str], db: asyncpg.Connection, sequence: str
) -> None:
    _, url = served
    deliveries, expected = SEQUENCES[sequence]
    for n, (kind, status, offset) in enumerate(deliveries):
        answer = await post_webhook(url, intent_event(f"evt_{n}", "pi_1", status, T + offset, kind))
        assert answer[0] == 200
    assert await _status(db) == expected


async def test_concurrent_deliveries_of_one_payment_end_at_the_newest(
    served: tuple[TestServer, str], db: asyncpg.Connection
) -> None:
    _, url = served
    references = [f"pi_race_{n}" for n in range(12)]
    for reference in references:
        await add_payment(db, 1, Decimal("9.00"), "EUR", reference=reference)
    deliveries = []
    for n, reference in enumerate(references):
        pair = [
            intent_event(f"evt_p_{n}", reference, "processing", T),
            intent_event(f"evt_s_{n}", reference, "succeeded", T + (n % 2)),  # ties too
        ]
        deliveries += pair if n % 4 < 2 else pair[::-1]
    answers = await asyncio.gather(*(post_webhook(url, body) for body in deliveries))
    assert {status for status, _ in answers} == {200}
    for reference in references:
        assert (reference, await _status(db, reference)) == (reference, "succeeded")
        # The customer's last word about it is succeeded, never a processing after it.
        assert (await _logged(db, reference))[-1] == "succeeded"


async def test_stripe_statuses_reach_the_customer_in_the_contracts_words(
    served: tuple[TestServer, str], db: asyncpg.Connection
) -> None:
    server, url = served
    await add_payment(db, 1, Decimal("8.00"), "EUR", reference="pi_2")
    # Its own 'pending' is read by the server first: a client connected before would get it live.
    await delivered_live(server.app, await db.fetchval("SELECT max(id) FROM tiffin_rt.events"))
    client, received = await sio_client(
        url, token(server.app[SETTINGS], "alice"), events=("paymentStatusUpdate", "notification")
    )
    try:
        for n, (intent, kind, status) in enumerate(
            [
                ("pi_1", "payment_intent.requires_action", "requires_action"),  # pending still
                ("pi_1", "payment_intent.amount_capturable_updated", "requires_capture"),
                ("pi_1", "payment_intent.canceled", "canceled"),
                ("pi_2", "payment_intent.processing", "processing"),
                ("pi_2", "payment_intent.payment_failed", "requires_payment_method"),
                ("pi_2", "payment_intent.succeeded", "succeeded"),
            ]
        ):
            answer = await post_webhook(url, intent_event(f"evt_{n}", intent, status, T + n, kind))
            assert answer[0] == 200
        await marker_arrived(db, "alice", received)
        assert [(u["paymentId"], u["status"]) for u in received.of("paymentStatusUpdate")] == [
            ("1", "authorized"),
            ("1", "canceled"),
            ("2", "processing"),
            ("2", "failed"),
            ("2", "succeeded"),
        ]
    finally:
        await client.disconnect()


async def test_a_full_refund_on_the_charge_refunds_its_payment_intent(
    served: tuple[TestServer, str], db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    _, url = served
    caplog.set_level(logging.INFO, logger="tiffin_rt.transports.payment_webhook")
    await post_webhook(url, intent_event("evt_ok", "pi_1", "succeeded", T))
    status, answer = await post_webhook(
        url, charge_refunded("evt_part", "ch_1", "pi_1", T + 10, refunded=500)
    )
    assert (status, answer["outcome"]) == (200, "ignored")
    assert answer["reason"] == (
        "charge.refunded: a partial refund (500 of 1450); payment pi_1 keeps its status"
    )
    assert await _status(db) == "succeeded"
    status, answer = await post_webhook(url, charge_refunded("evt_all", "ch_1", "pi_1", T + 20))
    assert (status, answer["outcome"], answer["status"]) == (200, "changed", "refunded")
    assert await _logged(db) == ["pending", "succeeded", "refunded"]
    assert "partial refund (500 of 1450)" in caplog.text


# Deliveries about no payment this server can change: each answered 200 with its reason.
IGNORED: dict[str, tuple[bytes, str]] = {
    "a charge of no payment intent": (
        charge_refunded("evt_i1", "ch_lone", None, T),
        "charge.refunded: charge ch_lone belongs to no payment intent",
    ),
    "another charge event": (
        stripe_event(
            "evt_i2", "ch_1", "succeeded", created=T, type="charge.succeeded", payment_intent="pi_1"
        ),
        "charge.succeeded: the status of payment pi_1 follows its payment_intent events",
    ),
    "a refund object": (
        stripe_event(
            "evt_i3",
            "re_1",
            "succeeded",
            created=T,
            type="refund.created",
            object="refund",
            charge="ch_1",
            payment_intent="pi_1",
        ),
        "refund.created: a refund's own status; the payment's follows charge.refunded",
    ),
    "a refund's update, under charge.*": (
        stripe_event("evt_i4", "re_1", "succeeded", created=T, type="charge.refund.updated"),
        "charge.refund.updated: a refund's own status; the payment's follows charge.refunded",
    ),
    "an event type not handled, its object with no status": (
        orjson.dumps(
            {
                "id": "evt_i5",
                "type": "customer.created",
                "created": T,
                "data": {"object": {"id": "cus_1", "object": "customer"}},
            }
        ),
        "event type customer.created is not handled",
    ),
}


async def test_deliveries_about_no_payment_are_answered_200_with_the_reason(
    served: tuple[TestServer, str], db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    _, url = served
    caplog.set_level(logging.INFO, logger="tiffin_rt.transports.payment_webhook")
    events_before = await _logged(db)
    for what, (body, reason) in IGNORED.items():
        status, answer = await post_webhook(url, body)
        assert (status, answer["outcome"], answer.get("reason")) == (200, "ignored", reason), what
        assert reason in caplog.text, what
        status, answer = await post_webhook(url, body)  # the provider's retry
        assert (status, answer["outcome"]) == (200, "duplicate"), what
    assert await _status(db) == "pending"
    assert await _logged(db) == events_before
    outcomes = await db.fetch("SELECT outcome, status FROM tiffin_rt.payment_webhooks")
    assert [tuple(r) for r in outcomes] == [("ignored", None)] * len(IGNORED)


async def test_a_refund_of_an_unknown_payment_intent_answers_404_until_it_exists(
    served: tuple[TestServer, str], db: asyncpg.Connection
) -> None:
    _, url = served
    body = charge_refunded("evt_r", "ch_9", "pi_9", T)
    status, answer = await post_webhook(url, body)
    assert (status, answer["error"]["code"]) == (404, "not_found")
    assert await db.fetchval("SELECT count(*) FROM tiffin_rt.payment_webhooks") == 0
    await add_payment(db, 1, Decimal("3.00"), "EUR", status="succeeded", reference="pi_9")
    status, answer = await post_webhook(url, body)
    assert (status, answer["outcome"]) == (200, "changed")
    assert await _status(db, "pi_9") == "refunded"
