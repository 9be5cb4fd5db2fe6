-- Error histories are swept after ERROR_HISTORY_RETENTION once their order's
-- payment is settled: the sweep walks them by age.
CREATE INDEX processing_errors_occurred_idx ON processing_errors (occurred_at);
