ALTER TABLE processing_errors DROP COLUMN correlation_id;
