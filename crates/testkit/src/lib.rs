//! Test support for Ordo's integration tests, against real services.
//!
//! - [`database`]: a fresh PostgreSQL database per test, cloned from a
//!   template that is migrated once per schema version (across processes,
//!   under an advisory lock).
//! - [`proxy`]: a TCP proxy a test can cut and restore, to take a
//!   dependency away from a service without touching the dependency.
//! - [`nats`]: a JetStream stream and subject prefix per test on the shared
//!   nats-server, and a private nats-server a test may stop and restart.
//! - [`wait`]: wait for a condition with a deadline instead of sleeping.
//! - [`ports`]: free loopback ports below the kernel's ephemeral range.
//! - [`postgres`]: a PostgreSQL cluster of a test's own, to crash and
//!   restart, or to run with TLS only.
//! - [`certs`]: a CA and certificates made at test time, as PEM files.
//! - [`command_line`]: a service binary's `--help`, `--version` and
//!   `--check-config`, checked by running it.
//!
//! The admin connection comes from `ORDO_TEST_DATABASE_URL`, default
//! `postgres://postgres:postgres@127.0.0.1:5432/postgres`; every database the
//! kit creates is named `ordo_t_*` so a test run can drop leftovers first.
//! The shared nats-server is `ORDO_TEST_NATS_URL`, default
//! `nats://127.0.0.1:4222`; test streams are named `ORDO_T_*` and removed by
//! later tests once they are 15 minutes old.
#![forbid(unsafe_code)]

pub mod certs;
pub mod command_line;
pub mod database;
pub mod nats;
pub mod ports;
pub mod postgres;
pub mod proxy;
pub mod replicas;
pub mod wait;

pub use database::{Schema, TestDatabase};
pub use nats::{NatsServer, StreamMessage, TestStream};
pub use ports::free_port;
pub use postgres::PrivatePostgres;
pub use proxy::TcpProxy;
pub use wait::eventually;

pub mod probes;

pub use probes::{health_of, health_over, metric, scrape_metrics, scrape_parsed};
