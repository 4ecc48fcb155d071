-- Batching for busy periods (config `batching:`, README "Batching"). When a user's live
-- events of the batched kinds come faster than the configured rate, the trigger installed by
-- `db upgrade` (db/digest_triggers.py) marks the rest `heldFor` that user's room in the event
-- itself: live delivery and replay both skip it for that user's connections, and one
-- `notification_digest` event per window, appended by tiffin_rt.flush_digest(), carries them.
-- Everything is decided here, once, and kept in the log: live and replay cannot differ.

-- Each user's recent events of the batched kinds, and which were held for a digest.
CREATE TABLE tiffin_rt.digest_items (
    user_id   text        NOT NULL,
    event_id  bigint      NOT NULL,
    at        timestamptz NOT NULL,
    held      boolean     NOT NULL,
    digest_id bigint,     -- the digest that carried a held item
    PRIMARY KEY (user_id, event_id)
);
CREATE INDEX digest_items_recent_idx ON tiffin_rt.digest_items (user_id, at);
CREATE INDEX digest_items_waiting_idx ON tiffin_rt.digest_items (user_id, at)
    WHERE held AND digest_id IS NULL;

-- The NOTIFY carries the row as stored: a BEFORE INSERT trigger may have marked it held.
CREATE OR REPLACE FUNCTION tiffin_rt.append_event(
    p_kind text, p_rooms text[], p_payload jsonb,
    p_order_id text DEFAULT NULL, p_customer_id text DEFAULT NULL
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    new_id bigint;
    new_at timestamptz;
    new_payload jsonb;
    message text;
BEGIN
    INSERT INTO tiffin_rt.events (kind, order_id, customer_id, rooms, payload)
    VALUES (p_kind, p_order_id, p_customer_id, p_rooms, p_payload)
    RETURNING id, created_at, payload INTO new_id, new_at, new_payload;
    message := json_build_object(
        'id', new_id, 'kind', p_kind,
        'at', (extract(epoch FROM new_at) * 1000000)::bigint,
        'rooms', p_rooms, 'order', p_order_id, 'customer', p_customer_id,
        'payload', new_payload)::text;
    IF octet_length(message) > 7900 THEN
        message := new_id::text;
    END IF;
    PERFORM pg_notify('tiffin_rt_events', message);
    RETURN new_id;
END;
$$;

-- The digest of one user's held items whose window has ended: one `notification_digest`
-- event {count, since, until, unread, items: the first p_items as they were logged}. Every
-- node calls it (a per-user lock makes one of them write it). Returns the seconds until this
-- user's next window ends, or NULL when nothing is held.
CREATE FUNCTION tiffin_rt.flush_digest(p_user_id text, p_window double precision, p_items integer)
RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    window_length interval := make_interval(secs => p_window);
    first_at timestamptz;
    due timestamptz;
    ids bigint[];
    shown jsonb;
    unread bigint;
    digest bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('tiffin_rt.digest'), hashtext(p_user_id));
    SELECT min(at) INTO first_at FROM tiffin_rt.digest_items
    WHERE user_id = p_user_id AND held AND digest_id IS NULL;
    IF first_at IS NULL THEN
        RETURN NULL;
    END IF;
    due := first_at + window_length;
    IF clock_timestamp() < due THEN
        RETURN extract(epoch FROM due - clock_timestamp());
    END IF;
    SELECT array_agg(event_id ORDER BY event_id) INTO ids FROM tiffin_rt.digest_items
    WHERE user_id = p_user_id AND held AND digest_id IS NULL AND at < due;
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', e.id, 'kind', e.kind,
               'at', (extract(epoch FROM e.created_at) * 1000000)::bigint,
               'payload', e.payload - 'heldFor') ORDER BY e.id), '[]'::jsonb)
    INTO shown FROM tiffin_rt.events e WHERE e.id = ANY (ids[1:p_items]);
    SELECT count(*) INTO unread FROM tiffin_rt.inbox i
    WHERE i.user_id = p_user_id AND i.read_at IS NULL;
    digest := tiffin_rt.append_event(
        'notification_digest', ARRAY['user-' || p_user_id],
        jsonb_build_object(
            'count', cardinality(ids), 'items', shown, 'unread', unread, 'userId', p_user_id,
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
