-- Live support chat: conversations, their messages, and each participant's read position.
CREATE TABLE tiffin_rt.support_conversations (
    id          bigserial   PRIMARY KEY,
    customer_id text        NOT NULL,
    subject     text        NOT NULL,
    order_id    text,
    status      text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    closed_at   timestamptz,
    closed_by   text
);
CREATE INDEX support_conversations_customer_idx
    ON tiffin_rt.support_conversations (customer_id, id);
CREATE INDEX support_conversations_open_idx
    ON tiffin_rt.support_conversations (id) WHERE status = 'open';

-- A message is unique per sender and clientMessageId, so a resend after a reconnect is a no-op.
CREATE TABLE tiffin_rt.support_messages (
    id                bigserial   PRIMARY KEY,
    conversation_id   bigint      NOT NULL
                      REFERENCES tiffin_rt.support_conversations (id) ON DELETE CASCADE,
    sender_id         text        NOT NULL,
    sender_role       text        NOT NULL,
    body              text        NOT NULL,
    client_message_id text        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (conversation_id, sender_id, client_message_id)
);
CREATE INDEX support_messages_conversation_idx
    ON tiffin_rt.support_messages (conversation_id, id);

-- Who took part (the customer, every agent who joined) and how far each has read.
CREATE TABLE tiffin_rt.support_participants (
    conversation_id bigint      NOT NULL
                    REFERENCES tiffin_rt.support_conversations (id) ON DELETE CASCADE,
    user_id         text        NOT NULL,
    role            text        NOT NULL,
    joined_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_read_id    bigint      NOT NULL DEFAULT 0,
    last_read_at    timestamptz,
    PRIMARY KEY (conversation_id, user_id)
);

-- Support agents connected to each server process, so every process can count them all.
-- A process refreshes seen_at while it runs; rows of a process that died go stale.
CREATE TABLE tiffin_rt.support_agents_online (
    node_id text        NOT NULL,
    user_id text        NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node_id, user_id)
);
