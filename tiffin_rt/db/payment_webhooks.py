"""A provider's webhook delivery, written in one transaction: its event id is recorded and,
when it is newer than what was applied to its payment, the payment's status set (the payment
trigger logs the change), or nothing at all."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import asyncpg

from tiffin_rt.config import PaymentsSettings
from tiffin_rt.core.errors import ClientError
from tiffin_rt.core.webhook_delivery import WebhookDelivery
from tiffin_rt.db.payment_triggers import payments_table
from tiffin_rt.db.triggers import quote_ident


class Outcome(Enum):
    CHANGED = "changed"
    UNCHANGED = "unchanged"  # the payment already had this status: nothing logged
    SUPERSEDED = "superseded"  # a newer event of this payment was applied: recorded only
    IGNORED = "ignored"  # about no payment, or an event type not handled: recorded only
    DUPLICATE = "duplicate"  # this event id was taken before: nothing written


@dataclass(frozen=True, slots=True)
class Recorded:
    outcome: Outcome
    # With SUPERSEDED: the event applied instead (its id, time and status).
    newer: tuple[str, int, str] | None = None


# Applied only when (created, rank) is past what this payment last had applied; the row of a
# payment is locked (ON CONFLICT locks it whether or not it updates), so deliveries of one
# payment take turns and the newest wins whatever order they commit in.
_APPLY = """
INSERT INTO tiffin_rt.payment_webhook_applied AS a
    (reference, created, status_rank, status, event_id)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (reference) DO UPDATE
    SET created = EXCLUDED.created, status_rank = EXCLUDED.status_rank,
        status = EXCLUDED.status, event_id = EXCLUDED.event_id, applied_at = now()
    WHERE (a.created, a.status_rank) < (EXCLUDED.created, EXCLUDED.status_rank)
RETURNING true
"""


async def record_delivery(
    pool: asyncpg.Pool, payments: PaymentsSettings, delivery: WebhookDelivery
) -> Recorded:
    """ClientError('not_found') when no payment has the reference (nothing is recorded, so
    the provider's retry is taken once the backend has written the payment)."""
    q = quote_ident
    status, reference = q(payments.status_column), q(payments.reference_column)
    async with pool.acquire() as conn, conn.transaction():
        # A concurrent delivery of the same id waits here for this one, then finds it taken.
        taken = await conn.fetchval(
            "INSERT INTO tiffin_rt.payment_webhooks"
            " (event_id, reference, status, event_type, event_created, outcome)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING RETURNING true",
            delivery.event_id,
            delivery.reference,
            delivery.status,
            delivery.event_type,
            delivery.created,
            Outcome.IGNORED.value if delivery.status is None else None,
        )
        if not taken:
            return Recorded(Outcome.DUPLICATE)
        if delivery.status is None:
            return Recorded(Outcome.IGNORED)
        current = await conn.fetch(
            f"SELECT {status}::text AS status FROM {payments_table(payments)}"
            f" WHERE {reference}::text = $1 FOR UPDATE",
            delivery.reference,
        )
        if not current:
            raise ClientError("not_found", "no payment has this provider reference")
        newest = await conn.fetchval(
            _APPLY,
            delivery.reference,
            delivery.created,
            delivery.rank,
            delivery.status,
            delivery.event_id,
        )
        if not newest:
            applied = await conn.fetchrow(
                "SELECT event_id, created, status FROM tiffin_rt.payment_webhook_applied"
                " WHERE reference = $1",
                delivery.reference,
            )
            assert applied is not None  # locked by _APPLY until this transaction ends
            same = (applied["created"], applied["status"]) == (delivery.created, delivery.status)
            recorded = Recorded(
                Outcome.UNCHANGED if same else Outcome.SUPERSEDED,
                None if same else (applied["event_id"], applied["created"], applied["status"]),
            )
        elif all(row["status"] == delivery.status for row in current):
            recorded = Recorded(Outcome.UNCHANGED)
        else:
            await conn.execute(
                f"UPDATE {payments_table(payments)} SET {status} = $2"
                f" WHERE {reference}::text = $1 AND {status}::text IS DISTINCT FROM $2::text",
                delivery.reference,
                delivery.status,
            )
            recorded = Recorded(Outcome.CHANGED)
        await conn.execute(
            "UPDATE tiffin_rt.payment_webhooks SET outcome = $2 WHERE event_id = $1",
            delivery.event_id,
            recorded.outcome.value,
        )
        return recorded


async def prune_deliveries(pool: asyncpg.Pool, retention_days: float) -> int:
    """Forget event ids, and what was applied to each payment, older than the retention
    (providers stop retrying after days)."""
    async with pool.acquire() as conn, conn.transaction():
        result: str = await conn.execute(
            "DELETE FROM tiffin_rt.payment_webhooks"
            " WHERE created_at < now() - make_interval(secs => $1)",
            retention_days * 86400.0,
        )
        await conn.execute(
            "DELETE FROM tiffin_rt.payment_webhook_applied"
            " WHERE applied_at < now() - make_interval(secs => $1)",
            retention_days * 86400.0,
        )
    return int(result.split()[-1])
