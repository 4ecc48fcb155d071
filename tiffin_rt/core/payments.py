"""Payment events: the `paymentStatusUpdate` payload built from a `payment_status` log row."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from tiffin_rt.core.events import Event, iso_utc

log = logging.getLogger(__name__)

PAYMENT_STATUS = "payment_status"


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def payment_status_message(event: Event) -> dict[str, Any]:
    """The one `paymentStatusUpdate` payload, live and replayed, on Socket.IO and SSE.

    `amount` is the exact decimal as a string ("14.50"), never a float; null when the row
    held none (or no number)."""
    cached = event._cache.get(PAYMENT_STATUS)
    if cached is None:
        p = event.payload
        cached = {
            "paymentId": _text(p.get("paymentId")),
            "orderId": _text(p.get("orderId")),
            "status": _text(p.get("status")),
            "previousStatus": _text(p.get("previousStatus")),
            "amount": _text(p.get("amount")),
            "currency": _text(p.get("currency")),
            "timestamp": iso_utc(event.created_at),
            "eventId": event.id or None,
        }
        event._cache[PAYMENT_STATUS] = cached
    return dict(cached)


def payment_issues(event: Event) -> list[str]:
    """What the trigger found odd in the payment row (no order, unknown currency, ...)."""
    issues = event.payload.get("issues")
    return [str(i) for i in issues] if isinstance(issues, list) else []


class PaymentAudit:
    """A router sink that logs each payment event whose row held something odd, once per
    event on each node, naming the payment and what was wrong (never the customer)."""

    def deliver(self, events: Sequence[Event]) -> None:
        for event in events:
            if event.kind != PAYMENT_STATUS:
                continue
            issues = payment_issues(event)
            if not issues:
                continue
            p = event.payload
            rooms = ", ".join(r.split("-", 1)[0] + " room" for r in event.rooms)
            reach = f"sent to its {rooms}" if rooms else "sent to nobody"
            log.warning(
                "payment %.40s (event %d, status %.40r): %s; %s",
                p.get("paymentId"),
                event.id,
                p.get("status"),
                "; ".join(issues),
                reach,
            )
