//! What a relay needs to run, as one typed struct. The embedding service
//! reads its environment and fills this in.

use std::time::Duration;

use crate::PartitionCount;

/// The JetStream stream the relay publishes into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    /// Stream name, `ORDERS` in production.
    pub name: String,
    /// Prepended to every outbox row's subject; empty in production, a
    /// unique prefix per test so tests share one nats-server.
    pub subject_prefix: String,
    /// JetStream's duplicate window: a re-publish of an event id inside it
    /// is acked as a duplicate and not stored again.
    pub duplicate_window: Duration,
    /// Stream replicas (1 on a single server, 3 on a JetStream cluster).
    pub replicas: usize,
    /// Messages older than this are removed (`ZERO`: kept for ever). Far
    /// longer than any consumer may lag: alert on lag long before.
    pub max_age: Duration,
    /// The stream's size cap in bytes (`None`: no cap). When it is full,
    /// new publishes are refused (discard policy `new`): the relay's rows
    /// wait in the outbox, visibly, rather than old messages vanishing.
    pub max_bytes: Option<i64>,
    /// The dead-letter stream's size cap, refused the same way (its
    /// messages never age out: each waits for an operator).
    pub dead_letter_max_bytes: Option<i64>,
}

/// One gibibyte.
pub const GIB: i64 = 1 << 30;

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            name: "ORDERS".to_owned(),
            subject_prefix: String::new(),
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: Some(10 * GIB),
            dead_letter_max_bytes: Some(GIB),
        }
    }
}

impl StreamSettings {
    /// The default settings for a stream of another name whose subjects
    /// carry `subject_prefix` (tests and benchmarks sharing one server), with
    /// no size caps: a server reserves what a stream's cap names, and many
    /// short-lived streams would reserve more than it has.
    pub fn isolated(name: impl Into<String>, subject_prefix: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            subject_prefix: subject_prefix.into(),
            max_bytes: None,
            dead_letter_max_bytes: None,
            ..Self::default()
        }
    }

    /// The subjects the stream captures: `<prefix>orders.>`.
    pub fn subjects(&self) -> Vec<String> {
        vec![format!("{}orders.>", self.subject_prefix)]
    }

    /// The dead-letter stream's name: `<name>_deadletter`.
    pub fn dead_letter_name(&self) -> String {
        format!("{}_deadletter", self.name)
    }

    /// The dead-letter stream's subjects: `<prefix>deadletter.orders.>`.
    pub fn dead_letter_subjects(&self) -> Vec<String> {
        vec![format!("{}deadletter.orders.>", self.subject_prefix)]
    }

    /// The dead-letter subject of a message from `source_subject`
    /// (`<prefix>orders.placed` → `<prefix>deadletter.orders.placed`).
    pub fn dead_letter_subject_for(&self, source_subject: &str) -> String {
        let unprefixed = source_subject
            .strip_prefix(&self.subject_prefix)
            .unwrap_or(source_subject);
        format!("{}deadletter.{unprefixed}", self.subject_prefix)
    }

    /// The subject a row with `subject` is published on.
    pub fn subject_for(&self, subject: &str) -> String {
        format!("{}{subject}", self.subject_prefix)
    }
}

/// Everything the relay runs with.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// PostgreSQL holding the `outbox` and lease tables.
    pub database_url: String,
    /// NATS server URL(s), comma-separated.
    pub nats_url: String,
    /// TLS and credentials for NATS (`NATS_TLS_*`, `NATS_CREDS_FILE`, …).
    pub nats_security: ordo_service_kit::nats::NatsSecurity,
    /// The stream to publish into.
    pub stream: StreamSettings,
    /// Partitions the outbox is split into; must match the writers'.
    pub partitions: PartitionCount,
    /// Most rows one relay actor claims per round (`OUTBOX_BATCH`).
    pub batch_size: u32,
    /// Most partitions whose claims, coming at once, share one statement
    /// (`OUTBOX_CLAIM_GROUP_MAX`; 1: each partition claims alone).
    pub claim_group_max: usize,
    /// Longest idle wait between polls (`OUTBOX_POLL_INTERVAL`).
    pub poll_interval: Duration,
    /// Shortest wait between polls while rows keep coming.
    pub min_poll_interval: Duration,
    /// How long a partition's next round waits when rows were committed
    /// while its last ran (`OUTBOX_LINGER`; zero: at once).
    pub linger: Duration,
    /// How long a lease lives without renewal (`OUTBOX_LEASE_TTL`); a dead
    /// replica's partitions are taken over within it.
    pub lease_ttl: Duration,
    /// Publishes in flight per relay actor (pipelining across aggregates).
    pub max_in_flight: usize,
    /// This replica's name in the lease table; unique per process.
    pub owner: String,
    /// How long one publish may wait for its ack.
    pub publish_timeout: Duration,
    /// Database connections of the relay's own pool.
    pub database_connections: u32,
    /// The breaker around publishing (`NATS_BREAKER_*`): while it is open
    /// the relay's partitions pause, rows wait, and no publish is tried.
    pub publish_breaker: ordo_resilience::BreakerConfig,
}

impl RelayConfig {
    /// Defaults for everything but where the database and NATS are.
    pub fn new(database_url: impl Into<String>, nats_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            nats_url: nats_url.into(),
            nats_security: ordo_service_kit::nats::NatsSecurity::default(),
            stream: StreamSettings::default(),
            partitions: PartitionCount::default(),
            batch_size: 256,
            claim_group_max: 16,
            poll_interval: Duration::from_secs(1),
            min_poll_interval: Duration::from_millis(5),
            linger: Duration::from_millis(2),
            lease_ttl: Duration::from_secs(10),
            max_in_flight: 256,
            owner: default_owner(),
            publish_timeout: Duration::from_secs(5),
            database_connections: 8,
            publish_breaker: ordo_resilience::BreakerConfig {
                min_calls: 20,
                cool_down: Duration::from_secs(2),
                ..ordo_resilience::BreakerConfig::default()
            },
        }
    }

    /// How long one renewal keeps a lease: two thirds of the TTL, so that
    /// with a heartbeat every quarter TTL a dead owner's partitions are
    /// taken over within the TTL (2/3 + 1/4 < 1), and two heartbeats in a
    /// row may fail without losing a lease (2/3 > 2 × 1/4).
    pub fn lease_duration(&self) -> Duration {
        self.lease_ttl * 2 / 3
    }

    /// How often leases are renewed and free ones sought.
    pub fn heartbeat_interval(&self) -> Duration {
        self.lease_ttl / 4
    }

    /// Longest a round may take before it is abandoned and retried.
    pub fn round_timeout(&self) -> Duration {
        self.publish_timeout * 2 + Duration::from_secs(5)
    }
}

/// `<hostname>-<pid>-<random>`: unique per process, readable in the table.
pub fn default_owner() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|host| !host.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|host| host.trim().to_owned())
        .unwrap_or_else(|| "relay".to_owned());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..8])
}
