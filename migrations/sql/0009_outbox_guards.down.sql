DROP TABLE outbox_settings;
DROP TABLE outbox_parked;
