"""What /readyz asks the database: can this role use the schema, do the triggers still fire."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from tiffin_rt.config import OrdersSettings, PaymentsSettings
from tiffin_rt.db.payment_triggers import PAYMENT_TRIGGER_NAMES
from tiffin_rt.db.triggers import TRIGGER_NAMES

SCHEMA = "tiffin_rt"

# What the server (and the tiffin_rt functions it calls, which run with its rights) does to
# each table; losing any of these breaks a feature while everything else looks healthy.
NEEDED_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "events": ("SELECT", "INSERT"),
    "inbox": ("SELECT", "INSERT", "UPDATE"),
    "support_conversations": ("SELECT", "INSERT", "UPDATE"),
    "support_messages": ("SELECT", "INSERT"),
    "support_participants": ("SELECT", "INSERT", "UPDATE"),
    "support_agents_online": ("SELECT", "INSERT", "UPDATE", "DELETE"),
}

# Catalog lookups by name, never regclass casts: those fail outright on a schema the role
# may not use, which is one of the things asked.
_QUERY = """
WITH needed(schema_name, table_name, privilege) AS (
    SELECT $1::text, t, p FROM unnest($2::text[], $3::text[]) AS u(t, p)
    UNION ALL SELECT $4::text, $5::text, 'SELECT'
), checked AS (
    SELECT needed.*, has_table_privilege(c.oid, needed.privilege) AS granted
    FROM needed
    LEFT JOIN pg_namespace n ON n.nspname = needed.schema_name
    LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = needed.table_name
)
SELECT
    (SELECT has_schema_privilege(oid, 'USAGE') FROM pg_namespace WHERE nspname = $1)
        AS schema_usage,
    ARRAY(SELECT privilege || ' on ' || schema_name || '.' || table_name FROM checked
          WHERE granted IS NOT TRUE) AS missing_privileges,
    ARRAY(SELECT t.tgname::text || ':' || t.tgenabled::text FROM pg_trigger t
          JOIN pg_class c ON c.oid = t.tgrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $4 AND c.relname = $5 AND t.tgname = ANY($6::text[]))
        AS triggers,
    ARRAY(SELECT t.tgname::text || ':' || t.tgenabled::text FROM pg_trigger t
          JOIN pg_class c ON c.oid = t.tgrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $7 AND c.relname = $8 AND t.tgname = ANY($9::text[]))
        AS payment_triggers
"""


@dataclass(frozen=True, slots=True)
class Readiness:
    """Each check as /readyz reports it: "ok", or what is wrong in words an operator acts on."""

    schema: str
    triggers: str


def _trigger_problems(found_rows: list[str], names: tuple[str, ...], table: str) -> list[str]:
    found = dict(entry.split(":", 1) for entry in found_rows)
    # tgenabled: O fires (origin and local), A always; D is disabled, R fires only on replicas
    missing = [name for name in names if name not in found]
    disabled = [name for name in names if found.get(name) in ("D", "R")]
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing))
    if disabled:
        problems.append("disabled " + ", ".join(disabled))
    return [f"{'; '.join(problems)} on {table}"] if problems else []


async def check(
    pool: asyncpg.Pool,
    orders: OrdersSettings,
    query_seconds: float,
    payments: PaymentsSettings | None = None,
) -> Readiness:
    """`payments`: also its table's triggers, when `payments.table` is set."""
    tables = [t for t, privileges in NEEDED_PRIVILEGES.items() for _ in privileges]
    privileges = [p for ps in NEEDED_PRIVILEGES.values() for p in ps]
    watched = payments if payments is not None and payments.enabled else None
    row = await pool.fetchrow(
        _QUERY,
        SCHEMA,
        tables,
        privileges,
        orders.schema_name,
        orders.table_name,
        list(TRIGGER_NAMES),
        watched.schema_name if watched else None,
        watched.table_name if watched else None,
        list(PAYMENT_TRIGGER_NAMES),
        timeout=query_seconds,
    )
    assert row is not None
    if row["schema_usage"] is None:
        schema = f"schema {SCHEMA} is not installed"
    elif not row["schema_usage"]:
        schema = f"this role has no USAGE on schema {SCHEMA}"
    elif row["missing_privileges"]:
        schema = "this role lacks " + ", ".join(row["missing_privileges"])
    else:
        schema = "ok"
    problems = _trigger_problems(row["triggers"], TRIGGER_NAMES, orders.table)
    if watched:
        problems += _trigger_problems(row["payment_triggers"], PAYMENT_TRIGGER_NAMES, watched.table)
    return Readiness(schema=schema, triggers="; ".join(problems) or "ok")
