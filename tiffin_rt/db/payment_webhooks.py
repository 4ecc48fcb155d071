"""A provider's webhook delivery, written in one transaction: its event id is recorded and
the payment's status set (the payment trigger logs the change), or nothing at all."""

from __future__ import annotations

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
    DUPLICATE = "duplicate"  # this event id was taken before: nothing written


async def record_delivery(
    pool: asyncpg.Pool, payments: PaymentsSettings, delivery: WebhookDelivery
) -> Outcome:
    """ClientError('not_found') when no payment has the reference (nothing is recorded, so
    the provider's retry is taken once the backend has written the payment)."""
    q = quote_ident
    status, reference = q(payments.status_column), q(payments.reference_column)
    async with pool.acquire() as conn, conn.transaction():
        # A concurrent delivery of the same id waits here for this one, then finds it taken.
        taken = await conn.fetchval(
            "INSERT INTO tiffin_rt.payment_webhooks (event_id, reference, status)"
            " VALUES ($1, $2, $3) ON CONFLICT (event_id) DO NOTHING RETURNING true",
            delivery.event_id,
            delivery.reference,
            delivery.status,
        )
        if not taken:
            return Outcome.DUPLICATE
        current = await conn.fetch(
            f"SELECT {status}::text AS status FROM {payments_table(payments)}"
            f" WHERE {reference}::text = $1 FOR UPDATE",
            delivery.reference,
        )
        if not current:
            raise ClientError("not_found", "no payment has this provider reference")
        if all(row["status"] == delivery.status for row in current):
            return Outcome.UNCHANGED
        await conn.execute(
            f"UPDATE {payments_table(payments)} SET {status} = $2"
            f" WHERE {reference}::text = $1 AND {status}::text IS DISTINCT FROM $2::text",
            delivery.reference,
            delivery.status,
        )
        return Outcome.CHANGED


async def prune_deliveries(pool: asyncpg.Pool, retention_days: float) -> int:
    """Forget event ids older than the retention (providers stop retrying after days)."""
    result: str = await pool.execute(
        "DELETE FROM tiffin_rt.payment_webhooks"
        " WHERE created_at < now() - make_interval(secs => $1)",
        retention_days * 86400.0,
    )
    return int(result.split()[-1])
