DROP TABLE processing_errors;
DROP TABLE order_processing;
