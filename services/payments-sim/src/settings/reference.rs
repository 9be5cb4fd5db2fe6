//! The simulator's settings, declared once: `payments-sim --help` and the
//! README's table come from [`SETTINGS`], and the tests below hold it to
//! what [`Settings::from_lookup`](super::Settings::from_lookup) reads.

use ordo_service_kit::reference::{Reference, Setting, groups};

use super::DEFAULT_LOG_FILTER;

/// Every setting the simulator reads.
pub const SETTINGS: Reference = Reference {
    binary: "payments-sim",
    about: "a payment provider simulator: idempotent authorize and refund, a decline rule, and fault knobs",
    groups: &[
        &groups::server("0.0.0.0:50053"),
        &FAULTS,
        &groups::GRPC_TLS,
        &groups::telemetry(DEFAULT_LOG_FILTER, "payments-sim", "0.0.0.0:9103"),
    ],
};

/// The fault knobs at start (`SetFaults` changes them while it runs), and
/// the ledger's memory.
const FAULTS: [Setting; 5] = [
    Setting::value(
        "PAYMENTS_LATENCY",
        "0s",
        "added to every Authorize, Refund and Void (0–60s, e.g. `200ms`)",
    ),
    Setting::value(
        "PAYMENTS_ERROR_RATE",
        "0",
        "share of Authorize, Refund and Void calls failing UNAVAILABLE before any effect (0.0–1.0)",
    ),
    Setting::value(
        "PAYMENTS_OUTAGE",
        "false",
        "every Authorize, Refund and Void fails UNAVAILABLE",
    ),
    Setting::value(
        "PAYMENTS_DECLINE_ABOVE_MINOR",
        "1000000",
        "authorizations above this amount (minor units) are declined with reason `amount_above_limit`",
    ),
    Setting::value(
        "PAYMENTS_LEDGER_RETENTION",
        "24h",
        "payments, idempotency keys and counts are forgotten this long after they were last touched, as a provider's keys expire; swept every minute",
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
            Settings::from_lookup(lookup).map(|settings| format!("{settings:?}"))
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
