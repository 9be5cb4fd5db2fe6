//! The settings several binaries read the same way, declared once. A
//! setting whose default differs by binary (where it listens, its name on
//! spans) is a parameter of its group.
//!
//! Each binary's [`Reference`](super::Reference) lists the groups it reads
//! beside its own settings; its tests prove the list is exact.

use super::Setting;
use crate::resilience::{BackoffVars, BreakerVars};

/// What every gRPC server reads ([`crate::serving::ServerLimits`] and
/// the listener), `listen_addr` being the binary's default address.
pub const fn server(listen_addr: &'static str) -> [Setting; 5] {
    [
        Setting::value(
            "GRPC_LISTEN_ADDR",
            listen_addr,
            "where gRPC is served, `host:port` (port 0 picks a free one)",
        ),
        Setting::value(
            "SHUTDOWN_DRAIN_DELAY",
            "0s",
            "after SIGTERM/SIGINT, how long the server goes on serving while its health says NOT_SERVING, so load balancers stop routing to it first (the chart sets 5s)",
        ),
        Setting::value(
            "SHUTDOWN_TIMEOUT",
            "10s",
            "then how long requests in flight, messages in hand and relay rounds may take to finish: one deadline for all of them",
        ),
        Setting::value(
            "GRPC_MAX_IN_FLIGHT",
            "256",
            "requests in flight (1–100000) before the server sheds with RESOURCE_EXHAUSTED",
        ),
        Setting::value(
            "GRPC_REQUEST_TIMEOUT",
            "30s",
            "longest a request may take; a shorter `grpc-timeout` from the caller wins",
        ),
    ]
}

/// [`crate::tls::ServerTls`]: TLS for a gRPC server.
pub const GRPC_TLS: [Setting; 4] = [
    Setting::described(
        "GRPC_TLS_CERT_FILE",
        "unset (plaintext)",
        "the gRPC server's certificate chain, leaf first (PEM); with `GRPC_TLS_KEY_FILE`, the server speaks TLS only",
    ),
    Setting::described(
        "GRPC_TLS_KEY_FILE",
        "unset",
        "its private key (PEM: PKCS#8, PKCS#1 or SEC1)",
    ),
    Setting::described(
        "GRPC_TLS_CLIENT_CA_FILE",
        "unset",
        "mutual TLS: every client must present a certificate issued by these CAs (PEM)",
    ),
    Setting::value(
        "GRPC_TLS_RELOAD_INTERVAL",
        "10s",
        "how often those files are read again; changed files that load are used for new connections, open ones carry on",
    ),
];

/// [`crate::telemetry`]: logs, traces and metrics, with the binary's
/// default log filter, service name on spans, and metrics address.
pub const fn telemetry(
    log_filter: &'static str,
    service_name: &'static str,
    metrics_addr: &'static str,
) -> [Setting; 9] {
    [
        Setting::value(
            "LOG_FORMAT",
            "text",
            "`text` or `json` (one object per line, span fields included)",
        ),
        Setting::value(
            "RUST_LOG",
            log_filter,
            "log filter (`tracing` directives, e.g. `info,ordo_outbox=debug`); logs go to stderr",
        ),
        Setting::described(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "unset (no export)",
            "OTLP/gRPC collector for traces, e.g. `http://127.0.0.1:4317`; `https://` for TLS",
        ),
        Setting::described(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "unset",
            "headers sent with every export, `name=value,…` (values percent-encoded), e.g. an API key",
        ),
        Setting::described(
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            "unset (public roots)",
            "the collector's CA (PEM); only with an `https://` endpoint",
        ),
        Setting::described(
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            "unset",
            "a client certificate for the collector (PEM), with `OTEL_EXPORTER_OTLP_CLIENT_KEY`",
        ),
        Setting::described(
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
            "unset",
            "its private key (PEM)",
        ),
        Setting::value(
            "OTEL_SERVICE_NAME",
            service_name,
            "service name on the spans",
        ),
        Setting::value(
            "METRICS_LISTEN_ADDR",
            metrics_addr,
            "where Prometheus scrapes `/metrics`; `off` for none",
        ),
    ]
}

/// A service's own PostgreSQL database, `url` its default.
pub const fn database(url: &'static str) -> [Setting; 3] {
    [
        Setting::value(
            "DATABASE_URL",
            url,
            "the service's PostgreSQL database; TLS by libpq's parameters in it: `sslmode` (`disable`, `allow`, `prefer` (default), `require`, `verify-ca`, `verify-full`), `sslrootcert`, `sslcert`, `sslkey` (checked at start-up)",
        ),
        Setting::value(
            "DATABASE_MAX_CONNECTIONS",
            "16",
            "connection pool size (1–1000)",
        ),
        Setting::value(
            "MIGRATE",
            "true",
            "apply pending migrations at start-up (under an advisory lock, so replicas take turns)",
        ),
    ]
}

/// How often a service with dependencies probes them for `grpc.health.v1`.
pub const HEALTH: [Setting; 1] = [Setting::value(
    "HEALTH_PROBE_INTERVAL",
    "1s",
    "how often each dependency is probed for health",
)];

/// Where NATS is and how the connection is secured ([`crate::nats`]).
pub const NATS: [Setting; 9] = [
    Setting::value(
        "NATS_URL",
        "nats://127.0.0.1:4222",
        "NATS server(s), `nats://` or `tls://`, comma-separated (the seeds of a cluster: any that answers will do); JetStream required",
    ),
    Setting::described(
        "NATS_TLS_CA_FILE",
        "unset (public roots)",
        "the CA to check the NATS server with (PEM); any `NATS_TLS_*` file (or a `tls://` URL) requires TLS",
    ),
    Setting::described(
        "NATS_TLS_CERT_FILE",
        "unset",
        "a client certificate for NATS (PEM), with `NATS_TLS_KEY_FILE`",
    ),
    Setting::described("NATS_TLS_KEY_FILE", "unset", "its private key (PEM)"),
    Setting::described(
        "NATS_CREDS_FILE",
        "unset",
        "authenticate to NATS with a credentials file (user JWT and nkey seed, as `nsc` writes them). One way to authenticate at most; NATS refusing it stops start-up with the reason",
    ),
    Setting::described(
        "NATS_NKEY_SEED_FILE",
        "unset",
        "authenticate to NATS with the nkey seed (`SU…`) in this file",
    ),
    Setting::described(
        "NATS_USER",
        "unset",
        "authenticate to NATS as this user, with `NATS_PASSWORD`",
    ),
    Setting::described(
        "NATS_PASSWORD",
        "unset",
        "that user's password (best as `NATS_PASSWORD_FILE`)",
    ),
    Setting::described(
        "NATS_TOKEN",
        "unset",
        "authenticate to NATS with this token (best as `NATS_TOKEN_FILE`)",
    ),
];

/// The embedded outbox relay and the stream it publishes to, as
/// `ordo_outbox::settings` reads them.
pub const OUTBOX_RELAY: [Setting; 14] = [
    Setting::value(
        "OUTBOX_RELAY",
        "true",
        "run the outbox relay in this process (NATS may be down at start-up: events wait in the outbox)",
    ),
    Setting::value(
        "OUTBOX_PARTITIONS",
        "16",
        "outbox partitions (1–4096): at most this many replicas share the relay, and each partition's actor runs rounds of its own, so a single replica on a small machine publishes in fuller rounds with fewer (see Benchmarks). Recorded with the outbox on first start: a process started with another count refuses to start (exit 1, naming the setting); change it with `ordo-migrate repartition N` (docs/operations.md)",
    ),
    Setting::value(
        "OUTBOX_BATCH",
        "256",
        "most rows a relay actor claims per round (1–10000)",
    ),
    Setting::value(
        "OUTBOX_CLAIM_GROUP_MAX",
        "16",
        "most partitions whose claims, coming at the same moment, share one statement (1–4096; 1 claims each partition alone): one commit's orders nudge their partitions' actors at once",
    ),
    Setting::value(
        "OUTBOX_POLL_INTERVAL",
        "1s",
        "longest idle wait between relay polls",
    ),
    Setting::value(
        "OUTBOX_MIN_POLL_INTERVAL",
        "5ms",
        "wait between polls while polls keep finding rows (written by another replica); a local commit's nudge does not wait, and after a nudged round the actor keeps its idle pace",
    ),
    Setting::value(
        "OUTBOX_LINGER",
        "2ms",
        "how long a partition's next round waits when rows were committed while its last one ran, so it carries them together (0 runs it at once; at most 50ms). A commit that finds the partition's actor idle is published at once: at low load nothing lingers",
    ),
    Setting::value(
        "OUTBOX_LEASE_TTL",
        "10s",
        "partition lease lifetime: a dead replica's partitions are taken over within it",
    ),
    Setting::value(
        "OUTBOX_DEDUP_WINDOW",
        "2m",
        "the `ORDERS` stream's duplicate window: a re-publish inside it is dropped",
    ),
    Setting::value(
        "NATS_STREAM_REPLICAS",
        "1",
        "replicas of the `ORDERS` stream: 1, 3 or 5 (3 on a JetStream cluster; see Guarantees for what an ack means)",
    ),
    Setting::value(
        "NATS_STREAM_MAX_AGE",
        "7d",
        "messages older than this leave the `ORDERS` stream (`unlimited` to keep them); at least `OUTBOX_DEDUP_WINDOW`; far longer than any consumer may lag",
    ),
    Setting::value(
        "NATS_STREAM_MAX_BYTES",
        "10GiB",
        "the `ORDERS` stream's size cap (`unlimited` for none): a full stream refuses publishes (discard policy `new`), the rows wait in the outbox, nothing old vanishes",
    ),
    Setting::value(
        "NATS_DEADLETTER_MAX_BYTES",
        "1GiB",
        "the dead-letter stream's size cap, refused the same way; dead letters never age out",
    ),
    Setting::value(
        "NATS_PUBLISH_TIMEOUT",
        "5s",
        "one publish's wait for its ack",
    ),
];

/// The relay's publish breaker (`ordo_outbox::settings`).
pub const NATS_BREAKER: [Setting; 5] = breaker(
    BreakerVars {
        window: "NATS_BREAKER_WINDOW",
        min_calls: "NATS_BREAKER_MIN_CALLS",
        failure_rate: "NATS_BREAKER_FAILURE_RATE",
        cool_down: "NATS_BREAKER_COOL_DOWN",
        half_open_probes: "NATS_BREAKER_HALF_OPEN_PROBES",
    },
    ["10s", "20", "0.5", "2s", "3"],
);

/// A service's inbox of handled messages (the `ordo-inbox` retention sweep).
pub const INBOX: [Setting; 2] = [
    Setting::value(
        "INBOX_RETENTION",
        "7d",
        "inbox rows (messages already handled, kept to drop their duplicates) older than this are swept; at least `OUTBOX_DEDUP_WINDOW`",
    ),
    Setting::value(
        "INBOX_RETENTION_INTERVAL",
        "1m",
        "time between retention sweeps (one replica at a time, 500 rows per transaction)",
    ),
];

/// A circuit breaker read by [`crate::resilience::breaker_from`] under
/// `vars`; `defaults` in the order window, minimum calls, failure rate,
/// cool-down, half-open probes.
pub const fn breaker(vars: BreakerVars, defaults: [&'static str; 5]) -> [Setting; 5] {
    [
        Setting::value(
            vars.window,
            defaults[0],
            "circuit breaker: the rolling window the failure rate is measured over (see Resilience)",
        ),
        Setting::value(
            vars.min_calls,
            defaults[1],
            "circuit breaker: calls in the window before it may open",
        ),
        Setting::value(
            vars.failure_rate,
            defaults[2],
            "circuit breaker: the share of failed calls (above 0, at most 1) that opens it",
        ),
        Setting::value(
            vars.cool_down,
            defaults[3],
            "circuit breaker: how long it fails fast once open, before letting probes through",
        ),
        Setting::value(
            vars.half_open_probes,
            defaults[4],
            "circuit breaker: probes let through half-open; all succeed: closed, one fails: open again",
        ),
    ]
}

/// A backoff policy read by [`crate::resilience::backoff_from`] under
/// `vars`; `defaults` in the order kind, base, max.
pub const fn backoff(vars: BackoffVars, defaults: [&'static str; 3]) -> [Setting; 3] {
    [
        Setting::value(
            vars.kind,
            defaults[0],
            "backoff kind: `fixed`, `linear`, `exponential`, `full-jitter` (after try n, a random delay up to min(max, base × 2^(n-1))) or `decorrelated-jitter`",
        ),
        Setting::value(vars.base, defaults[1], "backoff: the base delay"),
        Setting::value(vars.max, defaults[2], "backoff: the longest delay"),
    ]
}
