-- Outbox partition leases. A relay replica owns a partition while
-- expires_at is in the future and renews it by heartbeat; a dead replica's
-- partitions are free once their leases expire.
CREATE TABLE outbox_leases (
    partition  integer     PRIMARY KEY CHECK (partition >= 0),
    owner      text,
    expires_at timestamptz NOT NULL DEFAULT '-infinity'
);

-- Live relay replicas, so each can take its fair share: ceil(P / live).
CREATE TABLE outbox_relay_members (
    owner      text        PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
