//! The order service's settings, declared once: `order-service --help` and
//! the README's table come from [`SETTINGS`], and the tests below hold it
//! to what [`Settings::from_lookup`](super::Settings::from_lookup) reads.

use ordo_service_kit::reference::{Reference, Setting, groups};

use super::{DEFAULT_DATABASE_URL, DEFAULT_LOG_FILTER};

/// Every setting the order service reads.
pub const SETTINGS: Reference = Reference {
    binary: "order-service",
    about: "takes orders over gRPC, stores each with its OrderPlaced event in one transaction, and publishes the events through its outbox",
    groups: &[
        &groups::database(DEFAULT_DATABASE_URL),
        &groups::server("0.0.0.0:50051"),
        &groups::HEALTH,
        &groups::NATS,
        &groups::OUTBOX_RELAY,
        &groups::NATS_BREAKER,
        &ORDERS,
        &groups::INBOX,
        &[Setting::value(
            "IDEMPOTENCY_KEY_RETENTION",
            "7d",
            "PlaceOrder's idempotency keys are forgotten after this (a retry later places a new order); swept every `INBOX_RETENTION_INTERVAL`",
        )],
        &groups::GRPC_TLS,
        &groups::telemetry(DEFAULT_LOG_FILTER, "order-service", "0.0.0.0:9101"),
    ],
};

/// How orders are written, the verdicts consumed here, and who may call
/// the admin RPCs.
const ORDERS: [Setting; 8] = [
    Setting::value(
        "GROUP_COMMIT_MAX",
        "64",
        "PlaceOrder / CancelOrder calls written in one transaction at most (1–100): calls that arrive while a commit is in flight go together in the next one; `1` turns group commit off",
    ),
    Setting::value(
        "GROUP_COMMIT_WRITERS",
        "2",
        "group commit's transactions in flight at once (at most `DATABASE_MAX_CONNECTIONS`)",
    ),
    Setting::value(
        "GROUP_COMMIT_LINGER",
        "0",
        "how long a PlaceOrder / CancelOrder batch (and a batch of verdicts) waits for more before it commits, only while they arrive closer together than this (0–50ms; `0` never waits): at low load nothing waits; at moderate load batches grow and an order costs less CPU, each waiting up to this long (see Benchmarks)",
    ),
    Setting::value(
        "STATUS_CONSUMER",
        "true",
        "consume `orders.confirmed` / `.rejected` / `.refunded` in this process",
    ),
    Setting::value(
        "STATUS_CONSUMER_CONCURRENCY",
        "16",
        "verdicts handled at once (1–1024)",
    ),
    Setting::value(
        "STATUS_SETTLE_BATCH",
        "64",
        "verdicts settled in one transaction at most (1–1024): those that arrive while a commit is in flight go together in the next one, their orders moved and inbox rows written by one statement (each order once a statement), each with its own inbox row; `1` turns batching off",
    ),
    Setting::described(
        "ORDER_SERVICE_ADMIN_TOKEN",
        "unset (admin API disabled)",
        "bearer token of the admin RPCs (`OutboxAdminService`: parked events), at least 16 characters; named `admin`",
    ),
    Setting::described(
        "ORDER_SERVICE_ADMIN_TOKENS",
        "unset",
        "more admin tokens, each named: `alice:<token>,bob:<token>`",
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
                // The relay's owner name is made anew for every read.
                format!("{settings:?}").replace(&settings.relay.owner, "<owner>")
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
