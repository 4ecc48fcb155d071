-- Web Push: each browser's PushSubscription (one row per endpoint, i.e. per device and browser
-- profile), owned by the user who registered it last.
CREATE TABLE tiffin_rt.push_subscriptions (
    id           bigserial   PRIMARY KEY,
    user_id      text        NOT NULL,
    endpoint     text        NOT NULL UNIQUE,
    p256dh       text        NOT NULL,
    auth         text        NOT NULL,
    expires_at   timestamptz,
    user_agent   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    last_push_at timestamptz
);
CREATE INDEX push_subscriptions_user_idx ON tiffin_rt.push_subscriptions (user_id, updated_at);

-- One row per (notification event, user) some node took charge of: with several nodes, every
-- node hears every event, and only the first to claim it pushes.
CREATE TABLE tiffin_rt.push_claims (
    event_id   bigint      NOT NULL,
    user_id    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, user_id)
);
CREATE INDEX push_claims_created_at_idx ON tiffin_rt.push_claims (created_at);
