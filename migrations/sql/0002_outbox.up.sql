-- The transactional outbox: one row per event, written in the same
-- transaction as the state change it announces, deleted once JetStream acked it.
CREATE TABLE outbox (
    -- Claim order within a partition; never reused.
    id             bigint      GENERATED ALWAYS AS IDENTITY,
    -- The event id, published as Nats-Msg-Id: JetStream drops a re-publish.
    event_id       uuid        NOT NULL UNIQUE,
    -- hash(aggregate_id) mod OUTBOX_PARTITIONS; a relay leases partitions.
    partition      integer     NOT NULL CHECK (partition >= 0),
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    subject        text        NOT NULL,
    event_type     text        NOT NULL,
    payload        bytea       NOT NULL,
    -- NATS headers to publish with: correlation id, trace context, ce-* attributes.
    headers        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- The relay's only access path: a partition's rows in id order. No index
    -- on id alone on purpose: given one, PostgreSQL prefers walking it and
    -- filtering out other partitions, which reads the whole table when a
    -- partition's rows sit at its end.
    CONSTRAINT outbox_pkey PRIMARY KEY (partition, id)
);
