"""The backend's payments table as the payment tests use it, and signed webhook deliveries."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import asyncpg
import orjson

from tiffin_rt.core.webhook_signature import sign

WEBHOOK_SECRET = "whsec_test_0123456789abcdef0123456789"
WEBHOOK = "/api/webhooks/payments"


def payments_section(**overrides: Any) -> dict[str, Any]:
    return {"table": "public.payments", "webhook_secret": WEBHOOK_SECRET} | overrides


async def create_payments_table(
    db: asyncpg.Connection, *, amount_type: str = "numeric(14, 2)", order_id_type: str = "bigint"
) -> None:
    """The backend's existing table, before the server installs its trigger on it."""
    await db.execute(
        "CREATE TABLE public.payments (id bigserial PRIMARY KEY,"
        f" order_id {order_id_type}, status text, amount {amount_type}, currency text,"
        " provider_reference text UNIQUE)"
    )


async def add_payment(
    db: asyncpg.Connection,
    order_id: object,
    amount: object,
    currency: str | None = "EUR",
    *,
    status: str = "pending",
    reference: str | None = None,
) -> int:
    return int(
        await db.fetchval(
            "INSERT INTO payments (order_id, status, amount, currency, provider_reference)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING id",
            order_id,
            status,
            amount,
            currency,
            reference,
        )
    )


def stripe_event(
    event_id: str,
    reference: str,
    status: str,
    *,
    created: int | None = None,
    type: str | None = None,
    **fields: Any,
) -> bytes:
    """An event envelope whose object is `reference` with `status` (and `fields`); without
    `type` the bare envelope, its object read as the payment itself."""
    doc: dict[str, Any] = {
        "id": event_id,
        "object": "event",
        "created": int(time.time()) if created is None else created,
        "data": {"object": {"id": reference, "status": status} | fields},
    }
    if type is not None:
        doc["type"] = type
    return orjson.dumps(doc)


def intent_event(event_id: str, intent: str, status: str, created: int, type: str = "") -> bytes:
    """What Stripe sends about a PaymentIntent: `payment_intent.<status>` unless `type`."""
    return stripe_event(
        event_id,
        intent,
        status,
        created=created,
        type=type or f"payment_intent.{status}",
        object="payment_intent",
        amount=1450,
        currency="eur",
    )


def charge_refunded(
    event_id: str, charge: str, intent: str | None, created: int, *, refunded: int = 1450
) -> bytes:
    """Stripe's charge.refunded: the Charge stays `succeeded`; `refunded` is true once all of
    it is refunded, `amount_refunded` says how much is."""
    return stripe_event(
        event_id,
        charge,
        "succeeded",
        created=created,
        type="charge.refunded",
        object="charge",
        amount=1450,
        amount_refunded=refunded,
        refunded=refunded == 1450,
        payment_intent=intent,
        currency="eur",
    )


async def post_webhook(
    url: str,
    body: bytes,
    *,
    secret: str = WEBHOOK_SECRET,
    at: float | None = None,
    header: str | None = None,
) -> tuple[int, Any]:
    """POST `body` signed as a provider signs it (or with `header` as it is)."""
    signature = (
        header if header is not None else sign(body, secret.encode(), int(at or time.time()))
    )
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url + WEBHOOK,
            data=body,
            headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
        ) as response,
    ):
        return response.status, await response.json()
