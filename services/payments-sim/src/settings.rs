//! Configuration from the environment, read in one place. [`reference`]
//! declares every setting read here, with its default and meaning.

pub mod reference;

use std::net::SocketAddr;
use std::time::Duration;

use ordo_service_kit::serving::ServerLimits;

use ordo_service_kit::{Lookup, SettingsError, parse_bool};
pub use ordo_telemetry::TelemetryConfig;

use crate::faults::Faults;

/// Everything the simulator needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `GRPC_LISTEN_ADDR`, default `0.0.0.0:50053`.
    pub grpc_listen_addr: SocketAddr,
    /// `PAYMENTS_LATENCY`, `PAYMENTS_ERROR_RATE`, `PAYMENTS_OUTAGE`,
    /// `PAYMENTS_DECLINE_ABOVE_MINOR`: the fault knobs at start.
    pub faults: Faults,
    /// `SHUTDOWN_DRAIN_DELAY`, `SHUTDOWN_TIMEOUT`: how a stop drains
    /// (serving on while NOT_SERVING, then one deadline for everything).
    pub shutdown: ordo_service_kit::shutdown::ShutdownPlan,
    /// `GRPC_MAX_IN_FLIGHT`, `GRPC_REQUEST_TIMEOUT`: load shedding and the
    /// request deadline of the gRPC server.
    pub limits: ServerLimits,
    /// `GRPC_TLS_CERT_FILE`, `GRPC_TLS_KEY_FILE`, `GRPC_TLS_CLIENT_CA_FILE`,
    /// `GRPC_TLS_RELOAD_INTERVAL`: TLS (mutual with a client CA) instead of
    /// plaintext.
    pub grpc_tls: Option<ordo_service_kit::tls::ServerTls>,
    /// `LOG_FORMAT`, `RUST_LOG`, `OTEL_EXPORTER_OTLP_ENDPOINT`,
    /// `OTEL_SERVICE_NAME` (default `payments-sim`): logs and traces.
    pub telemetry: TelemetryConfig,
    /// `METRICS_LISTEN_ADDR` (default `0.0.0.0:9103`; `off` for none):
    /// where Prometheus scrapes `/metrics`.
    pub metrics_listen_addr: Option<SocketAddr>,
    /// `PAYMENTS_LEDGER_RETENTION` (default 24h): payments, idempotency keys
    /// and counts are forgotten this long after they were last touched, as
    /// a provider's keys expire; swept every minute.
    pub ledger_retention: Duration,
}

/// Log filter when `RUST_LOG` is unset.
pub const DEFAULT_LOG_FILTER: &str = "info,h2=warn,tower=warn";

impl Default for Settings {
    fn default() -> Self {
        Self {
            grpc_listen_addr: SocketAddr::from(([0, 0, 0, 0], 50053)),
            faults: Faults::default(),
            shutdown: ordo_service_kit::shutdown::ShutdownPlan::default(),
            limits: ServerLimits::default(),
            grpc_tls: None,
            telemetry: TelemetryConfig::new("payments-sim", DEFAULT_LOG_FILTER),
            metrics_listen_addr: Some(SocketAddr::from(([0, 0, 0, 0], 9103))),
            ledger_retention: Duration::from_secs(24 * 3600),
        }
    }
}

impl Settings {
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let defaults = Self::default();
        let env = Lookup(&lookup);
        let faults = Faults {
            latency: env
                .parse(
                    "PAYMENTS_LATENCY",
                    "a duration of 0-60s, such as 200ms",
                    |raw| {
                        humantime::parse_duration(raw)
                            .ok()
                            .filter(|latency| *latency <= crate::faults::MAX_LATENCY)
                    },
                )?
                .unwrap_or(defaults.faults.latency),
            error_rate: env
                .parse("PAYMENTS_ERROR_RATE", "a share from 0.0 to 1.0", |raw| {
                    raw.parse().ok().filter(|rate| (0.0..=1.0).contains(rate))
                })?
                .unwrap_or(defaults.faults.error_rate),
            outage: env
                .parse("PAYMENTS_OUTAGE", "true or false", parse_bool)?
                .unwrap_or(defaults.faults.outage),
            decline_above_minor: env
                .parse(
                    "PAYMENTS_DECLINE_ABOVE_MINOR",
                    "a whole number of minor units, at least 0",
                    |raw| raw.parse().ok().filter(|limit| *limit >= 0),
                )?
                .unwrap_or(defaults.faults.decline_above_minor),
        };
        Ok(Self {
            grpc_listen_addr: env
                .parse("GRPC_LISTEN_ADDR", "host:port, e.g. 0.0.0.0:50053", |raw| {
                    raw.parse().ok()
                })?
                .unwrap_or(defaults.grpc_listen_addr),
            faults,
            limits: ServerLimits::from_env(&env)?,
            grpc_tls: ordo_service_kit::tls::ServerTls::from_env(&env)?,
            shutdown: ordo_service_kit::shutdown::ShutdownPlan::from_env(&env, defaults.shutdown)?,
            telemetry: ordo_service_kit::telemetry::telemetry_from(
                &env,
                &defaults.telemetry.service_name,
                &defaults.telemetry.log_filter,
            )?,
            metrics_listen_addr: ordo_service_kit::telemetry::metrics_addr_from(
                &env,
                defaults.metrics_listen_addr,
            )?,
            ledger_retention: env.duration(
                "PAYMENTS_LEDGER_RETENTION",
                Duration::from_secs(1),
                defaults.ledger_retention,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::from_lookup(ordo_service_kit::env::lookup_from(pairs))
    }

    #[test]
    fn defaults_and_knobs() {
        let plain = settings(&[]).unwrap();
        assert_eq!(plain.grpc_listen_addr.port(), 50053);
        assert_eq!(plain.faults, Faults::default());
        let faulty = settings(&[
            ("PAYMENTS_LATENCY", "250ms"),
            ("PAYMENTS_ERROR_RATE", "0.3"),
            ("PAYMENTS_OUTAGE", "yes"),
            ("PAYMENTS_DECLINE_ABOVE_MINOR", "500"),
        ])
        .unwrap();
        assert_eq!(faulty.faults.latency, Duration::from_millis(250));
        assert_eq!(faulty.faults.error_rate, 0.3);
        assert!(faulty.faults.outage);
        assert_eq!(faulty.faults.decline_above_minor, 500);
    }

    #[test]
    fn bad_knobs_are_named() {
        for (name, bad) in [
            ("PAYMENTS_LATENCY", "2m"),
            ("PAYMENTS_ERROR_RATE", "1.5"),
            ("PAYMENTS_OUTAGE", "sometimes"),
            ("PAYMENTS_DECLINE_ABOVE_MINOR", "-1"),
            ("GRPC_LISTEN_ADDR", "nowhere"),
            ("PAYMENTS_LEDGER_RETENTION", "forever"),
        ] {
            assert_eq!(settings(&[(name, bad)]).unwrap_err().name, name);
        }
    }
}
