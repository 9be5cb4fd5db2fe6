DROP INDEX inbox_order_idx;
ALTER TABLE inbox DROP COLUMN order_id, DROP COLUMN stream_sequence, DROP COLUMN published_at;
