"""The trigger SQL for the configured orders table, built with quoted identifiers."""

from __future__ import annotations

from tiffin_rt.config import OrdersSettings


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qualified_table(orders: OrdersSettings) -> str:
    return f"{quote_ident(orders.schema_name)}.{quote_ident(orders.table_name)}"


def trigger_function_sql(orders: OrdersSettings) -> str:
    """One order_event() for the configured table: append_event logs the change and NOTIFYs
    the event itself when it fits in a payload, else its id (see db/wakeups.py)."""
    col_id = "NEW." + quote_ident(orders.id_column)
    col_status = "NEW." + quote_ident(orders.status_column)
    old_status = "OLD." + quote_ident(orders.status_column)
    col_customer = "NEW." + quote_ident(orders.customer_column)
    col_vendor = "NEW." + quote_ident(orders.vendor_column)
    col_rider = "NEW." + quote_ident(orders.rider_column)
    return f"""
CREATE OR REPLACE FUNCTION tiffin_rt.order_event() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    order_id    text := {col_id}::text;
    customer_id text := {col_customer}::text;
    vendor_id   text := {col_vendor}::text;
    rider_id    text := {col_rider}::text;
    previous    text := NULL;
    rooms       text[] := ARRAY['order-' || {col_id}::text];
BEGIN
    IF TG_OP = 'UPDATE' THEN
        previous := {old_status}::text;
    END IF;
    IF customer_id IS NOT NULL THEN rooms := rooms || ('user-' || customer_id); END IF;
    IF rider_id IS NOT NULL THEN rooms := rooms || ('user-' || rider_id); END IF;
    IF vendor_id IS NOT NULL THEN rooms := rooms || ('vendor-' || vendor_id); END IF;
    PERFORM tiffin_rt.append_event(
        'order_status', rooms,
        jsonb_build_object(
            'orderId', order_id, 'status', {col_status}::text, 'previousStatus', previous,
            'customerId', customer_id, 'vendorId', vendor_id, 'riderId', rider_id),
        order_id, customer_id);
    RETURN NULL;
END;
$fn$;
"""


def parties_function_sql(orders: OrdersSettings) -> str:
    """order_parties_event(): an order's customer, vendor or rider changed, its status did not.

    Logged as kind 'order_parties' so room membership follows the change; it is not an
    order status update and no transport sends it to clients.
    """
    q = quote_ident
    return f"""
CREATE OR REPLACE FUNCTION tiffin_rt.order_parties_event() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM tiffin_rt.append_event(
        'order_parties', ARRAY['order-' || NEW.{q(orders.id_column)}::text],
        jsonb_build_object(
            'orderId', NEW.{q(orders.id_column)}::text,
            'status', NEW.{q(orders.status_column)}::text,
            'customerId', NEW.{q(orders.customer_column)}::text,
            'vendorId', NEW.{q(orders.vendor_column)}::text,
            'riderId', NEW.{q(orders.rider_column)}::text),
        NEW.{q(orders.id_column)}::text, NEW.{q(orders.customer_column)}::text);
    RETURN NULL;
END;
$fn$;
"""


TRIGGER_NAMES = ("tiffin_rt_order_insert", "tiffin_rt_order_status", "tiffin_rt_order_parties")


def install_triggers_sql(orders: OrdersSettings) -> list[str]:
    table = qualified_table(orders)
    status = quote_ident(orders.status_column)
    parties = [
        quote_ident(c) for c in (orders.customer_column, orders.vendor_column, orders.rider_column)
    ]
    parties_changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in parties)
    return [
        trigger_function_sql(orders),
        parties_function_sql(orders),
        *(f"DROP TRIGGER IF EXISTS {name} ON {table}" for name in TRIGGER_NAMES),
        f"CREATE TRIGGER tiffin_rt_order_insert AFTER INSERT ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION tiffin_rt.order_event()",
        f"CREATE TRIGGER tiffin_rt_order_status AFTER UPDATE OF {status} ON {table} "
        f"FOR EACH ROW WHEN (OLD.{status} IS DISTINCT FROM NEW.{status}) "
        "EXECUTE FUNCTION tiffin_rt.order_event()",
        f"CREATE TRIGGER tiffin_rt_order_parties AFTER UPDATE OF {', '.join(parties)} ON {table} "
        f"FOR EACH ROW WHEN (OLD.{status} IS NOT DISTINCT FROM NEW.{status} "
        f"AND ({parties_changed})) EXECUTE FUNCTION tiffin_rt.order_parties_event()",
    ]


def demo_table_sql(orders: OrdersSettings) -> list[str]:
    """An example orders table with a few rows, for `make run` on an empty database."""
    table = qualified_table(orders)
    q = quote_ident
    return [
        f"CREATE SCHEMA IF NOT EXISTS {q(orders.schema_name)}",
        f"""CREATE TABLE {table} (
            {q(orders.id_column)} bigserial PRIMARY KEY,
            {q(orders.customer_column)} text NOT NULL,
            {q(orders.vendor_column)} text,
            {q(orders.rider_column)} text,
            {q(orders.status_column)} text NOT NULL DEFAULT 'pending',
            item text NOT NULL DEFAULT '',
            total_cents integer NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL DEFAULT now()
        )""",
        f"""INSERT INTO {table}
            ({q(orders.customer_column)}, {q(orders.vendor_column)}, {q(orders.rider_column)},
             {q(orders.status_column)}, item, total_cents)
        VALUES ('alice', 'spice-garden', 'rita', 'pending', 'Paneer tikka thali', 1450),
               ('alice', 'spice-garden', NULL, 'confirmed', 'Masala dosa', 890),
               ('bob', 'green-bowl', 'ravi', 'preparing', 'Quinoa salad', 1120),
               ('bob', 'spice-garden', NULL, 'pending', 'Dal makhani', 990)""",
        # Where each order goes, for the rider's ETA (tracking.destination_*_column).
        f"ALTER TABLE {table} ADD COLUMN delivery_lat double precision,"
        " ADD COLUMN delivery_lng double precision",
        f"UPDATE {table} SET delivery_lat = 12.9352, delivery_lng = 77.6245"
        f" WHERE {q(orders.customer_column)} = 'alice'",
        f"UPDATE {table} SET delivery_lat = 12.9784, delivery_lng = 77.6408"
        f" WHERE {q(orders.customer_column)} = 'bob'",
    ]
