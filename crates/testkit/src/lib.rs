//! Test support for Ordo's integration tests, against real services.
//!
//! - [`database`]: a fresh PostgreSQL database per test, cloned from a
//!   template that is migrated once per schema version (across processes,
//!   under an advisory lock).
//! - [`proxy`]: a TCP proxy a test can cut and restore, to take a
//!   dependency away from a service without touching the dependency.
//! - [`wait`]: wait for a condition with a deadline instead of sleeping.
//!
//! The admin connection comes from `ORDO_TEST_DATABASE_URL`, default
//! `postgres://postgres:postgres@127.0.0.1:5432/postgres`; every database the
//! kit creates is named `ordo_t_*` so a test run can drop leftovers first.
#![forbid(unsafe_code)]

pub mod database;
pub mod proxy;
pub mod wait;

pub use database::TestDatabase;
pub use proxy::TcpProxy;
pub use wait::eventually;
