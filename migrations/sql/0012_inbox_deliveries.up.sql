-- What an operator's trail of an order shows about each message a consumer
-- took: the order it was about, its sequence in the stream and when the
-- stream stored it (so a publish is visible after its outbox row is gone).
-- Rows written before this migration have none of it.
ALTER TABLE inbox
    ADD COLUMN order_id        uuid,
    ADD COLUMN stream_sequence bigint,
    ADD COLUMN published_at    timestamptz;

CREATE INDEX inbox_order_idx ON inbox (order_id, received_at) WHERE order_id IS NOT NULL;
