//! The relay's environment variables, read the same way by every service
//! that embeds it.

use std::time::Duration;

use ordo_service_kit::resilience::{BreakerVars, breaker_from};
use ordo_service_kit::{Lookup, SettingsError};

use crate::relay::CARRIED_ROWS_WAIT;
use crate::{PartitionCount, RelayConfig, StreamSettings};

/// `OUTBOX_PARTITIONS`, `OUTBOX_BATCH`, `OUTBOX_CLAIM_GROUP_MAX`, `OUTBOX_POLL_INTERVAL`,
/// `OUTBOX_MIN_POLL_INTERVAL`, `OUTBOX_LINGER`, `OUTBOX_LEASE_TTL`, `OUTBOX_DEDUP_WINDOW` and
/// `NATS_STREAM_REPLICAS`, `NATS_STREAM_MAX_AGE`, `NATS_STREAM_MAX_BYTES`,
/// `NATS_DEADLETTER_MAX_BYTES`, `NATS_PUBLISH_TIMEOUT` and the publish
/// breaker's `NATS_BREAKER_*`, and NATS's TLS and credentials
/// (`NATS_TLS_*`, `NATS_CREDS_FILE`, …, for `base`'s `nats_url`) over
/// `base`'s values.
pub fn relay_config_from<F: Fn(&str) -> Option<String>>(
    env: &Lookup<'_, F>,
    base: RelayConfig,
) -> Result<RelayConfig, SettingsError> {
    let poll_interval = env.duration("OUTBOX_POLL_INTERVAL", Duration::ZERO, base.poll_interval)?;
    Ok(RelayConfig {
        nats_security: ordo_service_kit::nats::NatsSecurity::from_env(env, &base.nats_url)?,
        partitions: env
            .parse("OUTBOX_PARTITIONS", "a whole number 1-4096", |raw| {
                raw.parse().ok().and_then(|n| PartitionCount::new(n).ok())
            })?
            .unwrap_or(base.partitions),
        batch_size: env.number("OUTBOX_BATCH", 1..=10_000, base.batch_size)?,
        claim_group_max: env.number("OUTBOX_CLAIM_GROUP_MAX", 1..=4096, base.claim_group_max)?,
        poll_interval,
        min_poll_interval: env
            .duration(
                "OUTBOX_MIN_POLL_INTERVAL",
                Duration::ZERO,
                base.min_poll_interval,
            )?
            .min(poll_interval),
        linger: env
            .parse(
                "OUTBOX_LINGER",
                "a duration from 0 to 50ms, such as 2ms",
                |raw| {
                    let linger = match raw {
                        "0" => Some(Duration::ZERO),
                        raw => humantime::parse_duration(raw).ok(),
                    };
                    linger.filter(|linger| *linger <= CARRIED_ROWS_WAIT)
                },
            )?
            .unwrap_or(base.linger),
        lease_ttl: env.duration("OUTBOX_LEASE_TTL", Duration::from_secs(1), base.lease_ttl)?,
        publish_timeout: env.duration(
            "NATS_PUBLISH_TIMEOUT",
            Duration::ZERO,
            base.publish_timeout,
        )?,
        publish_breaker: breaker_from(env, NATS_BREAKER, base.publish_breaker)?,
        stream: StreamSettings {
            duplicate_window: env.duration(
                "OUTBOX_DEDUP_WINDOW",
                Duration::ZERO,
                base.stream.duplicate_window,
            )?,
            replicas: env
                .parse("NATS_STREAM_REPLICAS", "1, 3 or 5", |raw| {
                    raw.parse().ok().filter(|n| [1, 3, 5].contains(n))
                })?
                .unwrap_or(base.stream.replicas),
            max_age: env
                .parse(
                    "NATS_STREAM_MAX_AGE",
                    "a duration such as 7d, or unlimited",
                    |raw| match raw {
                        "unlimited" => Some(Duration::ZERO),
                        raw => ordo_service_kit::parse_duration(raw),
                    },
                )?
                .unwrap_or(base.stream.max_age),
            max_bytes: env
                .parse("NATS_STREAM_MAX_BYTES", BYTES, parse_bytes)?
                .unwrap_or(base.stream.max_bytes),
            dead_letter_max_bytes: env
                .parse("NATS_DEADLETTER_MAX_BYTES", BYTES, parse_bytes)?
                .unwrap_or(base.stream.dead_letter_max_bytes),
            ..base.stream.clone()
        },
        ..base
    })
    .and_then(checked)
}

const BYTES: &str = "a size such as 10GiB, 512MiB or 1000000 (bytes), or unlimited";

/// `10GiB`, `512MiB`, `64KiB`, a number of bytes, or `unlimited` (`None`).
fn parse_bytes(raw: &str) -> Option<Option<i64>> {
    if raw == "unlimited" {
        return Some(None);
    }
    let (number, unit) = match raw.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => raw.split_at(at),
        None => (raw, ""),
    };
    let scale: i64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return None,
    };
    number
        .parse::<i64>()
        .ok()
        .and_then(|number| number.checked_mul(scale))
        .filter(|bytes| *bytes >= 1 << 20)
        .map(Some)
}

/// Settings that cannot work together.
fn checked(config: RelayConfig) -> Result<RelayConfig, SettingsError> {
    let stream = &config.stream;
    if !stream.max_age.is_zero() && stream.max_age < stream.duplicate_window {
        return Err(SettingsError {
            name: "NATS_STREAM_MAX_AGE".into(),
            value: humantime::format_duration(stream.max_age).to_string(),
            expected: format!(
                "at least OUTBOX_DEDUP_WINDOW ({}): JetStream drops duplicates only of messages it still holds",
                humantime::format_duration(stream.duplicate_window)
            ),
        });
    }
    Ok(config)
}

const NATS_BREAKER: BreakerVars = BreakerVars {
    window: "NATS_BREAKER_WINDOW",
    min_calls: "NATS_BREAKER_MIN_CALLS",
    failure_rate: "NATS_BREAKER_FAILURE_RATE",
    cool_down: "NATS_BREAKER_COOL_DOWN",
    half_open_probes: "NATS_BREAKER_HALF_OPEN_PROBES",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linger_longer_than_acked_rows_may_wait_is_refused() {
        let read = |value: &str| {
            let vars = [("OUTBOX_LINGER".to_owned(), value.to_owned())];
            let lookup = |name: &str| {
                vars.iter()
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| value.clone())
            };
            relay_config_from(
                &Lookup(&lookup),
                RelayConfig::new("postgres://x", "nats://y"),
            )
        };
        assert_eq!(read("0ms").unwrap().linger, Duration::ZERO);
        assert_eq!(read("0").unwrap().linger, Duration::ZERO);
        assert_eq!(read("5ms").unwrap().linger, Duration::from_millis(5));
        let err = read("1s").unwrap_err();
        assert_eq!(err.name, "OUTBOX_LINGER");
        assert!(err.to_string().contains("0 to 50ms"), "{err}");
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(parse_bytes("10GiB"), Some(Some(10 << 30)));
        assert_eq!(parse_bytes("512MiB"), Some(Some(512 << 20)));
        assert_eq!(parse_bytes("2000000"), Some(Some(2_000_000)));
        assert_eq!(parse_bytes("unlimited"), Some(None));
        assert_eq!(parse_bytes("10GB"), None);
        assert_eq!(parse_bytes("1KiB"), None, "below 1 MiB is a typo");
        assert_eq!(parse_bytes("-5"), None);
    }
}
