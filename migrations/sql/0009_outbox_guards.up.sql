-- Rows the relay can never publish (a header NATS cannot carry, a payload
-- over the server's max payload) are moved here, out of their partition's
-- way, with the reason. The row keeps its outbox id, so a redrive puts it
-- back where it was; while it is here the claim skips its aggregate's later
-- rows, so they never overtake it, and every other aggregate flows.
CREATE TABLE outbox_parked (
    id             bigint      PRIMARY KEY,
    event_id       uuid        NOT NULL UNIQUE,
    partition      integer     NOT NULL,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    subject        text        NOT NULL,
    event_type     text        NOT NULL,
    payload        bytea       NOT NULL,
    headers        jsonb       NOT NULL,
    created_at     timestamptz NOT NULL,
    reason         text        NOT NULL,
    parked_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX outbox_parked_aggregate_idx ON outbox_parked (aggregate_type, aggregate_id);

-- The partition count the outbox is written with, recorded on first start:
-- a process started with another OUTBOX_PARTITIONS refuses to start (its
-- rows would land in partitions no relay reads, or one aggregate's events
-- in two partitions); `ordo-migrate repartition` changes it.
CREATE TABLE outbox_settings (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    partitions  integer     NOT NULL CHECK (partitions BETWEEN 1 AND 4096),
    recorded_at timestamptz NOT NULL DEFAULT now()
);
