-- Payment webhooks arrive in any order (providers retry, and promise no order): per payment,
-- the newest delivery applied, by the provider's event time and then the status's place in
-- the payment's life, so an older delivery arriving late is recorded but never applied.
CREATE TABLE tiffin_rt.payment_webhook_applied (
    reference    text        PRIMARY KEY,  -- the payment at the provider (reference_column)
    created      bigint      NOT NULL,     -- the applied event's `created` (unix seconds)
    status_rank  integer     NOT NULL,     -- orders two events of the same second
    status       text        NOT NULL,
    event_id     text        NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_webhook_applied_applied_at_idx
    ON tiffin_rt.payment_webhook_applied (applied_at);

-- What each delivery was and what became of it: changed, unchanged, superseded or ignored.
-- An ignored delivery (another object, an event type not handled) sets no status.
ALTER TABLE tiffin_rt.payment_webhooks
    ADD COLUMN event_type text,
    ADD COLUMN event_created bigint,
    ADD COLUMN outcome text,
    ALTER COLUMN status DROP NOT NULL;
