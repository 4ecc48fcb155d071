"""The trigger SQL for the configured payments table: each status change becomes a
`payment_status` event for the order's room and its customer, and an inbox notification."""

from __future__ import annotations

from tiffin_rt.config import OrdersSettings, PaymentsSettings
from tiffin_rt.db.triggers import qualified_table, quote_ident

PAYMENT_TRIGGER_NAMES = ("tiffin_rt_payment_insert", "tiffin_rt_payment_status")

# The inbox text of each status the issue names; any other status is shown as it is.
_STATUS_WORDS = {
    "pending": "pending",
    "authorized": "authorized",
    "succeeded": "received",
    "captured": "received",
    "failed": "failed",
    "refunded": "refunded",
}


def payments_table(payments: PaymentsSettings) -> str:
    return f"{quote_ident(payments.schema_name)}.{quote_ident(payments.table_name)}"


def _order_lookup(payments: PaymentsSettings, orders: OrdersSettings, cast_to: str | None) -> str:
    """Find the order (its id as the orders table prints it) and its customer; `cast_to`: the
    orders id type when the payments column has another type (a value that does not convert
    is noted as an issue instead of failing the backend's transaction)."""
    q = quote_ident
    key = f"NEW.{q(payments.order_id_column)}"
    select = (
        f"SELECT o.{q(orders.id_column)}::text, o.{q(orders.customer_column)}::text"
        f" INTO order_key, customer FROM {qualified_table(orders)} o"
        f" WHERE o.{q(orders.id_column)} = "
    )
    if cast_to is None:
        return f"{select}{key};"
    return f"""BEGIN
            {select}{key}::text::{cast_to};
        EXCEPTION WHEN data_exception THEN
            issues := issues
                || format('order id %s is not an id of {orders.table}', left(raw_order, 40));
        END;"""


def payment_function_sql(
    payments: PaymentsSettings, orders: OrdersSettings, cast_to: str | None = None
) -> str:
    q = quote_ident
    new = {
        k: f"NEW.{q(getattr(payments, k))}"
        for k in (
            "id_column",
            "order_id_column",
            "status_column",
            "amount_column",
            "currency_column",
            "reference_column",
        )
    }
    words = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in _STATUS_WORDS.items())
    minor = "true" if payments.amount_in_minor_units else "false"
    return f"""
CREATE OR REPLACE FUNCTION tiffin_rt.payment_event() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    payment_id  text := {new["id_column"]}::text;
    raw_order   text := {new["order_id_column"]}::text;
    status      text := {new["status_column"]}::text;
    reference   text := {new["reference_column"]}::text;
    raw_amount  text := {new["amount_column"]}::text;
    currency    text := upper(btrim({new["currency_column"]}::text));
    previous    text := NULL;
    order_key   text;
    customer    text;
    amount      numeric;
    digits      integer;
    known       boolean;
    money       text;
    what        text;
    title       text;
    issues      text[] := '{{}}';
    rooms       text[] := '{{}}';
BEGIN
    IF TG_OP = 'UPDATE' THEN
        previous := OLD.{q(payments.status_column)}::text;
    END IF;
    IF raw_order IS NULL THEN
        issues := issues || 'no order id'::text;
    ELSE
        {_order_lookup(payments, orders, cast_to)}
        IF order_key IS NULL AND cardinality(issues) = 0 THEN
            issues := issues || format('no order %s in {orders.table}', left(raw_order, 40));
        END IF;
    END IF;
    SELECT c.exponent, true INTO digits, known
    FROM tiffin_rt.currency_formats c WHERE c.code = currency AND currency <> '';
    IF NOT coalesce(known, false) THEN
        SELECT c.exponent INTO digits FROM tiffin_rt.currency_formats c WHERE c.code = '';
        issues := issues || CASE
            WHEN currency IS NULL OR currency = '' THEN 'no currency'
            ELSE format('currency %s is not an ISO 4217 code', left(currency, 40)) END;
    END IF;
    IF raw_amount IS NULL THEN
        issues := issues || 'no amount'::text;
    ELSE
        BEGIN
            amount := raw_amount::numeric;
        EXCEPTION WHEN data_exception THEN
            issues := issues || format('amount %s is not a number', left(raw_amount, 40));
        END;
        IF amount = 'NaN'::numeric OR amount IN ('Infinity'::numeric, '-Infinity'::numeric) THEN
            issues := issues || format('amount %s is not a finite number', raw_amount);
            amount := NULL;
        ELSIF abs(amount) >= 1e40 OR scale(amount) > 20 THEN
            -- No payment has 40 digits; formatting one of 100000 would stall the backend's own
            -- transaction for seconds (or fail it) and write a 100 KB event.
            issues := issues || format('amount %s is out of range', left(raw_amount, 40));
            amount := NULL;
        END IF;
    END IF;
    IF amount IS NOT NULL THEN
        IF {minor} THEN  -- payments.amount_in_minor_units: exact, the point moved left
            amount := round(amount / power(10::numeric, digits),
                            digits + greatest(scale(amount), 0));
        END IF;
        IF scale(amount) < digits THEN
            amount := round(amount, digits);  -- 14.5 EUR is written 14.50 (exact: zeros added)
        END IF;
    END IF;
    IF order_key IS NOT NULL THEN
        rooms := rooms || ('order-' || order_key);
    END IF;
    IF customer IS NOT NULL AND customer <> '' THEN
        rooms := rooms || ('user-' || customer);
    ELSIF order_key IS NOT NULL THEN
        issues := issues || format('order %s has no customer', order_key);
    END IF;
    PERFORM tiffin_rt.append_event(
        'payment_status', rooms,
        jsonb_build_object(
            'paymentId', payment_id, 'orderId', coalesce(order_key, raw_order),
            'status', status, 'previousStatus', previous,
            'amount', amount::text, 'currency', currency,
            'reference', reference, 'customerId', customer, 'issues', to_jsonb(issues)),
        order_key, customer);
    IF customer IS NOT NULL AND customer <> '' THEN
        money := tiffin_rt.format_money(amount, currency);
        what := CASE lower(status) {words} ELSE NULL END;
        title := 'Payment' || coalesce(' of ' || money, '')
            || coalesce(' ' || what, ': ' || status, ' updated');
        PERFORM tiffin_rt.notify_user(
            customer, 'payment', title,
            CASE WHEN order_key IS NULL THEN '' ELSE 'Order ' || order_key END,
            jsonb_build_object(
                'paymentId', payment_id, 'orderId', order_key, 'status', status,
                'previousStatus', previous, 'amount', amount::text, 'currency', currency));
    END IF;
    RETURN NULL;
END;
$fn$;
"""


def install_payment_triggers_sql(
    payments: PaymentsSettings, orders: OrdersSettings, cast_to: str | None = None
) -> list[str]:
    table = payments_table(payments)
    status = quote_ident(payments.status_column)
    return [
        payment_function_sql(payments, orders, cast_to),
        *(f"DROP TRIGGER IF EXISTS {name} ON {table}" for name in PAYMENT_TRIGGER_NAMES),
        f"CREATE TRIGGER tiffin_rt_payment_insert AFTER INSERT ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION tiffin_rt.payment_event()",
        f"CREATE TRIGGER tiffin_rt_payment_status AFTER UPDATE OF {status} ON {table} "
        f"FOR EACH ROW WHEN (OLD.{status} IS DISTINCT FROM NEW.{status}) "
        "EXECUTE FUNCTION tiffin_rt.payment_event()",
    ]


def demo_payments_sql(
    payments: PaymentsSettings, orders: OrdersSettings, order_id_type: str = "bigint"
) -> list[str]:
    """An example payments table for the orders there are, for `make run` on an empty database."""
    q = quote_ident
    table = payments_table(payments)
    amount_type = "bigint" if payments.amount_in_minor_units else "numeric(14, 2)"
    scale = 100 if payments.amount_in_minor_units else 1
    return [
        f"CREATE SCHEMA IF NOT EXISTS {q(payments.schema_name)}",
        f"""CREATE TABLE {table} (
            {q(payments.id_column)} bigserial PRIMARY KEY,
            {q(payments.order_id_column)} {order_id_type} NOT NULL,
            {q(payments.status_column)} text NOT NULL DEFAULT 'pending',
            {q(payments.amount_column)} {amount_type} NOT NULL,
            {q(payments.currency_column)} text NOT NULL DEFAULT 'EUR',
            {q(payments.reference_column)} text UNIQUE
        )""",
        f"""INSERT INTO {table} ({q(payments.order_id_column)}, {q(payments.status_column)},
            {q(payments.amount_column)}, {q(payments.reference_column)})
        SELECT o.{q(orders.id_column)}, 'pending', 14.50 * {scale},
               'pi_demo_' || o.{q(orders.id_column)}
        FROM {qualified_table(orders)} o ORDER BY o.{q(orders.id_column)}""",
    ]
