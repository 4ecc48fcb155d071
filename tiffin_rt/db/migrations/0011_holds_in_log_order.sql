-- Batching decides in log order, outside the backend's transaction (README "Batching",
-- docs/batching.md). Until 0009 the BEFORE INSERT trigger counted the user's recent items that
-- its own transaction could see: notifications for one user committed by concurrent backend
-- transactions never saw each other and were never held. Now the trigger only records the
-- item (held NULL: not decided yet), which takes no lock and reads nothing, so it cannot wait
-- on, stall or fail the backend's transaction. The decision is made by decide_holds() once
-- the item is committed: by each node's listener before it delivers the event (it passes
-- events in id order and waits for gaps), or by a replay or the inbox on connect that reaches
-- it first. The rule depends on committed rows only (the user's items with a lower event id
-- within the window before this one's created_at), and the first decision written wins, so
-- every node, live or replay, gets the same answer.

ALTER TABLE tiffin_rt.digest_items ALTER COLUMN held DROP NOT NULL;

-- Decide (once, first writer wins) whether each of these events is held for each of its users:
-- held iff the user has at least p_max items with a lower event id whose time is within
-- p_window seconds before this one's. p_window NULL (batching off on the caller): only report
-- what was decided already. Returns one row per (event, user) recorded for batching.
CREATE FUNCTION tiffin_rt.decide_holds(
    p_ids bigint[], p_window double precision, p_max integer
) RETURNS TABLE (item_event_id bigint, item_user_id text, item_held boolean, item_digest_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    item record;
    decided boolean;
BEGIN
    -- A decision lost in a crash is made again, the same (it depends on committed rows only):
    -- no need to wait for its WAL flush, which would be most of its cost on live delivery.
    PERFORM set_config('synchronous_commit', 'off', true);
    FOR item IN
        SELECT d.user_id, d.event_id, d.at, d.held, d.digest_id FROM tiffin_rt.digest_items d
        WHERE d.event_id = ANY (p_ids) ORDER BY d.event_id, d.user_id
    LOOP
        decided := item.held;
        IF decided IS NULL AND p_window IS NOT NULL THEN
            UPDATE tiffin_rt.digest_items d SET held = (
                SELECT count(*) >= p_max FROM (
                    SELECT 1 FROM tiffin_rt.digest_items e
                    WHERE e.user_id = item.user_id AND e.event_id < item.event_id
                      AND e.at > item.at - make_interval(secs => p_window)
                    LIMIT p_max) AS earlier)
            WHERE d.user_id = item.user_id AND d.event_id = item.event_id AND d.held IS NULL
            RETURNING d.held INTO decided;
            IF decided IS NULL THEN  -- another node wrote it first: its answer counts
                SELECT d.held INTO decided FROM tiffin_rt.digest_items d
                WHERE d.user_id = item.user_id AND d.event_id = item.event_id;
            END IF;
        END IF;
        item_event_id := item.event_id;
        item_user_id := item.user_id;
        item_held := decided;
        item_digest_id := item.digest_id;
        RETURN NEXT;
    END LOOP;
END;
$$;

-- Batching turned off: items nobody decided stay as they were delivered (not held), and the
-- held ones still waiting are carried by a digest now instead of at their window's end.
CREATE FUNCTION tiffin_rt.release_held(p_items integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    uid text;
    written integer := 0;
BEGIN
    UPDATE tiffin_rt.digest_items SET held = false WHERE held IS NULL;
    FOR uid IN SELECT DISTINCT user_id FROM tiffin_rt.digest_items
               WHERE held AND digest_id IS NULL ORDER BY 1
    LOOP
        PERFORM tiffin_rt.flush_digest(uid, NULL, p_items);
        written := written + 1;
    END LOOP;
    RETURN written;
END;
$$;

-- As in 0009, and: p_window NULL writes the digest of everything waiting now (release_held);
-- the payload counts the notifications among the items (`notifications`), which Web Push
-- pushes as one message instead of each.
CREATE OR REPLACE FUNCTION tiffin_rt.flush_digest(
    p_user_id text, p_window double precision, p_items integer
) RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    window_length interval := make_interval(secs => coalesce(p_window, 0));
    first_at timestamptz;
    due timestamptz;
    ids bigint[];
    shown jsonb;
    unread bigint;
    notes bigint;
    digest bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('tiffin_rt.digest'), hashtext(p_user_id));
    SELECT min(at) INTO first_at FROM tiffin_rt.digest_items
    WHERE user_id = p_user_id AND held AND digest_id IS NULL;
    IF first_at IS NULL THEN
        RETURN NULL;
    END IF;
    IF p_window IS NULL THEN
        due := greatest(clock_timestamp(), first_at) + interval '1 microsecond';
    ELSE
        due := first_at + window_length;
    END IF;
    IF clock_timestamp() < due AND p_window IS NOT NULL THEN
        RETURN extract(epoch FROM due - clock_timestamp());
    END IF;
    SELECT array_agg(event_id ORDER BY event_id) INTO ids FROM tiffin_rt.digest_items
    WHERE user_id = p_user_id AND held AND digest_id IS NULL AND at < due;
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', e.id, 'kind', e.kind,
               'at', (extract(epoch FROM e.created_at) * 1000000)::bigint,
               'payload', e.payload - 'heldFor') ORDER BY e.id), '[]'::jsonb)
    INTO shown FROM tiffin_rt.events e WHERE e.id = ANY (ids[1:p_items]);
    SELECT count(*) INTO notes FROM tiffin_rt.events e
    WHERE e.id = ANY (ids) AND e.kind = 'notification';
    SELECT count(*) INTO unread FROM tiffin_rt.inbox i
    WHERE i.user_id = p_user_id AND i.read_at IS NULL;
    digest := tiffin_rt.append_event(
        'notification_digest', ARRAY['user-' || p_user_id],
        jsonb_build_object(
            'count', cardinality(ids), 'notifications', notes, 'items', shown,
            'unread', unread, 'userId', p_user_id,
            'since', (extract(epoch FROM first_at) * 1000000)::bigint,
            'until', (extract(epoch FROM due) * 1000000)::bigint),
        NULL, p_user_id);
    UPDATE tiffin_rt.digest_items SET digest_id = digest
    WHERE user_id = p_user_id AND event_id = ANY (ids);
    SELECT min(at) INTO first_at FROM tiffin_rt.digest_items
    WHERE user_id = p_user_id AND held AND digest_id IS NULL;
    IF first_at IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN greatest(0, extract(epoch FROM first_at + window_length - clock_timestamp()));
END;
$$;
