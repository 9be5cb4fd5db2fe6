-- The inbox: one row per message a consumer handled, keyed by its
-- Nats-Msg-Id, written in the same transaction as the message's effect, so
-- a redelivered or re-published message has no second effect. The outcome
-- records what was done ("applied", or why it was ignored).
CREATE TABLE inbox (
    consumer    text        NOT NULL,
    message_id  text        NOT NULL,
    subject     text        NOT NULL,
    outcome     text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);

CREATE INDEX inbox_received_at_idx ON inbox (received_at);
