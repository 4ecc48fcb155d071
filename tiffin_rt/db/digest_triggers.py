"""The trigger that records each batched event per user for the rate (see migrations 0009 and
0011): it only inserts, so it never waits on, stalls or fails the backend's transaction;
whether the event is held is decided later, in log order (tiffin_rt.decide_holds)."""

from __future__ import annotations

from tiffin_rt.config import BatchingSettings
from tiffin_rt.core.digest import log_kinds

HOLD_TRIGGER = "tiffin_rt_hold_for_digest"

_RECORD_FUNCTION = """
CREATE OR REPLACE FUNCTION tiffin_rt.hold_for_digest() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO tiffin_rt.digest_items (user_id, event_id, at, held)
    SELECT DISTINCT substr(room, 6), NEW.id, NEW.created_at, NULL::boolean
    FROM unnest(NEW.rooms) AS room WHERE room LIKE 'user-_%';
    RETURN NULL;
END;
$fn$;
"""


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def hold_function_sql() -> str:
    """hold_for_digest(): one undecided row per user room of the event (no count, no lock)."""
    return _RECORD_FUNCTION


def install_hold_trigger_sql(batching: BatchingSettings) -> list[str]:
    """(Re)install the trigger for the configured kinds, or only remove it when off."""
    drop = f"DROP TRIGGER IF EXISTS {HOLD_TRIGGER} ON tiffin_rt.events"
    if not batching.enabled:
        return [drop]
    kinds = "ARRAY[" + ", ".join(_literal(k) for k in log_kinds(batching.kinds)) + "]"
    return [
        hold_function_sql(),
        drop,
        f"CREATE TRIGGER {HOLD_TRIGGER} AFTER INSERT ON tiffin_rt.events FOR EACH ROW"
        f" WHEN (NEW.kind = ANY ({kinds})) EXECUTE FUNCTION tiffin_rt.hold_for_digest()",
    ]
