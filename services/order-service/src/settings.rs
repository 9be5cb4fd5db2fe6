//! Configuration, read from the environment in one place and handed around
//! as a typed struct. Tests build [`Settings`] directly and never touch the
//! process environment. [`reference`] declares every setting read here,
//! with its default and meaning.

pub mod reference;

use std::net::SocketAddr;
use std::time::Duration;

use ordo_inbox::RetentionConfig;
use ordo_outbox::RelayConfig;
use ordo_service_kit::Lookup;
use ordo_service_kit::group_commit::{self, GroupCommitConfig};
use ordo_service_kit::serving::ServerLimits;
pub use ordo_service_kit::{LogFormat, SettingsError};
pub use ordo_telemetry::TelemetryConfig;

/// Everything the order service needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `DATABASE_URL`: the PostgreSQL database.
    pub database_url: String,
    /// `DATABASE_MAX_CONNECTIONS`: pool size.
    pub database_max_connections: u32,
    /// `GRPC_LISTEN_ADDR`: where gRPC is served; port 0 picks a free port.
    pub grpc_listen_addr: SocketAddr,
    /// `MIGRATE`: apply pending migrations at start-up.
    pub migrate: bool,
    /// `HEALTH_PROBE_INTERVAL`: how often dependencies are probed for health.
    pub health_probe_interval: Duration,
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
    /// `OTEL_SERVICE_NAME` (default `order-service`): logs and traces.
    pub telemetry: TelemetryConfig,
    /// `METRICS_LISTEN_ADDR` (default `0.0.0.0:9101`; `off` for none):
    /// where Prometheus scrapes `/metrics`.
    pub metrics_listen_addr: Option<SocketAddr>,
    /// The outbox relay and the stream: `NATS_URL`, `OUTBOX_PARTITIONS`,
    /// `OUTBOX_BATCH`, `OUTBOX_POLL_INTERVAL`, `OUTBOX_MIN_POLL_INTERVAL`,
    /// `OUTBOX_LEASE_TTL`, `OUTBOX_DEDUP_WINDOW`, `NATS_STREAM_REPLICAS`,
    /// `NATS_PUBLISH_TIMEOUT`, `NATS_BREAKER_*`. Its database is `database_url`.
    pub relay: RelayConfig,
    /// `OUTBOX_RELAY`: run the outbox relay in this process.
    pub outbox_relay: bool,
    /// `STATUS_CONSUMER`: consume the processor's verdicts in this process.
    pub status_consumer: bool,
    /// `STATUS_CONSUMER_CONCURRENCY`: verdicts handled at once.
    pub status_concurrency: usize,
    /// `STATUS_SETTLE_BATCH` (1 turns batching off): verdicts settled in
    /// one transaction at most, two transactions in flight at once.
    pub status_settle_batch: GroupCommitConfig,
    /// `ORDER_SERVICE_ADMIN_TOKEN` (named `admin`) and
    /// `ORDER_SERVICE_ADMIN_TOKENS` (`name:token,…`): the bearer tokens of
    /// the admin RPCs (the outbox's parked events); none disables them.
    pub admin_tokens: Vec<(String, ordo_service_kit::admin::Secret)>,
    /// `INBOX_RETENTION` (at least `OUTBOX_DEDUP_WINDOW`),
    /// `INBOX_RETENTION_INTERVAL`: the sweep of the status consumer's inbox.
    pub inbox_retention: RetentionConfig,
    /// `GROUP_COMMIT_MAX` (1 turns batching off), `GROUP_COMMIT_WRITERS`,
    /// `GROUP_COMMIT_LINGER` (also the verdicts' linger): PlaceOrder and
    /// CancelOrder calls that arrive while a commit is in flight are written
    /// together in the next transaction.
    pub group_commit: GroupCommitConfig,
    /// `IDEMPOTENCY_KEY_RETENTION` (default 7 days): PlaceOrder's
    /// idempotency keys are forgotten after this (a retry later places a new
    /// order); swept every `INBOX_RETENTION_INTERVAL`.
    pub idempotency_key_retention: RetentionConfig,
}

/// Defaults that run on one machine with no configuration at all.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/ordo";
/// Log filter when `RUST_LOG` is unset: our lines at info, chatty libraries at warn.
pub const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn,sea_orm=warn,h2=warn,tower=warn";
const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

impl Default for Settings {
    fn default() -> Self {
        let owner = ordo_outbox::config::default_owner();
        Self {
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            database_max_connections: 16,
            grpc_listen_addr: SocketAddr::from(([0, 0, 0, 0], 50051)),
            migrate: true,
            health_probe_interval: Duration::from_secs(1),
            shutdown: ordo_service_kit::shutdown::ShutdownPlan::default(),
            limits: ServerLimits::default(),
            grpc_tls: None,
            telemetry: TelemetryConfig::new("order-service", DEFAULT_LOG_FILTER),
            metrics_listen_addr: Some(SocketAddr::from(([0, 0, 0, 0], 9101))),
            relay: RelayConfig {
                owner: owner.clone(),
                ..RelayConfig::new(DEFAULT_DATABASE_URL, DEFAULT_NATS_URL)
            },
            outbox_relay: true,
            status_consumer: true,
            status_concurrency: 16,
            status_settle_batch: GroupCommitConfig::batching(64, 2),
            admin_tokens: Vec::new(),
            group_commit: GroupCommitConfig::batching(64, 2),
            idempotency_key_retention: RetentionConfig {
                horizon: Duration::from_secs(7 * 24 * 3600),
                owner: owner.clone(),
                ..RetentionConfig::default()
            },
            inbox_retention: RetentionConfig {
                owner,
                ..RetentionConfig::default()
            },
        }
    }
}

impl Settings {
    /// Every admin token with its name.
    pub fn admin_tokens(&self) -> Vec<(&str, &str)> {
        self.admin_tokens
            .iter()
            .map(|(name, token)| (name.as_str(), token.expose()))
            .collect()
    }

    /// The outbox relay's configuration, over this service's database.
    pub fn relay_config(&self) -> RelayConfig {
        RelayConfig {
            database_url: self.database_url.clone(),
            min_poll_interval: self.relay.min_poll_interval.min(self.relay.poll_interval),
            ..self.relay.clone()
        }
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (name → value), defaults for the rest.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let defaults = Self::default();
        let env = Lookup(&lookup);
        let relay = ordo_outbox::settings::relay_config_from(
            &env,
            RelayConfig {
                nats_url: env.nats_url("NATS_URL", &defaults.relay.nats_url)?,
                ..defaults.relay
            },
        )?;
        let inbox_retention = RetentionConfig {
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
        };
        let idempotency_key_retention = RetentionConfig {
            horizon: env.duration(
                "IDEMPOTENCY_KEY_RETENTION",
                Duration::from_secs(60),
                defaults.idempotency_key_retention.horizon,
            )?,
            ..inbox_retention.clone()
        };
        if inbox_retention.horizon < relay.stream.duplicate_window {
            return Err(SettingsError {
                name: "INBOX_RETENTION".into(),
                value: humantime::format_duration(inbox_retention.horizon).to_string(),
                expected: format!(
                    "at least OUTBOX_DEDUP_WINDOW ({}): a late duplicate must still find its inbox row",
                    humantime::format_duration(relay.stream.duplicate_window)
                ),
            });
        }
        let mut admin_tokens: Vec<(String, ordo_service_kit::admin::Secret)> = env
            .parse(
                "ORDER_SERVICE_ADMIN_TOKEN",
                "a token of at least 16 characters",
                |raw| (raw.len() >= 16).then(|| vec![("admin".to_owned(), raw.into())]),
            )?
            .unwrap_or_default();
        admin_tokens.extend(
            env.parse(
                "ORDER_SERVICE_ADMIN_TOKENS",
                ordo_service_kit::admin::NAMED_TOKENS_EXPECTED,
                ordo_service_kit::admin::parse_named_tokens,
            )?
            .unwrap_or_default(),
        );
        let database_max_connections = env.number(
            "DATABASE_MAX_CONNECTIONS",
            1..=1000,
            defaults.database_max_connections,
        )?;
        let linger = env
            .parse(
                "GROUP_COMMIT_LINGER",
                group_commit::LINGER_EXPECTED,
                group_commit::parse_linger,
            )?
            .unwrap_or(defaults.group_commit.linger);
        let group_commit = GroupCommitConfig {
            max_batch: env.number("GROUP_COMMIT_MAX", 1..=100, defaults.group_commit.max_batch)?,
            writers: env.number(
                "GROUP_COMMIT_WRITERS",
                1..=database_max_connections.max(1) as usize,
                defaults
                    .group_commit
                    .writers
                    .min(database_max_connections as usize),
            )?,
            linger,
        };
        Ok(Self {
            admin_tokens,
            group_commit,
            idempotency_key_retention,
            database_url: env.postgres_url("DATABASE_URL", &defaults.database_url)?,
            database_max_connections,
            grpc_listen_addr: env
                .parse("GRPC_LISTEN_ADDR", "host:port, e.g. 0.0.0.0:50051", |raw| {
                    raw.parse().ok()
                })?
                .unwrap_or(defaults.grpc_listen_addr),
            migrate: env.flag("MIGRATE", defaults.migrate)?,
            health_probe_interval: env.duration(
                "HEALTH_PROBE_INTERVAL",
                Duration::ZERO,
                defaults.health_probe_interval,
            )?,
            shutdown: ordo_service_kit::shutdown::ShutdownPlan::from_env(&env, defaults.shutdown)?,
            limits: ServerLimits::from_env(&env)?,
            grpc_tls: ordo_service_kit::tls::ServerTls::from_env(&env)?,
            telemetry: ordo_service_kit::telemetry::telemetry_from(
                &env,
                &defaults.telemetry.service_name,
                &defaults.telemetry.log_filter,
            )?,
            metrics_listen_addr: ordo_service_kit::telemetry::metrics_addr_from(
                &env,
                defaults.metrics_listen_addr,
            )?,
            relay,
            outbox_relay: env.flag("OUTBOX_RELAY", defaults.outbox_relay)?,
            status_consumer: env.flag("STATUS_CONSUMER", defaults.status_consumer)?,
            status_concurrency: env.number(
                "STATUS_CONSUMER_CONCURRENCY",
                1..=1024,
                defaults.status_concurrency,
            )?,
            status_settle_batch: GroupCommitConfig {
                max_batch: env.number(
                    "STATUS_SETTLE_BATCH",
                    1..=1024,
                    defaults.status_settle_batch.max_batch,
                )?,
                linger,
                ..defaults.status_settle_batch
            },
            inbox_retention,
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
    fn runs_with_no_configuration() {
        let settings = settings(&[]).unwrap();
        assert_eq!(settings.grpc_listen_addr.to_string(), "0.0.0.0:50051");
        assert_eq!(settings.relay.partitions.get(), 16);
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
            ("NATS_BREAKER_COOL_DOWN", "7s"),
        ])
        .unwrap();
        assert_eq!(settings.database_url, "postgresql://u@db/x");
        assert_eq!(settings.grpc_listen_addr.port(), 0);
        assert_eq!(settings.relay.partitions.get(), 32);
        assert!(!settings.migrate);
        assert_eq!(settings.health_probe_interval, Duration::from_millis(250));
        assert_eq!(settings.telemetry.log_format, LogFormat::Json);
        let relay = settings.relay_config();
        assert_eq!(relay.nats_url, "nats://a:4222,nats://b:4222");
        assert_eq!(relay.stream.name, "ORDERS");
        assert_eq!(relay.stream.duplicate_window, Duration::from_secs(300));
        assert_eq!(relay.stream.replicas, 3);
        assert_eq!(relay.batch_size, 64);
        assert_eq!(relay.lease_ttl, Duration::from_secs(3));
        assert_eq!(relay.partitions.get(), 32);
        assert_eq!(relay.database_url, "postgresql://u@db/x");
        assert_eq!(relay.publish_breaker.cool_down, Duration::from_secs(7));
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
            "NATS_BREAKER_FAILURE_RATE",
            "GRPC_MAX_IN_FLIGHT",
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

    #[test]
    fn admin_tokens_and_the_database_url_may_come_from_files() {
        let dir = std::env::temp_dir().join(format!("ordo-order-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, value: &str| {
            let path = dir.join(name);
            std::fs::write(&path, format!("{value}\n")).unwrap();
            path.display().to_string()
        };
        let url = file("db", "postgres://ordo:pw@db/ordo?sslmode=verify-full");
        let token = file("token", "order-admin-token-0123");
        let tokens = file("tokens", "ops:ops-token-0123456789");
        let settings = Settings::from_lookup(ordo_service_kit::env::lookup_from(&[
            ("DATABASE_URL_FILE", &url),
            ("ORDER_SERVICE_ADMIN_TOKEN_FILE", &token),
            ("ORDER_SERVICE_ADMIN_TOKENS_FILE", &tokens),
        ]))
        .unwrap();
        assert_eq!(
            settings.database_url,
            "postgres://ordo:pw@db/ordo?sslmode=verify-full"
        );
        assert_eq!(
            settings.admin_tokens(),
            [
                ("admin", "order-admin-token-0123"),
                ("ops", "ops-token-0123456789")
            ]
        );
        assert!(!format!("{settings:?}").contains("admin-token-0123"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
