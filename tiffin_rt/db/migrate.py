"""Versioned, idempotent schema migrations and the order-table triggers."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources

import asyncpg

from tiffin_rt.config import BatchingSettings, OrdersSettings, PaymentsSettings
from tiffin_rt.db.digest_triggers import install_hold_trigger_sql
from tiffin_rt.db.money import install_money_sql
from tiffin_rt.db.payment_triggers import (
    PAYMENT_TRIGGER_NAMES,
    demo_payments_sql,
    install_payment_triggers_sql,
    payments_table,
)
from tiffin_rt.db.triggers import (
    TRIGGER_NAMES,
    demo_table_sql,
    install_triggers_sql,
    qualified_table,
    quote_ident,
)

log = logging.getLogger(__name__)

# Serialises concurrent upgrades from several server processes starting at once.
_ADVISORY_LOCK_KEY = 0x7466_6E72


class SchemaError(Exception):
    """The database is not in a state tiffin_rt can use; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    current_version: int
    latest_version: int
    pending: list[str]
    trigger_tables: list[str]
    event_count: int


def load_migrations() -> list[Migration]:
    folder = resources.files("tiffin_rt.db") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append(Migration(version, entry.name.removesuffix(".sql"), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise SchemaError(f"two migrations share a version number: {versions}")
    return found


async def _applied_versions(conn: asyncpg.Connection) -> set[int]:
    exists = await conn.fetchval("SELECT to_regclass('tiffin_rt.schema_version') IS NOT NULL")
    if not exists:
        return set()
    return {r["version"] for r in await conn.fetch("SELECT version FROM tiffin_rt.schema_version")}


async def _check_orders_table(conn: asyncpg.Connection, orders: OrdersSettings) -> bool:
    """True when the table exists with every configured column; SchemaError on a missing column."""
    regclass = await conn.fetchval(
        "SELECT to_regclass($1)::text",
        f"{quote_ident(orders.schema_name)}.{quote_ident(orders.table_name)}",
    )
    if regclass is None:
        return False
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = $1 AND table_name = $2",
        orders.schema_name,
        orders.table_name,
    )
    present = {r["column_name"] for r in rows}
    for key in ("id_column", "status_column", "customer_column", "vendor_column", "rider_column"):
        column = getattr(orders, key)
        if column not in present:
            raise SchemaError(
                f"orders.{key}: table {orders.table} has no column {column!r} "
                f"(columns: {', '.join(sorted(present))})"
            )
    return True


_PAYMENT_COLUMNS = (
    "id_column",
    "order_id_column",
    "status_column",
    "amount_column",
    "currency_column",
    "reference_column",
)


async def _column_type(conn: asyncpg.Connection, table: str, column: str) -> str | None:
    type_name: str | None = await conn.fetchval(
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
        " WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped",
        table,
        column,
    )
    return type_name


async def _drop_payment_triggers(conn: asyncpg.Connection) -> list[str]:
    """Payment triggers wherever they are (payments.table was emptied or changed)."""
    tables = [
        r["t"]
        for r in await conn.fetch(
            "SELECT DISTINCT tgrelid::regclass::text AS t FROM pg_trigger WHERE tgname = ANY($1)",
            list(PAYMENT_TRIGGER_NAMES),
        )
    ]
    for table in tables:
        for trigger in PAYMENT_TRIGGER_NAMES:
            await conn.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
    return tables


async def _install_payments(
    conn: asyncpg.Connection, payments: PaymentsSettings, orders: OrdersSettings
) -> list[str]:
    """The payments table's triggers and the amount formats of payments.locale."""
    applied: list[str] = []
    removed = await _drop_payment_triggers(conn)  # reinstalled below when still configured
    if not payments.enabled:
        return [f"payment triggers removed from {table}" for table in removed]
    table = payments_table(payments)
    order_id_type = await _column_type(conn, qualified_table(orders), orders.id_column)
    if await conn.fetchval("SELECT to_regclass($1)", table) is None:
        if not payments.create_demo_table:
            raise SchemaError(
                f"payments.table: table {payments.table} does not exist "
                "(create it, set payments.create_demo_table: true, or payments.table: '')"
            )
        for statement in demo_payments_sql(payments, orders, order_id_type or "text"):
            await conn.execute(statement)
        applied.append(f"demo table {payments.table}")
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = $1 AND table_name = $2",
        payments.schema_name,
        payments.table_name,
    )
    present = {r["column_name"] for r in rows}
    for key in _PAYMENT_COLUMNS:
        column = getattr(payments, key)
        if column not in present:
            raise SchemaError(
                f"payments.{key}: table {payments.table} has no column {column!r} "
                f"(columns: {', '.join(sorted(present))})"
            )
    for statement in install_money_sql(payments.locale):
        await conn.execute(statement)
    payment_order_type = await _column_type(conn, table, payments.order_id_column)
    cast_to = None if payment_order_type == order_id_type else order_id_type or "text"
    for statement in install_payment_triggers_sql(payments, orders, cast_to):
        await conn.execute(statement)
    await conn.execute(
        "INSERT INTO tiffin_rt.installed_triggers (table_name) VALUES ($1) "
        "ON CONFLICT (table_name) DO NOTHING",
        payments.table,
    )
    return applied


async def upgrade(
    conn: asyncpg.Connection,
    orders: OrdersSettings,
    payments: PaymentsSettings | None = None,
    batching: BatchingSettings | None = None,
) -> list[str]:
    """Apply pending migrations and (re)install the triggers; returns what was applied.

    `payments`: install (or, with an empty table, remove) the payment triggers; `batching`:
    the trigger that holds events for digests (removed when off); None leaves them as they
    are."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _ADVISORY_LOCK_KEY)
    try:
        async with conn.transaction():
            await conn.execute("CREATE SCHEMA IF NOT EXISTS tiffin_rt")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS tiffin_rt.schema_version ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
        done = await _applied_versions(conn)
        for migration in load_migrations():
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO tiffin_rt.schema_version (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            applied.append(migration.name)
            log.info("applied migration %s", migration.name)
        async with conn.transaction():
            if not await _check_orders_table(conn, orders):
                if not orders.create_demo_table:
                    raise SchemaError(
                        f"orders.table: table {orders.table} does not exist "
                        "(create it, or set orders.create_demo_table: true)"
                    )
                for statement in demo_table_sql(orders):
                    await conn.execute(statement)
                applied.append(f"demo table {orders.table}")
            for statement in install_triggers_sql(orders):
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO tiffin_rt.installed_triggers (table_name) VALUES ($1) "
                "ON CONFLICT (table_name) DO NOTHING",
                orders.table,
            )
            if payments is not None:
                applied.extend(await _install_payments(conn, payments, orders))
            if batching is not None:
                for statement in install_hold_trigger_sql(batching):
                    await conn.execute(statement)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _ADVISORY_LOCK_KEY)
    return applied


async def downgrade(conn: asyncpg.Connection) -> list[str]:
    """Remove triggers and the tiffin_rt schema; order tables and their rows stay."""
    removed: list[str] = []
    if await conn.fetchval("SELECT to_regnamespace('tiffin_rt') IS NULL"):
        return removed
    async with conn.transaction():
        tables: list[str] = []
        if await conn.fetchval("SELECT to_regclass('tiffin_rt.installed_triggers') IS NOT NULL"):
            tables = [
                r["table_name"]
                for r in await conn.fetch("SELECT table_name FROM tiffin_rt.installed_triggers")
            ]
        for table in tables:
            schema, _, name = table.rpartition(".")
            qualified = f"{quote_ident(schema or 'public')}.{quote_ident(name)}"
            if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", qualified):
                for trigger in (*TRIGGER_NAMES, *PAYMENT_TRIGGER_NAMES):
                    await conn.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {qualified}")
                removed.append(f"triggers on {table}")
        await conn.execute("DROP SCHEMA tiffin_rt CASCADE")
        removed.append("schema tiffin_rt")
    return removed


async def status(conn: asyncpg.Connection) -> SchemaStatus:
    done = await _applied_versions(conn)
    migrations = load_migrations()
    tables: list[str] = []
    events = 0
    if done:
        tables = [
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM tiffin_rt.installed_triggers ORDER BY 1"
            )
        ]
        events = int(await conn.fetchval("SELECT count(*) FROM tiffin_rt.events"))
    return SchemaStatus(
        current_version=max(done, default=0),
        latest_version=migrations[-1].version if migrations else 0,
        pending=[m.name for m in migrations if m.version not in done],
        trigger_tables=tables,
        event_count=events,
    )
