-- Leases on background jobs that one replica at a time should run (the
-- inbox retention sweep). A replica holds a job while expires_at is in the
-- future; a dead replica's job is free once its lease expires.
CREATE TABLE job_leases (
    name       text        PRIMARY KEY,
    owner      text,
    expires_at timestamptz NOT NULL DEFAULT '-infinity'
);
