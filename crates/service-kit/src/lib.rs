//! What every Ordo service shares, so each service's own code is only what
//! makes it different:
//!
//! - [`env`]: reading settings by name, one line naming a bad one.
//! - [`health`]: `grpc.health.v1` per dependency, following probes.
//! - [`logging`]: log lines on stderr, text or JSON, filtered by `RUST_LOG`.
//! - [`resilience`]: backoff and circuit-breaker settings under names each
//!   caller chooses.
//! - [`serving`]: server reflection over every descriptor a client meets,
//!   the SIGINT/SIGTERM shutdown signal, and the limits every server
//!   enforces ([`serving::ServerLimits`]: load shedding, request deadline).
#![forbid(unsafe_code)]

pub mod env;
pub mod health;
pub mod logging;
pub mod resilience;
pub mod serving;

pub use env::{Lookup, SettingsError, parse_bool, parse_duration};
pub use logging::LogFormat;
