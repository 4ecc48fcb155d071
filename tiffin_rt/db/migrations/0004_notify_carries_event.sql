-- The NOTIFY now carries the event itself, so a listener that is up to date delivers it without
-- reading the log back (one database round trip less per event). PostgreSQL caps a payload at
-- 8000 bytes: a bigger event carries only its id, and the listener reads that one from the log.
-- The log stays the truth: a listener that is behind, sees a gap, or reconnects reads it.
CREATE OR REPLACE FUNCTION tiffin_rt.append_event(
    p_kind text, p_rooms text[], p_payload jsonb,
    p_order_id text DEFAULT NULL, p_customer_id text DEFAULT NULL
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    new_id bigint;
    new_at timestamptz;
    message text;
BEGIN
    INSERT INTO tiffin_rt.events (kind, order_id, customer_id, rooms, payload)
    VALUES (p_kind, p_order_id, p_customer_id, p_rooms, p_payload)
    RETURNING id, created_at INTO new_id, new_at;
    message := json_build_object(
        'id', new_id, 'kind', p_kind,
        'at', (extract(epoch FROM new_at) * 1000000)::bigint,
        'rooms', p_rooms, 'order', p_order_id, 'customer', p_customer_id,
        'payload', p_payload)::text;
    IF octet_length(message) > 7900 THEN
        message := new_id::text;
    END IF;
    PERFORM pg_notify('tiffin_rt_events', message);
    RETURN new_id;
END;
$$;
