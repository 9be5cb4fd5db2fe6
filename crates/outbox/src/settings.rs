//! The relay's environment variables, read the same way by every service
//! that embeds it.

use std::time::Duration;

use ordo_service_kit::resilience::{BreakerVars, breaker_from};
use ordo_service_kit::{Lookup, SettingsError};

use crate::{PartitionCount, RelayConfig, StreamSettings};

/// `OUTBOX_PARTITIONS`, `OUTBOX_BATCH`, `OUTBOX_POLL_INTERVAL`,
/// `OUTBOX_MIN_POLL_INTERVAL`, `OUTBOX_LEASE_TTL`, `OUTBOX_DEDUP_WINDOW` and
/// `NATS_STREAM_REPLICAS`, `NATS_PUBLISH_TIMEOUT` and the publish breaker's
/// `NATS_BREAKER_*` over `base`'s values.
pub fn relay_config_from<F: Fn(&str) -> Option<String>>(
    env: &Lookup<'_, F>,
    base: RelayConfig,
) -> Result<RelayConfig, SettingsError> {
    let poll_interval = env.duration("OUTBOX_POLL_INTERVAL", Duration::ZERO, base.poll_interval)?;
    Ok(RelayConfig {
        partitions: env
            .parse("OUTBOX_PARTITIONS", "a whole number 1-4096", |raw| {
                raw.parse().ok().and_then(|n| PartitionCount::new(n).ok())
            })?
            .unwrap_or(base.partitions),
        batch_size: env.number("OUTBOX_BATCH", 1..=10_000, base.batch_size)?,
        poll_interval,
        min_poll_interval: env
            .duration(
                "OUTBOX_MIN_POLL_INTERVAL",
                Duration::ZERO,
                base.min_poll_interval,
            )?
            .min(poll_interval),
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
            ..base.stream.clone()
        },
        ..base
    })
}

const NATS_BREAKER: BreakerVars = BreakerVars {
    window: "NATS_BREAKER_WINDOW",
    min_calls: "NATS_BREAKER_MIN_CALLS",
    failure_rate: "NATS_BREAKER_FAILURE_RATE",
    cool_down: "NATS_BREAKER_COOL_DOWN",
    half_open_probes: "NATS_BREAKER_HALF_OPEN_PROBES",
};
