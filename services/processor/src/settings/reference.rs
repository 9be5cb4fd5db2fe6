//! The processor's settings, declared once: `processor --help` and the
//! README's table come from [`SETTINGS`], and the tests below hold it to
//! what [`Settings::from_lookup`](super::Settings::from_lookup) reads.

use ordo_service_kit::reference::{Reference, Setting, groups};

use super::{DEFAULT_DATABASE_URL, DEFAULT_LOG_FILTER};

/// Every setting the processor reads.
pub const SETTINGS: Reference = Reference {
    binary: "processor",
    about: "takes each placed or cancelled order from the ORDERS stream once, settles its payment, and announces the verdict",
    groups: &[
        &groups::database(DEFAULT_DATABASE_URL),
        &groups::server("0.0.0.0:50052"),
        &groups::HEALTH,
        &PAYMENTS,
        &groups::backoff(super::PAYMENTS_RETRY_BACKOFF, ["full-jitter", "50ms", "1s"]),
        &[Setting::value(
            "PAYMENTS_RETRY_MAX_ELAPSED",
            "5s",
            "no retry starts later than this after the first call",
        )],
        &groups::breaker(super::PAYMENTS_BREAKER, ["10s", "20", "0.5", "5s", "3"]),
        &CONSUMING,
        &groups::backoff(super::PROCESSOR_BACKOFF, ["full-jitter", "1s", "60s"]),
        &ADMIN,
        &groups::INBOX,
        &[Setting::value(
            "ERROR_HISTORY_RETENTION",
            "30d",
            "failed attempts are forgotten after this once their order's payment is settled (never while it is open or its message waits as a dead letter); swept every `INBOX_RETENTION_INTERVAL`",
        )],
        &groups::NATS,
        &groups::OUTBOX_RELAY,
        &groups::NATS_BREAKER,
        &groups::GRPC_TLS,
        &groups::telemetry(DEFAULT_LOG_FILTER, "processor", "0.0.0.0:9102"),
    ],
};

/// The payment provider and one call to it.
const PAYMENTS: [Setting; 7] = [
    Setting::value(
        "PAYMENTS_URL",
        "http://127.0.0.1:50053",
        "the payment provider; `https://` for TLS",
    ),
    Setting::described(
        "PAYMENTS_TLS_CA_FILE",
        "unset (public roots)",
        "the provider's CA (PEM); any `PAYMENTS_TLS_*` needs an `https://` URL",
    ),
    Setting::described(
        "PAYMENTS_TLS_CERT_FILE",
        "unset",
        "a client certificate for mutual TLS with the provider (PEM), with `PAYMENTS_TLS_KEY_FILE`",
    ),
    Setting::described("PAYMENTS_TLS_KEY_FILE", "unset", "its private key (PEM)"),
    Setting::described(
        "PAYMENTS_TLS_SERVER_NAME",
        "the URL's host",
        "the name the provider's certificate must carry",
    ),
    Setting::value("PAYMENTS_TIMEOUT", "2s", "deadline of one payment call"),
    Setting::value(
        "PAYMENTS_TRIES",
        "3",
        "calls per attempt (1–10), only after UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, a timeout, or a call cut with its outcome unknown (UNKNOWN, INTERNAL, ABORTED) — always under the same idempotency key",
    ),
];

/// How messages are consumed, retried and dead-lettered.
const CONSUMING: [Setting; 7] = [
    Setting::value(
        "PROCESSOR_CONSUMER",
        "true",
        "consume orders in this process",
    ),
    Setting::value(
        "PROCESSOR_MAX_ATTEMPTS",
        "5",
        "failed attempts before a message is dead-lettered (1–100)",
    ),
    Setting::value(
        "PROCESSOR_MAX_DELIVER",
        "unlimited",
        "JetStream's delivery cap, a backstop only (attempts are counted in the database); a number must exceed `PROCESSOR_MAX_ATTEMPTS`, and a message on its last allowed delivery is settled or dead-lettered before it is let go. Changed values reach the server at the next start",
    ),
    Setting::value(
        "PROCESSOR_ACK_WAIT",
        "30s",
        "an unacked delivery comes back (to any replica) after this",
    ),
    Setting::value(
        "PROCESSOR_CONCURRENCY",
        "32",
        "messages handled at once per replica (1–1024)",
    ),
    Setting::value(
        "PROCESSOR_SETTLE_BATCH",
        "64",
        "record writes and settlements written in one transaction at most (1–1024): those that arrive while a commit is in flight go together in the next one, each with its own inbox row; `1` turns batching off",
    ),
    Setting::value(
        "PROCESSOR_SETTLE_LINGER",
        "0",
        "how long a batch of record writes and settlements waits for more before it commits, only while they arrive closer together than this (0–50ms; `0` never waits): at low load nothing waits; at moderate load batches grow and a message costs less CPU, each waiting up to this long (see Benchmarks)",
    ),
];

/// This replica's name, and who may call the admin RPCs.
const ADMIN: [Setting; 3] = [
    Setting::described(
        "PROCESSOR_INSTANCE",
        "`<host>-<pid>-<random>`",
        "this replica's name in error histories and leases (1–128 characters)",
    ),
    Setting::described(
        "PROCESSOR_ADMIN_TOKEN",
        "unset (admin API disabled)",
        "bearer token of the admin RPCs (dead letters, parked events), at least 16 characters; named `admin` in the audit trail",
    ),
    Setting::described(
        "PROCESSOR_ADMIN_TOKENS",
        "unset",
        "more admin tokens, each named for the audit trail: `alice:<token>,bob:<token>`",
    ),
];

#[cfg(test)]
mod tests {
    use ordo_service_kit::reference::Drift;

    use super::*;
    use crate::Settings;

    #[test]
    fn every_setting_read_is_declared_and_every_one_declared_is_read() {
        let drift = Drift::names(&SETTINGS, |lookup| Settings::from_lookup(lookup));
        assert!(drift.is_empty(), "{drift}");
    }

    #[test]
    fn every_declared_default_is_the_one_used() {
        let drift = Drift::defaults(&SETTINGS, |lookup| {
            Settings::from_lookup(lookup).map(|settings| {
                // The instance name is made anew for every read.
                format!("{settings:?}").replace(&settings.consuming.instance, "<instance>")
            })
        });
        assert!(drift.is_empty(), "{drift}");
    }

    #[test]
    fn the_readme_table_is_the_generated_one() {
        let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let readme = std::fs::read_to_string(readme).unwrap();
        let drift = Drift::readme(&SETTINGS, &readme);
        assert!(drift.is_empty(), "{drift}");
    }
}
