"""POST /api/webhooks/payments: a payment provider's signed status deliveries.

Checked in this order, and nothing is written unless all pass: size (413), signature (401),
timestamp within `payments.webhook_tolerance` (400 `stale_timestamp`), body (400). Anyone may
POST here: those refusals are client faults (logs.client_fault), counted and written within
the process's budget, so a flood of forged or replayed deliveries neither floods the log nor
pushes the server's own lines out of the admin view. Then the
provider's event id and the payment's new status are written in one transaction; a replayed
event id writes nothing and answers 200 with `"duplicate": true`. Every other answer a
provider retries, so what this server will never apply (an older event than the one applied,
an event about no payment, a type not handled) is recorded and answered 200 with its reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from tiffin_rt.background import task_context
from tiffin_rt.core.errors import ClientError
from tiffin_rt.core.webhook_delivery import parse_delivery
from tiffin_rt.core.webhook_signature import BadSignature, StaleTimestamp, verify
from tiffin_rt.db.errors import DB_ERRORS
from tiffin_rt.db.payment_webhooks import Outcome, prune_deliveries, record_delivery
from tiffin_rt.keys import POOL, SETTINGS
from tiffin_rt.logs import client_fault
from tiffin_rt.transports.bodies import read_bounded
from tiffin_rt.transports.http_auth import answers_refusals, json_error

log = logging.getLogger(__name__)

ROUTE = "/api/webhooks/payments"
PRUNE_INTERVAL = 3600.0


async def _body(request: web.Request, limit: int) -> bytes:
    """The raw body (what was signed), refused past `limit` bytes before or while reading."""
    body = await read_bounded(request, limit)
    if body is None:
        raise ClientError("too_large", f"the body is larger than {limit} bytes")
    return body


def _happened_before(created: int, signed_at: int, tolerance: float) -> None:
    """An event is signed after it happened (give or take the clocks' tolerance). A `created`
    later than that, applied as the newest, would have every real delivery of its payment
    answered `superseded` (acknowledged, never applied) until the retention forgets it."""
    ahead = created - signed_at
    if ahead > tolerance:
        raise ClientError(
            "bad_request",
            f"created: {ahead} s after the delivery was signed (t={signed_at});"
            f" at most {tolerance:g} s are accepted",
        )


@answers_refusals(unavailable="the payment could not be recorded; retry later")
async def payment_webhook(request: web.Request) -> web.StreamResponse:
    payments = request.app[SETTINGS].payments
    remote = request.remote or "-"
    try:
        body = await _body(request, payments.webhook_max_bytes)
    except ClientError:
        client_fault(
            log,
            "payment webhook from %s refused: body over %d bytes",
            remote,
            payments.webhook_max_bytes,
        )
        raise
    try:
        signed_at = verify(
            request.headers.get(payments.webhook_signature_header),
            body,
            payments.webhook_secret.get_secret_value().encode(),
            tolerance=payments.webhook_tolerance,
            now=time.time(),
        )
    except BadSignature as exc:
        client_fault(log, "payment webhook from %s refused: %s", remote, exc)
        return json_error(401, "unauthorized", f"bad signature: {exc}")
    except StaleTimestamp as exc:
        client_fault(log, "payment webhook from %s refused: %s", remote, exc)
        return json_error(
            400,
            "stale_timestamp",
            f"{exc}; at most {payments.webhook_tolerance:g} s are accepted",
        )
    try:
        delivery = parse_delivery(body)
        _happened_before(delivery.created, signed_at, payments.webhook_tolerance)
    except ClientError as exc:
        client_fault(log, "payment webhook from %s refused: %s", remote, exc.message)
        raise
    try:
        recorded = await record_delivery(request.app[POOL], payments, delivery)
    except ClientError:
        log.warning(
            "payment webhook event %.80r: no payment with reference %.80r; not recorded",
            delivery.event_id,
            delivery.reference,
        )
        raise
    outcome = recorded.outcome
    answer: dict[str, object] = {
        "received": True,
        "eventId": delivery.event_id,
        "duplicate": outcome is Outcome.DUPLICATE,
        "changed": outcome is Outcome.CHANGED,
        "outcome": outcome.value,
        "status": delivery.status,
    }
    if outcome is Outcome.IGNORED:
        answer["reason"] = delivery.ignored
        log.info(
            "payment webhook event %.80r (%.80r) ignored: %s",
            delivery.event_id,
            delivery.event_type,
            delivery.ignored,
        )
    elif recorded.newer is not None:
        newer_id, newer_created, newer_status = recorded.newer
        answer["reason"] = f"event {newer_id} (created {newer_created}, {newer_status}) is newer"
        log.info(
            "payment webhook event %.80r (created %d): payment %.80r -> %.40r superseded by"
            " event %.80r (created %d, %.40r); not applied",
            delivery.event_id,
            delivery.created,
            delivery.reference,
            delivery.status,
            newer_id,
            newer_created,
            newer_status,
        )
    else:
        log.info(
            "payment webhook event %.80r: payment %.80r -> %.40r (%s)",
            delivery.event_id,
            delivery.reference,
            delivery.status,
            outcome.value,
        )
    return web.json_response(answer)


def _prune(app: web.Application) -> Coroutine[Any, Any, None]:
    async def forever() -> None:
        days = app[SETTINGS].payments.webhook_retention_days
        while True:
            try:
                removed = await prune_deliveries(app[POOL], days)
                if removed:
                    log.info(
                        "forgot %d payment webhook event id(s) older than %g days", removed, days
                    )
            except DB_ERRORS as exc:
                log.warning("pruning payment webhook ids failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(PRUNE_INTERVAL)

    return forever()


def setup_payment_webhook(app: web.Application) -> None:
    """The route, when payments.table and payments.webhook_secret are both set."""
    payments = app[SETTINGS].payments
    if not (payments.enabled and payments.webhook_secret.get_secret_value()):
        return
    app.router.add_post(ROUTE, payment_webhook)
    app.cleanup_ctx.append(task_context("tiffin_rt-payment-webhook-pruner", _prune))
