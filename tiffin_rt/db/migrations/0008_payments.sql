-- Payments: how amounts are written per currency (rows and format_money() are installed by
-- `db upgrade` from babel's data for payments.locale, see db/money.py), and the provider
-- webhook deliveries already taken, by the provider's event id, so a replay writes nothing.
CREATE TABLE tiffin_rt.currency_formats (
    code     text    PRIMARY KEY,  -- ISO 4217; '' is the row for codes babel does not list
    exponent integer NOT NULL,     -- digits after the decimal point (EUR 2, JPY 0, KWD 3)
    prefix   text    NOT NULL,
    suffix   text    NOT NULL
);

CREATE TABLE tiffin_rt.payment_webhooks (
    event_id    text        PRIMARY KEY,
    reference   text        NOT NULL,
    status      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_webhooks_created_at_idx ON tiffin_rt.payment_webhooks (created_at);
