//! Configuration, read from the environment in one place and handed around
//! as a typed struct. Tests build [`Settings`] directly. [`reference`]
//! declares every setting read here, with its default and meaning.

pub mod reference;

use std::net::SocketAddr;
use std::time::Duration;

use ordo_service_kit::serving::ServerLimits;

use ordo_inbox::RetentionConfig;
use ordo_outbox::RelayConfig;
use ordo_service_kit::Lookup;
use ordo_service_kit::group_commit::{self, GroupCommitConfig};
pub use ordo_service_kit::{LogFormat, SettingsError};
pub use ordo_telemetry::TelemetryConfig;

use ordo_resilience::{Backoff, BreakerConfig};
use ordo_service_kit::resilience::{BackoffVars, BreakerVars, backoff_from, breaker_from};

/// Everything the processor needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `DATABASE_URL`: the processor's own PostgreSQL database.
    pub database_url: String,
    /// `DATABASE_MAX_CONNECTIONS`: pool size.
    pub database_max_connections: u32,
    /// `GRPC_LISTEN_ADDR`: where gRPC is served; port 0 picks a free port.
    pub grpc_listen_addr: SocketAddr,
    /// `MIGRATE`: apply pending migrations at start-up.
    pub migrate: bool,
    /// `SHUTDOWN_DRAIN_DELAY`, `SHUTDOWN_TIMEOUT`: how a stop drains
    /// (serving on while NOT_SERVING, then one deadline for everything).
    pub shutdown: ordo_service_kit::shutdown::ShutdownPlan,
    /// `HEALTH_PROBE_INTERVAL`: how often dependencies are probed for health.
    pub health_probe_interval: Duration,
    /// `GRPC_MAX_IN_FLIGHT`, `GRPC_REQUEST_TIMEOUT`: load shedding and the
    /// request deadline of the gRPC server.
    pub limits: ServerLimits,
    /// `GRPC_TLS_CERT_FILE`, `GRPC_TLS_KEY_FILE`, `GRPC_TLS_CLIENT_CA_FILE`,
    /// `GRPC_TLS_RELOAD_INTERVAL`: TLS (mutual with a client CA) instead of
    /// plaintext.
    pub grpc_tls: Option<ordo_service_kit::tls::ServerTls>,
    /// `LOG_FORMAT`, `RUST_LOG`, `OTEL_EXPORTER_OTLP_ENDPOINT`,
    /// `OTEL_SERVICE_NAME` (default `processor`): logs and traces.
    pub telemetry: TelemetryConfig,
    /// `METRICS_LISTEN_ADDR` (default `0.0.0.0:9102`; `off` for none):
    /// where Prometheus scrapes `/metrics`.
    pub metrics_listen_addr: Option<SocketAddr>,
    /// `NATS_URL`; the stream, `OUTBOX_*` and `NATS_STREAM_REPLICAS`: the
    /// relay of the processor's own outbox (see the order service).
    pub relay: RelayConfig,
    /// `OUTBOX_RELAY`: run the outbox relay in this process.
    pub outbox_relay: bool,
    /// `PROCESSOR_CONSUMER`: consume orders in this process.
    pub consumer: bool,
    /// How messages are consumed and retried (`PROCESSOR_*`).
    pub consuming: ConsumerSettings,
    /// `PAYMENTS_*`: the payment provider and how it is called.
    pub payments: PaymentsSettings,
    /// `PROCESSOR_ADMIN_TOKEN`: the bearer token of the dead-letter RPCs,
    /// named `admin` in the audit trail; unset (with no
    /// `PROCESSOR_ADMIN_TOKENS`) disables them.
    pub admin_token: Option<ordo_service_kit::admin::Secret>,
    /// `PROCESSOR_ADMIN_TOKENS`: more tokens, each with the name the audit
    /// trail records (`name:token`, comma-separated).
    pub admin_tokens: Vec<(String, ordo_service_kit::admin::Secret)>,
    /// `INBOX_RETENTION` (at least the stream's duplicate window),
    /// `INBOX_RETENTION_INTERVAL`: the inbox sweep.
    pub inbox_retention: RetentionConfig,
    /// `ERROR_HISTORY_RETENTION` (default 30 days): failed attempts are
    /// forgotten after this once their order's payment is settled (never
    /// while it is open, nor while its message waits as a dead letter);
    /// swept every `INBOX_RETENTION_INTERVAL`.
    pub error_history_retention: RetentionConfig,
}

/// How the durable consumers take and retry messages.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// `PROCESSOR_MAX_ATTEMPTS`: failed attempts (counted in the database,
    /// per message) before a message is dead-lettered.
    pub max_attempts: u32,
    /// `PROCESSOR_MAX_DELIVER`: JetStream's delivery cap, a backstop only
    /// (deliveries that fail nothing, such as deferrals, count there too);
    /// `unlimited` (the default) or a number above max attempts. A message
    /// on its last allowed delivery is settled or dead-lettered before it
    /// is let go, however long that takes.
    pub max_deliver: Option<u32>,
    /// `PROCESSOR_ACK_WAIT`: how long a delivery may go unacked before
    /// JetStream delivers it again (to any replica).
    pub ack_wait: Duration,
    /// `PROCESSOR_CONCURRENCY`: messages handled at once per replica.
    pub concurrency: usize,
    /// `PROCESSOR_SETTLE_BATCH` (1 turns batching off), `PROCESSOR_SETTLE_LINGER`: record writes and
    /// settlements that arrive together are written in one transaction,
    /// two transactions in flight at once.
    pub settle_batch: GroupCommitConfig,
    /// `PROCESSOR_BACKOFF` (kind, default full-jitter), `PROCESSOR_BACKOFF_BASE`,
    /// `PROCESSOR_BACKOFF_MAX`: the NAK delay after failed attempt n (full
    /// jitter: a random time up to base × 2^(n-1), capped).
    pub backoff: Backoff,
    /// `PROCESSOR_INSTANCE`: this replica's name in error histories.
    pub instance: String,
}

/// The payment provider and the call policy.
#[derive(Debug, Clone)]
pub struct PaymentsSettings {
    /// `PAYMENTS_URL`: `http://` (plaintext) or `https://` (TLS).
    pub url: String,
    /// `PAYMENTS_TLS_CA_FILE`, `PAYMENTS_TLS_CERT_FILE`, `PAYMENTS_TLS_KEY_FILE`,
    /// `PAYMENTS_TLS_SERVER_NAME`: how an https provider is checked, and the
    /// client certificate it may ask for.
    pub tls: ordo_proto::client::ClientTls,
    /// `PAYMENTS_TIMEOUT`: one call's deadline.
    pub timeout: Duration,
    /// `PAYMENTS_TRIES`: calls per attempt before the attempt fails.
    pub tries: u32,
    /// `PAYMENTS_RETRY_BACKOFF` (kind), `PAYMENTS_RETRY_BASE`,
    /// `PAYMENTS_RETRY_MAX`: backoff between tries.
    pub retry_backoff: Backoff,
    /// `PAYMENTS_RETRY_MAX_ELAPSED`: no try starts later than this after the first.
    pub retry_max_elapsed: Duration,
    /// `PAYMENTS_BREAKER_*`: the circuit breaker in front of the provider.
    pub breaker: BreakerConfig,
}

const PROCESSOR_BACKOFF: BackoffVars = BackoffVars {
    kind: "PROCESSOR_BACKOFF",
    base: "PROCESSOR_BACKOFF_BASE",
    max: "PROCESSOR_BACKOFF_MAX",
};
const PAYMENTS_RETRY_BACKOFF: BackoffVars = BackoffVars {
    kind: "PAYMENTS_RETRY_BACKOFF",
    base: "PAYMENTS_RETRY_BASE",
    max: "PAYMENTS_RETRY_MAX",
};
const PAYMENTS_BREAKER: BreakerVars = BreakerVars {
    window: "PAYMENTS_BREAKER_WINDOW",
    min_calls: "PAYMENTS_BREAKER_MIN_CALLS",
    failure_rate: "PAYMENTS_BREAKER_FAILURE_RATE",
    cool_down: "PAYMENTS_BREAKER_COOL_DOWN",
    half_open_probes: "PAYMENTS_BREAKER_HALF_OPEN_PROBES",
};

/// Defaults that run on one machine with no configuration at all.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/ordo_processor";
/// Log filter when `RUST_LOG` is unset.
pub const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn,sea_orm=warn,h2=warn,tower=warn";
const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

impl Default for Settings {
    fn default() -> Self {
        let instance = ordo_outbox::config::default_owner();
        Self {
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            database_max_connections: 16,
            grpc_listen_addr: SocketAddr::from(([0, 0, 0, 0], 50052)),
            migrate: true,
            shutdown: ordo_service_kit::shutdown::ShutdownPlan::default(),
            health_probe_interval: Duration::from_secs(1),
            limits: ServerLimits::default(),
            grpc_tls: None,
            telemetry: TelemetryConfig::new("processor", DEFAULT_LOG_FILTER),
            metrics_listen_addr: Some(SocketAddr::from(([0, 0, 0, 0], 9102))),
            relay: RelayConfig {
                owner: instance.clone(),
                ..RelayConfig::new(DEFAULT_DATABASE_URL, DEFAULT_NATS_URL)
            },
            outbox_relay: true,
            consumer: true,
            consuming: ConsumerSettings {
                max_attempts: 5,
                max_deliver: None,
                ack_wait: Duration::from_secs(30),
                concurrency: 32,
                settle_batch: GroupCommitConfig::batching(64, 2),
                backoff: Backoff::full_jitter(Duration::from_secs(1), Duration::from_secs(60)),
                instance: instance.clone(),
            },
            payments: PaymentsSettings {
                url: "http://127.0.0.1:50053".to_owned(),
                tls: ordo_proto::client::ClientTls::default(),
                timeout: Duration::from_secs(2),
                tries: 3,
                retry_backoff: Backoff::full_jitter(
                    Duration::from_millis(50),
                    Duration::from_millis(1000),
                ),
                retry_max_elapsed: Duration::from_secs(5),
                // A lone message failing every time (5 attempts of 3 tries,
                // spread over more than the window) is dead-lettered before
                // it can open the breaker; an outage under traffic opens it.
                breaker: BreakerConfig {
                    min_calls: 20,
                    ..BreakerConfig::default()
                },
            },
            admin_token: None,
            admin_tokens: Vec::new(),
            error_history_retention: RetentionConfig {
                horizon: Duration::from_secs(30 * 24 * 3600),
                owner: instance.clone(),
                ..RetentionConfig::default()
            },
            inbox_retention: RetentionConfig {
                owner: instance,
                ..RetentionConfig::default()
            },
        }
    }
}

impl Settings {
    /// Every admin token with its name (`PROCESSOR_ADMIN_TOKEN` is `admin`).
    pub fn admin_tokens(&self) -> Vec<(&str, &str)> {
        self.admin_token
            .iter()
            .map(|token| ("admin", token.expose()))
            .chain(
                self.admin_tokens
                    .iter()
                    .map(|(name, token)| (name.as_str(), token.expose())),
            )
            .collect()
    }

    /// The outbox relay's configuration, over the processor's database.
    pub fn relay_config(&self) -> RelayConfig {
        RelayConfig {
            database_url: self.database_url.clone(),
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
        let database_url = env.postgres_url("DATABASE_URL", &defaults.database_url)?;
        let nats_url = env.nats_url("NATS_URL", &defaults.relay.nats_url)?;
        let instance = env
            .parse("PROCESSOR_INSTANCE", "a name of 1-128 characters", |raw| {
                (raw.chars().count() <= 128).then(|| raw.to_owned())
            })?
            .unwrap_or(defaults.consuming.instance);
        let relay = ordo_outbox::settings::relay_config_from(
            &env,
            RelayConfig {
                database_url: database_url.clone(),
                nats_url,
                owner: instance.clone(),
                ..defaults.relay
            },
        )?;
        let payments_url = env.http_url("PAYMENTS_URL", &defaults.payments.url)?;
        let max_attempts = env.number("PROCESSOR_MAX_ATTEMPTS", 1..=100, 5)?;
        let max_deliver = env
            .parse(
                "PROCESSOR_MAX_DELIVER",
                "unlimited, or a whole number 2-100000",
                |raw| match raw {
                    "unlimited" => Some(None),
                    raw => raw
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (2..=100_000).contains(n))
                        .map(Some),
                },
            )?
            .flatten();
        if let Some(max_deliver) = max_deliver
            && max_deliver <= max_attempts
        {
            return Err(SettingsError {
                name: "PROCESSOR_MAX_DELIVER".into(),
                value: max_deliver.to_string(),
                expected: format!("more than PROCESSOR_MAX_ATTEMPTS ({max_attempts})"),
            });
        }
        let retention_horizon = env.duration(
            "INBOX_RETENTION",
            Duration::ZERO,
            defaults.inbox_retention.horizon,
        )?;
        if retention_horizon < relay.stream.duplicate_window {
            return Err(SettingsError {
                name: "INBOX_RETENTION".into(),
                value: format!("{retention_horizon:?}"),
                expected: format!(
                    "at least the stream's duplicate window ({:?}): a late duplicate must still find its inbox row",
                    relay.stream.duplicate_window
                ),
            });
        }
        Ok(Self {
            database_max_connections: env.number(
                "DATABASE_MAX_CONNECTIONS",
                1..=1000,
                defaults.database_max_connections,
            )?,
            grpc_listen_addr: env
                .parse("GRPC_LISTEN_ADDR", "host:port, e.g. 0.0.0.0:50052", |raw| {
                    raw.parse().ok()
                })?
                .unwrap_or(defaults.grpc_listen_addr),
            migrate: env.flag("MIGRATE", defaults.migrate)?,
            limits: ServerLimits::from_env(&env)?,
            grpc_tls: ordo_service_kit::tls::ServerTls::from_env(&env)?,
            health_probe_interval: env.duration(
                "HEALTH_PROBE_INTERVAL",
                Duration::ZERO,
                defaults.health_probe_interval,
            )?,
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
            outbox_relay: env.flag("OUTBOX_RELAY", defaults.outbox_relay)?,
            consumer: env.flag("PROCESSOR_CONSUMER", defaults.consumer)?,
            consuming: ConsumerSettings {
                max_attempts,
                max_deliver,
                ack_wait: env.duration(
                    "PROCESSOR_ACK_WAIT",
                    Duration::from_secs(1),
                    defaults.consuming.ack_wait,
                )?,
                concurrency: env.number(
                    "PROCESSOR_CONCURRENCY",
                    1..=1024,
                    defaults.consuming.concurrency,
                )?,
                settle_batch: GroupCommitConfig {
                    max_batch: env.number(
                        "PROCESSOR_SETTLE_BATCH",
                        1..=1024,
                        defaults.consuming.settle_batch.max_batch,
                    )?,
                    linger: env
                        .parse(
                            "PROCESSOR_SETTLE_LINGER",
                            group_commit::LINGER_EXPECTED,
                            group_commit::parse_linger,
                        )?
                        .unwrap_or(defaults.consuming.settle_batch.linger),
                    ..defaults.consuming.settle_batch
                },
                backoff: backoff_from(&env, PROCESSOR_BACKOFF, defaults.consuming.backoff)?,
                instance: instance.clone(),
            },
            payments: PaymentsSettings {
                tls: payments_tls(&env, &payments_url)?,
                url: payments_url,
                timeout: env.duration(
                    "PAYMENTS_TIMEOUT",
                    Duration::ZERO,
                    defaults.payments.timeout,
                )?,
                tries: env.number("PAYMENTS_TRIES", 1..=10, defaults.payments.tries)?,
                retry_backoff: backoff_from(
                    &env,
                    PAYMENTS_RETRY_BACKOFF,
                    defaults.payments.retry_backoff,
                )?,
                retry_max_elapsed: env.duration(
                    "PAYMENTS_RETRY_MAX_ELAPSED",
                    Duration::ZERO,
                    defaults.payments.retry_max_elapsed,
                )?,
                breaker: breaker_from(&env, PAYMENTS_BREAKER, defaults.payments.breaker)?,
            },
            admin_token: env.parse(
                "PROCESSOR_ADMIN_TOKEN",
                "a token of at least 16 characters",
                |raw| (raw.len() >= 16).then(|| raw.into()),
            )?,
            admin_tokens: env
                .parse(
                    "PROCESSOR_ADMIN_TOKENS",
                    ordo_service_kit::admin::NAMED_TOKENS_EXPECTED,
                    ordo_service_kit::admin::parse_named_tokens,
                )?
                .unwrap_or_default(),
            error_history_retention: RetentionConfig {
                horizon: env.duration(
                    "ERROR_HISTORY_RETENTION",
                    Duration::from_secs(60),
                    defaults.error_history_retention.horizon,
                )?,
                interval: env.duration(
                    "INBOX_RETENTION_INTERVAL",
                    Duration::ZERO,
                    defaults.inbox_retention.interval,
                )?,
                owner: instance.clone(),
                ..defaults.error_history_retention
            },
            inbox_retention: RetentionConfig {
                horizon: retention_horizon,
                interval: env.duration(
                    "INBOX_RETENTION_INTERVAL",
                    Duration::ZERO,
                    defaults.inbox_retention.interval,
                )?,
                owner: instance,
                ..defaults.inbox_retention
            },
            database_url,
            relay,
        })
    }
}

/// `PAYMENTS_TLS_*`, which only an `https://` `url` may use.
fn payments_tls<F: Fn(&str) -> Option<String>>(
    env: &Lookup<'_, F>,
    url: &str,
) -> Result<ordo_proto::client::ClientTls, SettingsError> {
    let tls = ordo_proto::client::ClientTls {
        ca_file: env.file("PAYMENTS_TLS_CA_FILE")?,
        cert_file: env.file("PAYMENTS_TLS_CERT_FILE")?,
        key_file: env.file("PAYMENTS_TLS_KEY_FILE")?,
        server_name: env.parse(
            "PAYMENTS_TLS_SERVER_NAME",
            "a DNS name the provider's certificate carries",
            |raw| Some(raw.to_owned()),
        )?,
    };
    if tls.is_set() && !url.starts_with("https://") {
        return Err(SettingsError::new(
            "PAYMENTS_URL",
            url,
            "an https:// URL: PAYMENTS_TLS_* are set",
        ));
    }
    if tls.cert_file.is_some() != tls.key_file.is_some() {
        return Err(SettingsError::new(
            "PAYMENTS_TLS_KEY_FILE",
            "",
            "both PAYMENTS_TLS_CERT_FILE and PAYMENTS_TLS_KEY_FILE, or neither",
        ));
    }
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use ordo_service_kit::env::lookup_from;

    use super::*;

    #[test]
    fn defaults_run_on_one_machine() {
        let settings = Settings::from_lookup(lookup_from(&[])).unwrap();
        assert_eq!(settings.grpc_listen_addr.port(), 50052);
        assert_eq!(settings.payments.url, "http://127.0.0.1:50053");
        assert_eq!(settings.consuming.max_attempts, 5);
        assert_eq!(settings.consuming.max_deliver, None);
        let capped =
            Settings::from_lookup(lookup_from(&[("PROCESSOR_MAX_DELIVER", "50")])).unwrap();
        assert_eq!(capped.consuming.max_deliver, Some(50));
        assert!(settings.admin_token.is_none());
        assert!(settings.admin_tokens().is_empty());
        let named = Settings::from_lookup(lookup_from(&[
            ("PROCESSOR_ADMIN_TOKEN", "0123456789abcdef"),
            (
                "PROCESSOR_ADMIN_TOKENS",
                "alice:alice-0123456789ab, bob:bob-0123456789abcd",
            ),
        ]))
        .unwrap();
        assert_eq!(
            named.admin_tokens(),
            [
                ("admin", "0123456789abcdef"),
                ("alice", "alice-0123456789ab"),
                ("bob", "bob-0123456789abcd")
            ]
        );
        assert_eq!(settings.relay.database_url, settings.database_url);
    }

    #[test]
    fn bad_values_are_named() {
        for (name, value) in [
            ("PROCESSOR_MAX_ATTEMPTS", "0"),
            ("PAYMENTS_URL", "127.0.0.1:50053"),
            ("PROCESSOR_ADMIN_TOKEN", "short"),
            ("PROCESSOR_BACKOFF_BASE", "soon"),
            ("PROCESSOR_MAX_DELIVER", "forever"),
            ("PROCESSOR_ADMIN_TOKENS", "alice"),
            ("PROCESSOR_ADMIN_TOKENS", "alice:short"),
            ("PROCESSOR_ADMIN_TOKENS", "al ice:0123456789abcdef"),
        ] {
            let err = Settings::from_lookup(lookup_from(&[(name, value)])).unwrap_err();
            assert_eq!(err.name, name);
        }
    }

    #[test]
    fn retention_must_outlast_the_duplicate_window() {
        let err = Settings::from_lookup(lookup_from(&[
            ("OUTBOX_DEDUP_WINDOW", "10m"),
            ("INBOX_RETENTION", "5m"),
        ]))
        .unwrap_err();
        assert_eq!(err.name, "INBOX_RETENTION");
        let err = Settings::from_lookup(lookup_from(&[
            ("PROCESSOR_MAX_ATTEMPTS", "10"),
            ("PROCESSOR_MAX_DELIVER", "10"),
        ]))
        .unwrap_err();
        assert_eq!(err.name, "PROCESSOR_MAX_DELIVER");
    }

    /// Every secret the processor reads can come from a file instead.
    #[test]
    fn every_secret_may_come_from_a_file() {
        let dir =
            std::env::temp_dir().join(format!("ordo-processor-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, value: &str| {
            let path = dir.join(name);
            std::fs::write(&path, format!("{value}\n")).unwrap();
            path.display().to_string()
        };
        let url = "postgres://ordo:pw@db:5432/ordo_processor?sslmode=require";
        let env = [
            ("DATABASE_URL_FILE", file("db", url)),
            (
                "PROCESSOR_ADMIN_TOKEN_FILE",
                file("token", "token-from-a-file-0123"),
            ),
            (
                "PROCESSOR_ADMIN_TOKENS_FILE",
                file("tokens", "ops:ops-token-0123456789"),
            ),
            ("NATS_USER", "ordo".to_owned()),
            ("NATS_PASSWORD_FILE", file("nats-password", "nats-password")),
            (
                "OTEL_EXPORTER_OTLP_HEADERS_FILE",
                file("headers", "api-key=k3y"),
            ),
        ];
        let pairs: Vec<(&str, &str)> = env
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let settings = Settings::from_lookup(lookup_from(&pairs)).unwrap();
        assert_eq!(settings.database_url, url);
        assert_eq!(settings.relay.database_url, url);
        assert_eq!(
            settings.admin_tokens(),
            [
                ("admin", "token-from-a-file-0123"),
                ("ops", "ops-token-0123456789")
            ]
        );
        assert_eq!(
            settings.relay.nats_security.credential,
            Some(ordo_service_kit::nats::NatsCredential::UserPassword {
                user: "ordo".into(),
                password: "nats-password".into()
            })
        );
        assert_eq!(
            settings.telemetry.otlp_headers.0,
            [("api-key".to_owned(), "k3y".to_owned())]
        );
        let printed = format!("{settings:?}");
        for secret in ["token-from-a-file", "ops-token", "nats-password\"", "k3y"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        let token = file("nats-token", "t0ken");
        let settings = Settings::from_lookup(lookup_from(&[("NATS_TOKEN_FILE", &token)])).unwrap();
        assert_eq!(
            settings.relay.nats_security.credential,
            Some(ordo_service_kit::nats::NatsCredential::Token(
                "t0ken".into()
            ))
        );
        let err = Settings::from_lookup(lookup_from(&[
            ("NATS_TOKEN_FILE", &token),
            ("NATS_NKEY_SEED_FILE", &token),
        ]))
        .unwrap_err();
        assert!(err.expected.contains("one way to authenticate"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tls_settings_must_agree_with_the_urls() {
        for (pairs, name) in [
            (
                vec![("PAYMENTS_TLS_CA_FILE", "/etc/hostname")],
                "PAYMENTS_URL",
            ),
            (
                vec![("GRPC_TLS_CERT_FILE", "/etc/hostname")],
                "GRPC_TLS_KEY_FILE",
            ),
            (
                vec![("GRPC_TLS_CLIENT_CA_FILE", "/etc/hostname")],
                "GRPC_TLS_CLIENT_CA_FILE",
            ),
            (
                vec![("NATS_TLS_CERT_FILE", "/etc/hostname")],
                "NATS_TLS_KEY_FILE",
            ),
            (
                vec![("NATS_TLS_CA_FILE", "/nonexistent/ca.crt")],
                "NATS_TLS_CA_FILE",
            ),
            (
                vec![("DATABASE_URL", "postgres://h/db?sslmode=verify")],
                "DATABASE_URL",
            ),
            (vec![("NATS_USER", "ordo")], "NATS_USER"),
        ] {
            let err = Settings::from_lookup(lookup_from(&pairs)).unwrap_err();
            assert_eq!(err.name, name, "{pairs:?}: {err}");
        }
        let tls = Settings::from_lookup(lookup_from(&[
            ("NATS_URL", "tls://nats:4222"),
            ("PAYMENTS_URL", "https://payments.example"),
            ("PAYMENTS_TLS_SERVER_NAME", "payments.internal"),
        ]))
        .unwrap();
        assert!(tls.relay.nats_security.tls_required);
        assert_eq!(
            tls.payments.tls.server_name.as_deref(),
            Some("payments.internal")
        );
    }
}
