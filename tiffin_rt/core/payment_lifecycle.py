"""The contract's payment statuses: Stripe's words translated into them, and their place in a
payment's life, which orders two provider events of one payment made in the same second."""

from __future__ import annotations

# A PaymentIntent's `status` in the contract's words; any other value passes through as it is
# (a provider already speaking the contract: authorized, captured, refunded, failed).
STRIPE_INTENT_STATUSES = {
    "requires_payment_method": "pending",
    "requires_confirmation": "pending",
    "requires_action": "pending",
    "requires_source": "pending",  # the same three, under API versions before 2019-02-11
    "requires_source_action": "pending",
    "processing": "processing",
    "requires_capture": "authorized",
    "succeeded": "succeeded",
    # Canceled stays itself: no money was taken and any hold is released; "failed" would tell
    # the customer their card was refused, "refunded" that money came back.
    "canceled": "canceled",
}

# Later in a payment's life ranks higher. A failed attempt can be followed by another attempt
# that authorizes or succeeds (Stripe keeps one PaymentIntent for all attempts), so failed
# ranks below authorized; in one second a failure beats the pending/processing it ends.
# Canceled ends an intent that never succeeded: above everything but a success or refund.
STATUS_RANK = {
    "pending": 10,
    "processing": 20,
    "failed": 30,
    "authorized": 40,
    "canceled": 50,
    "succeeded": 60,
    "captured": 60,
    "refunded": 70,
}
UNKNOWN_RANK = 0  # a passed-through status: ordered by time only, a tie goes to the known one


def contract_status(provider_status: str) -> str:
    return STRIPE_INTENT_STATUSES.get(provider_status, provider_status)


def status_rank(status: str) -> int:
    return STATUS_RANK.get(status, UNKNOWN_RANK)
