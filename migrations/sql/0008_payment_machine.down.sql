DROP TABLE processing_audit;
ALTER TABLE order_processing DROP COLUMN version;
