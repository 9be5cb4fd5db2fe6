//! Integration tests of the order service against a real PostgreSQL: each
//! test spawns the service on port 0 over a database of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cancelling;
mod delivery;
mod group_commit;
mod health;
mod helpers;
mod idempotency;
mod logs;
mod operations;
mod placing;
mod poison;
mod properties;
mod reading;
mod rolling;
mod settings;
mod status;
mod validation;
