//! Configuration, read from the environment in one place and handed around
//! as a typed struct. Tests build [`Settings`] directly and never touch the
//! process environment.

use std::net::SocketAddr;
use std::time::Duration;

use ordo_service_kit::serving::ServerLimits;

use ordo_outbox::{PartitionCount, StreamSettings};
pub use ordo_service_kit::{LogFormat, SettingsError};
use ordo_service_kit::{Lookup, parse_bool, parse_duration};

/// Everything the order service needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `DATABASE_URL`: the PostgreSQL database.
    pub database_url: String,
    /// `DATABASE_MAX_CONNECTIONS`: pool size.
    pub database_max_connections: u32,
    /// `GRPC_LISTEN_ADDR`: where gRPC is served; port 0 picks a free port.
    pub grpc_listen_addr: SocketAddr,
    /// `OUTBOX_PARTITIONS`: outbox partitions events are spread over.
    pub outbox_partitions: PartitionCount,
    /// `MIGRATE`: apply pending migrations at start-up.
    pub migrate: bool,
    /// `HEALTH_PROBE_INTERVAL`: how often the database is probed for health.
    pub health_probe_interval: Duration,
    /// `SHUTDOWN_TIMEOUT`: how long in-flight requests may drain on shutdown.
    pub shutdown_timeout: Duration,
    /// `GRPC_MAX_IN_FLIGHT`, `GRPC_REQUEST_TIMEOUT`: load shedding and the
    /// request deadline of the gRPC server.
    pub limits: ServerLimits,
    /// `LOG_FORMAT`: `text` or `json`.
    pub log_format: LogFormat,
    /// `RUST_LOG`: which log lines are written.
    pub log_filter: String,
    /// `NATS_URL`: the NATS server(s) the outbox relay publishes to.
    pub nats_url: String,
    /// `OUTBOX_RELAY`: run the outbox relay in this process.
    pub outbox_relay: bool,
    /// `STATUS_CONSUMER`: consume the processor's verdicts in this process.
    pub status_consumer: bool,
    /// The stream: `ORDERS`, duplicate window `OUTBOX_DEDUP_WINDOW`,
    /// replicas `NATS_STREAM_REPLICAS`.
    pub stream: StreamSettings,
    /// `OUTBOX_BATCH`: most rows a relay actor claims per round.
    pub outbox_batch: u32,
    /// `OUTBOX_POLL_INTERVAL`: longest idle wait between relay polls.
    pub outbox_poll_interval: Duration,
    /// `OUTBOX_MIN_POLL_INTERVAL`: shortest wait between polls while rows
    /// keep coming (a local commit's nudge does not wait at all).
    pub outbox_min_poll_interval: Duration,
    /// `OUTBOX_LEASE_TTL`: partition lease lifetime; a dead replica's
    /// partitions are taken over within it.
    pub outbox_lease_ttl: Duration,
    /// `INBOX_RETENTION` (at least `OUTBOX_DEDUP_WINDOW`),
    /// `INBOX_RETENTION_INTERVAL`: the sweep of the status consumer's inbox.
    pub inbox_retention: ordo_inbox::RetentionConfig,
}

/// Defaults that run on one machine with no configuration at all.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/ordo";
/// Log filter when `RUST_LOG` is unset: our lines at info, chatty libraries at warn.
pub const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn,sea_orm=warn,h2=warn,tower=warn";

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            database_max_connections: 16,
            grpc_listen_addr: SocketAddr::from(([0, 0, 0, 0], 50051)),
            outbox_partitions: PartitionCount::default(),
            migrate: true,
            health_probe_interval: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(10),
            limits: ServerLimits::default(),
            log_format: LogFormat::Text,
            log_filter: DEFAULT_LOG_FILTER.to_owned(),
            nats_url: "nats://127.0.0.1:4222".to_owned(),
            outbox_relay: true,
            status_consumer: true,
            stream: StreamSettings::default(),
            outbox_batch: 256,
            outbox_poll_interval: Duration::from_secs(1),
            outbox_min_poll_interval: Duration::from_millis(5),
            outbox_lease_ttl: Duration::from_secs(10),
            inbox_retention: ordo_inbox::RetentionConfig {
                owner: ordo_outbox::config::default_owner(),
                ..Default::default()
            },
        }
    }
}

impl Settings {
    /// The outbox relay's configuration.
    pub fn relay_config(&self) -> ordo_outbox::RelayConfig {
        let mut config = ordo_outbox::RelayConfig::new(&self.database_url, &self.nats_url);
        config.stream = self.stream.clone();
        config.partitions = self.outbox_partitions;
        config.batch_size = self.outbox_batch;
        config.poll_interval = self.outbox_poll_interval;
        config.min_poll_interval = self.outbox_min_poll_interval.min(self.outbox_poll_interval);
        config.lease_ttl = self.outbox_lease_ttl;
        config
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (name → value), defaults for the rest.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let defaults = Self::default();
        let env = Lookup(&lookup);
        let settings = Self {
            database_url: env
                .parse("DATABASE_URL", "a postgres:// URL", |raw| {
                    (raw.starts_with("postgres://") || raw.starts_with("postgresql://"))
                        .then(|| raw.to_owned())
                })?
                .unwrap_or(defaults.database_url),
            database_max_connections: env
                .parse("DATABASE_MAX_CONNECTIONS", "a whole number 1-1000", |raw| {
                    raw.parse().ok().filter(|n| (1..=1000).contains(n))
                })?
                .unwrap_or(defaults.database_max_connections),
            grpc_listen_addr: env
                .parse("GRPC_LISTEN_ADDR", "host:port, e.g. 0.0.0.0:50051", |raw| {
                    raw.parse().ok()
                })?
                .unwrap_or(defaults.grpc_listen_addr),
            outbox_partitions: env
                .parse("OUTBOX_PARTITIONS", "a whole number 1-4096", |raw| {
                    raw.parse().ok().and_then(|n| PartitionCount::new(n).ok())
                })?
                .unwrap_or(defaults.outbox_partitions),
            migrate: env
                .parse("MIGRATE", "true or false", parse_bool)?
                .unwrap_or(defaults.migrate),
            health_probe_interval: env
                .parse(
                    "HEALTH_PROBE_INTERVAL",
                    "a duration such as 500ms or 2s",
                    parse_duration,
                )?
                .unwrap_or(defaults.health_probe_interval),
            limits: ServerLimits::from_env(&env)?,
            shutdown_timeout: env
                .parse("SHUTDOWN_TIMEOUT", "a duration such as 10s", parse_duration)?
                .unwrap_or(defaults.shutdown_timeout),
            log_format: env.log_format()?.unwrap_or(defaults.log_format),
            log_filter: env.log_filter(&defaults.log_filter)?,
            nats_url: env
                .parse("NATS_URL", "a nats:// URL", |raw| {
                    raw.split(',')
                        .all(|url| {
                            url.trim().starts_with("nats://") || url.trim().starts_with("tls://")
                        })
                        .then(|| raw.to_owned())
                })?
                .unwrap_or(defaults.nats_url),
            outbox_relay: env
                .parse("OUTBOX_RELAY", "true or false", parse_bool)?
                .unwrap_or(defaults.outbox_relay),
            status_consumer: env
                .parse("STATUS_CONSUMER", "true or false", parse_bool)?
                .unwrap_or(defaults.status_consumer),
            stream: StreamSettings {
                duplicate_window: env
                    .parse(
                        "OUTBOX_DEDUP_WINDOW",
                        "a duration such as 2m",
                        parse_duration,
                    )?
                    .unwrap_or(defaults.stream.duplicate_window),
                replicas: env
                    .parse("NATS_STREAM_REPLICAS", "1, 3 or 5", |raw| {
                        raw.parse().ok().filter(|n| [1, 3, 5].contains(n))
                    })?
                    .unwrap_or(defaults.stream.replicas),
                ..defaults.stream
            },
            outbox_batch: env
                .parse("OUTBOX_BATCH", "a whole number 1-10000", |raw| {
                    raw.parse().ok().filter(|n| (1..=10_000).contains(n))
                })?
                .unwrap_or(defaults.outbox_batch),
            outbox_poll_interval: env
                .parse(
                    "OUTBOX_POLL_INTERVAL",
                    "a duration such as 1s",
                    parse_duration,
                )?
                .unwrap_or(defaults.outbox_poll_interval),
            outbox_min_poll_interval: env
                .parse(
                    "OUTBOX_MIN_POLL_INTERVAL",
                    "a duration such as 5ms",
                    parse_duration,
                )?
                .unwrap_or(defaults.outbox_min_poll_interval),
            outbox_lease_ttl: env
                .parse(
                    "OUTBOX_LEASE_TTL",
                    "a duration of at least 1s, such as 10s",
                    |raw| parse_duration(raw).filter(|ttl| *ttl >= Duration::from_secs(1)),
                )?
                .unwrap_or(defaults.outbox_lease_ttl),
            inbox_retention: ordo_inbox::RetentionConfig {
                horizon: env.duration(
                    "INBOX_RETENTION",
                    Duration::ZERO,
                    defaults.inbox_retention.horizon,
                )?,
                interval: env.duration(
                    "INBOX_RETENTION_INTERVAL",
                    Duration::ZERO,
                    defaults.inbox_retention.interval,
                )?,
                ..defaults.inbox_retention
            },
        };
        if settings.inbox_retention.horizon < settings.stream.duplicate_window {
            return Err(SettingsError {
                name: "INBOX_RETENTION",
                value: humantime::format_duration(settings.inbox_retention.horizon).to_string(),
                expected: format!(
                    "at least OUTBOX_DEDUP_WINDOW ({}): a late duplicate must still find its inbox row",
                    humantime::format_duration(settings.stream.duplicate_window)
                ),
            });
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::from_lookup(ordo_service_kit::env::lookup_from(pairs))
    }

    #[test]
    fn runs_with_no_configuration() {
        let settings = settings(&[]).unwrap();
        assert_eq!(settings.grpc_listen_addr.to_string(), "0.0.0.0:50051");
        assert_eq!(settings.outbox_partitions.get(), 16);
        assert!(settings.migrate);
        assert_eq!(settings.database_url, DEFAULT_DATABASE_URL);
    }

    #[test]
    fn reads_every_setting() {
        let settings = settings(&[
            ("DATABASE_URL", "postgresql://u@db/x"),
            ("GRPC_LISTEN_ADDR", "127.0.0.1:0"),
            ("OUTBOX_PARTITIONS", "32"),
            ("MIGRATE", "false"),
            ("HEALTH_PROBE_INTERVAL", "250ms"),
            ("LOG_FORMAT", "JSON"),
            ("NATS_URL", "nats://a:4222,nats://b:4222"),
            ("OUTBOX_DEDUP_WINDOW", "5m"),
            ("OUTBOX_BATCH", "64"),
            ("OUTBOX_LEASE_TTL", "3s"),
            ("NATS_STREAM_REPLICAS", "3"),
        ])
        .unwrap();
        assert_eq!(settings.database_url, "postgresql://u@db/x");
        assert_eq!(settings.grpc_listen_addr.port(), 0);
        assert_eq!(settings.outbox_partitions.get(), 32);
        assert!(!settings.migrate);
        assert_eq!(settings.health_probe_interval, Duration::from_millis(250));
        assert_eq!(settings.log_format, LogFormat::Json);
        let relay = settings.relay_config();
        assert_eq!(relay.nats_url, "nats://a:4222,nats://b:4222");
        assert_eq!(relay.stream.name, "ORDERS");
        assert_eq!(relay.stream.duplicate_window, Duration::from_secs(300));
        assert_eq!(relay.stream.replicas, 3);
        assert_eq!(relay.batch_size, 64);
        assert_eq!(relay.lease_ttl, Duration::from_secs(3));
        assert_eq!(relay.partitions.get(), 32);
    }

    #[test]
    fn a_bad_setting_is_named_in_one_line() {
        let err = settings(&[("OUTBOX_PARTITIONS", "0")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid OUTBOX_PARTITIONS="0": expected a whole number 1-4096"#
        );
        assert_eq!(
            settings(&[("MIGRATE", "maybe")]).unwrap_err().name,
            "MIGRATE"
        );
        assert_eq!(
            settings(&[("DATABASE_URL", "mysql://x")]).unwrap_err().name,
            "DATABASE_URL"
        );
        assert_eq!(
            settings(&[("GRPC_LISTEN_ADDR", "nowhere")])
                .unwrap_err()
                .name,
            "GRPC_LISTEN_ADDR"
        );
        for name in [
            "RUST_LOG",
            "OUTBOX_BATCH",
            "OUTBOX_LEASE_TTL",
            "NATS_STREAM_REPLICAS",
            "NATS_URL",
            "OUTBOX_DEDUP_WINDOW",
        ] {
            let bad = if name == "RUST_LOG" {
                "info,[unclosed"
            } else {
                "0"
            };
            assert_eq!(settings(&[(name, bad)]).unwrap_err().name, name);
        }
    }

    #[test]
    fn inbox_retention_must_outlast_the_duplicate_window() {
        let err =
            settings(&[("OUTBOX_DEDUP_WINDOW", "10m"), ("INBOX_RETENTION", "5m")]).unwrap_err();
        assert_eq!(err.name, "INBOX_RETENTION");
        let ok = settings(&[("OUTBOX_DEDUP_WINDOW", "10m"), ("INBOX_RETENTION", "1h")]).unwrap();
        assert_eq!(ok.inbox_retention.horizon, Duration::from_secs(3600));
    }

    #[test]
    fn passwords_never_reach_the_error() {
        let err = settings(&[("DATABASE_URL", "mysql://ordo:s3cret@db/ordo")]).unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(
            err.to_string().contains("mysql://ordo:***@db/ordo"),
            "{err}"
        );
    }
}
