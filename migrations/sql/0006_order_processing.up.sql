-- The processor's record of each order: where its payment stands.
CREATE TABLE order_processing (
    order_id       uuid        PRIMARY KEY,
    -- retrying | confirmed | rejected | dead_lettered | cancelled | refunded
    state          text        NOT NULL,
    -- Failed attempts over every message about this order.
    attempts       integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    payment_id     text,
    refund_id      text,
    -- Why the order is where it is: a decline reason, the last error, a dead letter.
    status_reason  text        NOT NULL DEFAULT '',
    correlation_id text        NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- A message's error history: one row per failed attempt, appended in its
-- own transaction (the attempt's work rolled back), kept after the message
-- is settled or dead-lettered.
CREATE TABLE processing_errors (
    message_id  text        NOT NULL,
    attempt     integer     NOT NULL CHECK (attempt >= 1),
    -- Absent when the message could not be decoded.
    order_id    uuid,
    subject     text        NOT NULL,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    code        text        NOT NULL,
    message     text        NOT NULL,
    -- The processor replica that made the attempt.
    instance    text        NOT NULL,
    PRIMARY KEY (message_id, attempt)
);

CREATE INDEX processing_errors_order_idx ON processing_errors (order_id, occurred_at);
