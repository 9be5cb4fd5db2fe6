//! Integration tests of the outbox relay against a real PostgreSQL and a
//! real nats-server: each test has its own database and its own stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod claims;
mod crashes;
mod delivery;
mod helpers;
mod leases;
mod ordering;
mod partitions;
mod poison;
