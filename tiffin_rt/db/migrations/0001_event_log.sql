-- The event log: the truth every delivery is read from. NOTIFY only wakes listeners.
CREATE TABLE tiffin_rt.events (
    id          bigserial PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind        text        NOT NULL,
    order_id    text,
    customer_id text,
    rooms       text[]      NOT NULL,
    payload     jsonb       NOT NULL
);
CREATE INDEX events_order_id_idx ON tiffin_rt.events (order_id, id) WHERE order_id IS NOT NULL;
CREATE INDEX events_rooms_idx ON tiffin_rt.events USING gin (rooms);
CREATE INDEX events_created_at_idx ON tiffin_rt.events (created_at);

-- Append one event and wake every listening tiffin_rt process when the transaction commits.
CREATE FUNCTION tiffin_rt.append_event(
    p_kind text, p_rooms text[], p_payload jsonb,
    p_order_id text DEFAULT NULL, p_customer_id text DEFAULT NULL
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    new_id bigint;
BEGIN
    INSERT INTO tiffin_rt.events (kind, order_id, customer_id, rooms, payload)
    VALUES (p_kind, p_order_id, p_customer_id, p_rooms, p_payload)
    RETURNING id INTO new_id;
    PERFORM pg_notify('tiffin_rt_events', '');
    RETURN new_id;
END;
$$;

-- A notification to one user's devices (Socket.IO room user-<id>).
CREATE FUNCTION tiffin_rt.notify_user(
    p_user_id text, p_type text, p_title text, p_body text, p_data jsonb DEFAULT '{}'::jsonb
) RETURNS bigint LANGUAGE sql AS $$
    SELECT tiffin_rt.append_event(
        'notification', ARRAY['user-' || p_user_id],
        jsonb_build_object('type', p_type, 'title', p_title, 'body', p_body,
                           'data', coalesce(p_data, '{}'::jsonb), 'userId', p_user_id),
        NULL, p_user_id);
$$;

-- A notification to every connection in a room (order-<id>, vendor-<id>, user-<id>).
CREATE FUNCTION tiffin_rt.notify_room(
    p_room text, p_type text, p_title text, p_body text, p_data jsonb DEFAULT '{}'::jsonb
) RETURNS bigint LANGUAGE sql AS $$
    SELECT tiffin_rt.append_event(
        'notification', ARRAY[p_room],
        jsonb_build_object('type', p_type, 'title', p_title, 'body', p_body,
                           'data', coalesce(p_data, '{}'::jsonb), 'room', p_room),
        CASE WHEN p_room LIKE 'order-%' THEN substr(p_room, 7) END, NULL);
$$;

-- Which tables carry tiffin_rt's order triggers, so downgrade can remove them.
CREATE TABLE tiffin_rt.installed_triggers (
    table_name   text PRIMARY KEY,
    installed_at timestamptz NOT NULL DEFAULT now()
);
