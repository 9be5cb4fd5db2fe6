DROP TABLE outbox_relay_members;
DROP TABLE outbox_leases;
