-- Idempotency keys are swept after IDEMPOTENCY_KEY_RETENTION: the sweep
-- walks them by age.
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
