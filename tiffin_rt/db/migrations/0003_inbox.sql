-- The inbox: every notification addressed to a user room, with its read state. It outlives the
-- event log's retention, so a device offline for weeks still finds its unread notifications.
CREATE TABLE tiffin_rt.inbox (
    user_id    text        NOT NULL,
    event_id   bigint      NOT NULL,
    payload    jsonb       NOT NULL,
    created_at timestamptz NOT NULL,
    read_at    timestamptz,
    PRIMARY KEY (user_id, event_id)
);
CREATE INDEX inbox_unread_idx ON tiffin_rt.inbox (user_id, event_id) WHERE read_at IS NULL;
CREATE INDEX inbox_created_at_idx ON tiffin_rt.inbox (created_at);

-- Keep each notification to a user-<id> room (notify_user, notify_room('user-..'), or a direct
-- append_event('notification', ...)) in that user's inbox, in the same transaction.
CREATE FUNCTION tiffin_rt.inbox_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tiffin_rt.inbox (user_id, event_id, payload, created_at)
    SELECT substr(room, 6), NEW.id, NEW.payload, NEW.created_at
    FROM unnest(NEW.rooms) AS room
    WHERE room LIKE 'user-_%'
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;

CREATE TRIGGER tiffin_rt_inbox_keep AFTER INSERT ON tiffin_rt.events
    FOR EACH ROW WHEN (NEW.kind = 'notification') EXECUTE FUNCTION tiffin_rt.inbox_keep();

-- Mark a user's notifications read (p_ids NULL: all of them). When anything changed, a
-- 'notification_read' event tells the user's other devices, through the log, on every node.
CREATE FUNCTION tiffin_rt.mark_notifications_read(p_user_id text, p_ids bigint[] DEFAULT NULL)
RETURNS TABLE (marked bigint[], unread bigint) LANGUAGE plpgsql AS $$
BEGIN
    WITH changed AS (
        UPDATE tiffin_rt.inbox SET read_at = clock_timestamp()
        WHERE user_id = p_user_id AND read_at IS NULL
          AND (p_ids IS NULL OR event_id = ANY (p_ids))
        RETURNING event_id
    )
    SELECT coalesce(array_agg(event_id ORDER BY event_id), '{}') INTO marked FROM changed;
    SELECT count(*) INTO unread FROM tiffin_rt.inbox i
    WHERE i.user_id = p_user_id AND i.read_at IS NULL;
    IF cardinality(marked) > 0 THEN
        PERFORM tiffin_rt.append_event(
            'notification_read', ARRAY['user-' || p_user_id],
            jsonb_build_object('ids', to_jsonb(marked), 'unread', unread, 'userId', p_user_id),
            NULL, p_user_id);
    END IF;
    RETURN NEXT;
END;
$$;
