-- The processor's record follows the payment state machine (ordo-lifecycle):
-- new stages (cancel_requested, void_due, rejecting, refund_due; 'new' for a
-- record that holds only failed attempts) need no DDL, but every write now
-- compares and bumps a version, so a decision made on a record that changed
-- since it was read is made again instead of overwriting the change.
ALTER TABLE order_processing ADD COLUMN version bigint NOT NULL DEFAULT 0;

-- What operators did to dead letters, and why: who (the admin token's
-- name), when, which dead letter, which order, and what came of it.
CREATE TABLE processing_audit (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id       uuid,
    dead_letter_id bigint      NOT NULL,
    message_id     text        NOT NULL,
    subject        text        NOT NULL,
    -- redrive | purge
    action         text        NOT NULL,
    actor          text        NOT NULL,
    reason         text        NOT NULL,
    outcome        text        NOT NULL,
    occurred_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX processing_audit_order_idx ON processing_audit (order_id, occurred_at);
