"""The trigger that holds a user's events back for a digest once they come faster than
`batching.max_per_window` in `batching.window_seconds` (see migration 0006)."""

from __future__ import annotations

from tiffin_rt.config import BatchingSettings
from tiffin_rt.core.digest import log_kinds

HOLD_TRIGGER = "tiffin_rt_hold_for_digest"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def hold_function_sql(batching: BatchingSettings) -> str:
    """hold_for_digest(): per user room of the event, count that user's recent events of the
    batched kinds (committed ones, and this transaction's); past the limit, hold it."""
    return f"""
CREATE OR REPLACE FUNCTION tiffin_rt.hold_for_digest() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    room   text;
    uid    text;
    recent bigint;
    held   text[] := '{{}}';
BEGIN
    FOR room IN SELECT DISTINCT r FROM unnest(NEW.rooms) AS r WHERE r LIKE 'user-_%' ORDER BY 1
    LOOP
        uid := substr(room, 6);
        SELECT count(*) INTO recent FROM tiffin_rt.digest_items d
        WHERE d.user_id = uid
          AND d.at > NEW.created_at - make_interval(secs => {float(batching.window_seconds)!r});
        INSERT INTO tiffin_rt.digest_items (user_id, event_id, at, held)
        VALUES (uid, NEW.id, NEW.created_at, recent >= {batching.max_per_window});
        IF recent >= {batching.max_per_window} THEN
            held := held || room;
        END IF;
    END LOOP;
    IF cardinality(held) > 0 THEN
        NEW.payload := NEW.payload || jsonb_build_object('heldFor', to_jsonb(held));
    END IF;
    RETURN NEW;
END;
$fn$;
"""


def install_hold_trigger_sql(batching: BatchingSettings) -> list[str]:
    """(Re)install the trigger for the configured kinds, or only remove it when off."""
    drop = f"DROP TRIGGER IF EXISTS {HOLD_TRIGGER} ON tiffin_rt.events"
    if not batching.enabled:
        return [drop]
    kinds = "ARRAY[" + ", ".join(_literal(k) for k in log_kinds(batching.kinds)) + "]"
    return [
        hold_function_sql(batching),
        drop,
        f"CREATE TRIGGER {HOLD_TRIGGER} BEFORE INSERT ON tiffin_rt.events FOR EACH ROW"
        f" WHEN (NEW.kind = ANY ({kinds})) EXECUTE FUNCTION tiffin_rt.hold_for_digest()",
    ]
