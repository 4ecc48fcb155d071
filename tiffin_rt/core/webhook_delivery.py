"""What a payment provider's webhook body says, in Stripe's event envelope
`{"id": "evt_...", "type": "payment_intent.succeeded", "created": 1764617301,
  "data": {"object": {"id": "pi_...", "object": "payment_intent", "status": "succeeded"}}}`:
which payment it is about (resolving a charge to its payment intent), the contract status it
moves that payment to, or why it changes no payment at all."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from tiffin_rt.core.errors import ClientError
from tiffin_rt.core.payment_lifecycle import contract_status, status_rank

MAX_ID_LENGTH = 255
MAX_STATUS_LENGTH = 64
# `created` is unix seconds; past this it is no time a provider sends (and no bigint).
MAX_CREATED = 10**11

PAYMENT_FAILED = "payment_intent.payment_failed"
CHARGE_REFUNDED = "charge.refunded"

# An object's kind when it does not say (`"object"`), by its id's prefix.
_KIND_BY_PREFIX = {"pi_": "payment_intent", "ch_": "charge", "py_": "charge", "re_": "refund"}


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    event_id: str
    event_type: str | None  # None: a bare envelope, its object read as the payment itself
    created: int  # the event's time at the provider (unix seconds): what orders deliveries
    object_id: str  # data.object.id as sent (pi_..., ch_..., re_...)
    reference: str  # the payment it is about, as payments.reference_column holds it
    status: str | None  # the contract status it moves the payment to; None when ignored
    ignored: str | None = None  # why it changes no payment (answered 200, logged)

    @property
    def rank(self) -> int:
        return status_rank(self.status) if self.status is not None else 0


def _text(value: object, where: str, longest: int) -> str:
    if not isinstance(value, str) or not value:
        raise ClientError("bad_request", f"{where}: a non-empty string is required")
    if len(value) > longest:
        raise ClientError("bad_request", f"{where}: at most {longest} characters")
    if not value.isprintable():  # U+0000 and other controls: PostgreSQL text cannot hold some
        raise ClientError("bad_request", f"{where}: control characters are not allowed")
    return value


def _created(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < MAX_CREATED:
        raise ClientError("bad_request", "created: the event's unix time in whole seconds")
    return value


def _kind(payment: dict[str, Any], object_id: str) -> str | None:
    kind = payment.get("object")
    if isinstance(kind, str):
        return kind
    return next((k for p, k in _KIND_BY_PREFIX.items() if object_id.startswith(p)), None)


def parse_delivery(body: bytes) -> WebhookDelivery:
    """The delivery, or ClientError('bad_request') saying which field is wrong."""
    try:
        doc: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ClientError("bad_request", "the body is not JSON") from None
    if not isinstance(doc, dict):
        raise ClientError("bad_request", "the body must be a JSON object")
    event_id = _text(doc.get("id"), "id", MAX_ID_LENGTH)
    raw_type = doc.get("type")
    event_type = None if raw_type is None else _text(raw_type, "type", MAX_ID_LENGTH)
    created = _created(doc.get("created"))
    data = doc.get("data")
    payment = data.get("object") if isinstance(data, dict) else None
    if not isinstance(payment, dict):
        raise ClientError("bad_request", "data.object: an object is required")
    object_id = _text(payment.get("id"), "data.object.id", MAX_ID_LENGTH)
    kind = _kind(payment, object_id)

    def status() -> str:
        raw = _text(payment.get("status"), "data.object.status", MAX_STATUS_LENGTH)
        return contract_status(raw)

    def taken(reference: str, new_status: str) -> WebhookDelivery:
        return WebhookDelivery(event_id, event_type, created, object_id, reference, new_status)

    def ignored(why: str, reference: str = object_id) -> WebhookDelivery:
        return WebhookDelivery(event_id, event_type, created, object_id, reference, None, why)

    if event_type is None:
        return taken(object_id, status())
    if event_type.startswith("payment_intent."):
        if kind not in ("payment_intent", None):
            return ignored(f"{event_type} about a {kind!r:.40}, not a payment intent")
        # The intent of a failed attempt is back at requires_payment_method: the type says more.
        return taken(object_id, "failed" if event_type == PAYMENT_FAILED else status())
    if kind == "charge" and event_type.startswith("charge."):
        raw_intent = payment.get("payment_intent")
        if isinstance(raw_intent, dict):  # expanded (an API read, not a webhook): its id
            raw_intent = raw_intent.get("id")
        if raw_intent is None:
            return ignored(f"{event_type}: charge {object_id} belongs to no payment intent")
        intent = _text(raw_intent, "data.object.payment_intent", MAX_ID_LENGTH)
        if event_type != CHARGE_REFUNDED:
            return ignored(
                f"{event_type}: the status of payment {intent} follows its payment_intent events",
                intent,
            )
        if payment.get("refunded") is True:
            return taken(intent, "refunded")
        # A partial refund leaves the charge (and payment) succeeded: "refunded" would tell
        # the customer the whole amount came back.
        return ignored(
            f"{event_type}: a partial refund ({payment.get('amount_refunded')!r:.20}"
            f" of {payment.get('amount')!r:.20}); payment {intent} keeps its status",
            intent,
        )
    if kind == "refund":
        return ignored(
            f"{event_type}: a refund's own status; the payment's follows {CHARGE_REFUNDED}"
        )
    return ignored(f"event type {event_type} is not handled")
