//! What every Ordo service shares, so each service's own code is only what
//! makes it different:
//!
//! - [`admin`]: the named bearer tokens of the admin RPCs, and the reason
//!   every operator's decision takes.
//! - [`cli`]: the command line of every service binary (`--help`,
//!   `--version`, `--check-config`).
//! - [`env`]: reading settings by name, one line naming a bad one.
//! - [`group_commit`]: jobs that arrive while a commit is in flight are
//!   written together in the next one, each answered with its own outcome.
//! - [`health`]: `grpc.health.v1` per dependency, following probes.
//! - [`telemetry`]: the `LOG_FORMAT`, `RUST_LOG` and `OTEL_*` settings of
//!   `ordo-telemetry`.
//! - [`metrics`]: metric families shared by services (consumer outcomes,
//!   breaker state).
//! - [`nats`]: connecting to one NATS server or a list of cluster seeds,
//!   over TLS and with credentials.
//! - [`postgres`]: checking a `DATABASE_URL`'s TLS parameters.
//! - [`mod@reference`]: the one declaration of each binary's settings, from
//!   which `--help` and the README's tables come, and the checks that keep
//!   it true to the code.
//! - [`resilience`]: backoff and circuit-breaker settings under names each
//!   caller chooses.
//! - [`serving`]: server reflection over every descriptor a client meets,
//!   the SIGINT/SIGTERM shutdown signal, and the limits every server
//!   enforces ([`serving::ServerLimits`]: load shedding, request deadline).
//! - [`tls`]: TLS and mutual TLS for the gRPC servers, from PEM files
//!   reloaded when they change.
#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod env;
pub mod group_commit;
pub mod health;
pub mod metrics;
pub mod nats;
pub mod postgres;
pub mod reference;
pub mod resilience;
pub mod serving;
pub mod shutdown;
pub mod tls;

pub use env::{Lookup, SettingsError, parse_bool, parse_duration};
pub mod telemetry;

pub use ordo_telemetry::LogFormat;
