"""What a payment provider's webhook body must say: its event id, the payment's reference at
the provider, and the new status, in Stripe's envelope
`{"id": "evt_...", "data": {"object": {"id": "pi_...", "status": "succeeded"}}}`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from tiffin_rt.core.errors import ClientError

MAX_ID_LENGTH = 255
MAX_STATUS_LENGTH = 64


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    event_id: str
    reference: str
    status: str


def _text(value: object, where: str, longest: int) -> str:
    if not isinstance(value, str) or not value:
        raise ClientError("bad_request", f"{where}: a non-empty string is required")
    if len(value) > longest:
        raise ClientError("bad_request", f"{where}: at most {longest} characters")
    if not value.isprintable():  # U+0000 and other controls: PostgreSQL text cannot hold some
        raise ClientError("bad_request", f"{where}: control characters are not allowed")
    return value


def parse_delivery(body: bytes) -> WebhookDelivery:
    """The delivery, or ClientError('bad_request') saying which field is wrong."""
    try:
        doc: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ClientError("bad_request", "the body is not JSON") from None
    if not isinstance(doc, dict):
        raise ClientError("bad_request", "the body must be a JSON object")
    data = doc.get("data")
    payment = data.get("object") if isinstance(data, dict) else None
    if not isinstance(payment, dict):
        raise ClientError("bad_request", "data.object: an object is required")
    return WebhookDelivery(
        event_id=_text(doc.get("id"), "id", MAX_ID_LENGTH),
        reference=_text(payment.get("id"), "data.object.id", MAX_ID_LENGTH),
        status=_text(payment.get("status"), "data.object.status", MAX_STATUS_LENGTH),
    )
