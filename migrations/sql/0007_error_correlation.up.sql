-- Each failed attempt names the correlation id of the order it was about,
-- so an error history (and a dead letter) leads back to the request.
ALTER TABLE processing_errors ADD COLUMN correlation_id text NOT NULL DEFAULT '';
