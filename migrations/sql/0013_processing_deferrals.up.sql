-- Deferrals: payment calls the open breaker refused. They are no attempt
-- (no error-history entry, no record change), so they are counted here per
-- order, with the first and last one's time and the last reason, for the
-- operator's trail. Swept like the error history once the order is settled.
CREATE TABLE processing_deferrals (
    order_id    uuid        PRIMARY KEY,
    deferrals   integer     NOT NULL DEFAULT 1 CHECK (deferrals >= 1),
    first_at    timestamptz NOT NULL DEFAULT now(),
    last_at     timestamptz NOT NULL DEFAULT now(),
    last_reason text        NOT NULL
);

CREATE INDEX processing_deferrals_last_idx ON processing_deferrals (last_at);
