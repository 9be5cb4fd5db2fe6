//! The results: a table for people, a JSON file for history.

use std::path::PathBuf;

use serde::Serialize;

use crate::Options;
use crate::hops::Costs;
use crate::latency::Latency;
use crate::lifecycle::Lifecycle;
use crate::load::Load;
use crate::raw::Throughput;

/// Drain must reach this share of the lower raw limit.
const DRAIN_SHARE_TARGET: f64 = 0.60;
/// And at least this many events per second (60% of the quiet-machine limit).
const DRAIN_FLOOR: f64 = 30_000.0;
/// Write→stream p99 at the steady rate, in milliseconds.
const LATENCY_P99_TARGET_MS: f64 = 10.0;

/// The machine's limits without the relay, measured in the same run.
#[derive(Debug, Serialize)]
pub struct RawLimits {
    /// JetStream publishes with 64 in flight (the figure NOTES quotes).
    pub jetstream_64: Throughput,
    /// JetStream publishes at the relay's own concurrency.
    pub jetstream: Throughput,
    /// Claim + delete of 256-row batches, 8 workers on 8 connections.
    pub claim_delete: Throughput,
}

/// The raw SQL order transaction at 16 clients on the quiet machine the
/// issue's targets were set on.
pub const REFERENCE_RAW_SQL_PER_SECOND: f64 = 12_200.0;

/// This machine against the reference one: the raw SQL order transaction
/// here, over the reference figure. Rate targets (orders per second) are
/// multiplied by it; ratios and latencies stand as they are.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Scale {
    pub raw_sql_order_txn_per_second: f64,
    pub factor: f64,
}

impl Scale {
    pub fn of(raw_sql_order_txn_per_second: f64) -> Self {
        Self {
            raw_sql_order_txn_per_second,
            factor: raw_sql_order_txn_per_second / REFERENCE_RAW_SQL_PER_SECOND,
        }
    }

    /// `reference_rate` scaled to this machine, whole orders per second.
    pub fn rate(&self, reference_rate: f64) -> u32 {
        (reference_rate * self.factor).round().max(1.0) as u32
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub time: String,
    pub scale: Scale,
    pub backlog: u64,
    pub raw: RawLimits,
    pub relay_drain: Throughput,
    pub drain_share_of_lower_raw_limit: f64,
    /// The drain over [`shared_ceiling`] of the two raw limits.
    pub drain_share_of_shared_ceiling: f64,
    pub latency: Latency,
    pub latency_phase_cpu_busy_percent: f64,
    pub load_before: Load,
    pub load_after: Load,
    /// The three binaries end to end, when run.
    pub lifecycle: Option<Lifecycle>,
}

/// PlaceOrder (closed loop) against the raw SQL order transaction.
const WRITE_PATH_RAW_TARGET: f64 = 1.0;
/// Terminal orders per second (closed loop) against the raw SQL order
/// transaction.
const LIFECYCLE_RAW_TARGET: f64 = 0.5;
/// At half the closed-loop rate.
const HALF_RATE_PLACE_P99_MS: f64 = 5.0;
const HALF_RATE_END_TO_END_P99_MS: f64 = 20.0;
/// Terminal orders per second, full life cycle.
const LIFECYCLE_TARGET: f64 = 2_000.0;
const END_TO_END_P99_TARGET_MS: f64 = 50.0;
const PLACE_ORDER_P99_TARGET_MS: f64 = 10.0;
const RESIDENT_TARGET_MB: f64 = 100.0;

/// The most events a second a relay could drain when its two halves —
/// publishing at `publish` per second and claiming and deleting at
/// `claim_delete` per second, each measured alone on the whole machine —
/// share the same cores and the relay adds no cost of its own: each event
/// costs the machine the time of both.
pub fn shared_ceiling(publish: f64, claim_delete: f64) -> f64 {
    1.0 / (1.0 / publish + 1.0 / claim_delete)
}

impl Report {
    pub fn new(
        options: &Options,
        raw: RawLimits,
        relay_drain: Throughput,
        latency: Latency,
        latency_phase_cpu_busy_percent: f64,
        load_before: Load,
        load_after: Load,
    ) -> Self {
        let jetstream = raw
            .jetstream
            .per_second()
            .max(raw.jetstream_64.per_second());
        let claim_delete = raw.claim_delete.per_second();
        let lower = jetstream.min(claim_delete);
        Self {
            time: chrono::Utc::now().to_rfc3339(),
            scale: Scale::default(),
            backlog: options.backlog,
            drain_share_of_lower_raw_limit: relay_drain.per_second() / lower,
            drain_share_of_shared_ceiling: relay_drain.per_second()
                / shared_ceiling(jetstream, claim_delete),
            raw,
            relay_drain,
            latency,
            latency_phase_cpu_busy_percent,
            load_before,
            load_after,
            lifecycle: None,
        }
    }

    pub fn print(&self) {
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        let drain = self.relay_drain.per_second();
        let share = self.drain_share_of_lower_raw_limit;
        let latency = &self.latency;
        let row =
            |name: &str, value: String, note: String| println!("{name:<44} {value:>16}   {note}");
        let percentiles = |p: &crate::latency::Percentiles| {
            format!(
                "{:.2}/{:.2}/{:.2}/{:.2} ms",
                p.p50_ms, p.p99_ms, p.p999_ms, p.max_ms
            )
        };
        println!();
        row("figure", "value".into(), "target".into());
        println!("{}", "-".repeat(100));
        row(
            "raw JetStream publish, 64 in flight",
            format!("{:.0} /s", self.raw.jetstream_64.per_second()),
            String::new(),
        );
        row(
            "raw JetStream publish, 1024 in flight",
            format!("{:.0} /s", self.raw.jetstream.per_second()),
            String::new(),
        );
        row(
            "raw PostgreSQL claim+delete, 8 workers",
            format!("{:.0} /s", self.raw.claim_delete.per_second()),
            String::new(),
        );
        row(
            &format!("relay drain, {} rows over 16 partitions", self.backlog),
            format!("{drain:.0} /s"),
            format!(
                "≥ {:.0}% of the lower raw limit ({:.0}%): {}; ≥ {DRAIN_FLOOR:.0}/s: {}",
                DRAIN_SHARE_TARGET * 100.0,
                share * 100.0,
                verdict(share >= DRAIN_SHARE_TARGET),
                verdict(drain >= DRAIN_FLOOR),
            ),
        );
        row(
            "  of the raw limits sharing the cores",
            format!("{:.0}%", self.drain_share_of_shared_ceiling * 100.0),
            "the relay's own cost: 100% would be publishing and claiming at no extra CPU".into(),
        );
        row(
            &format!(
                "PlaceOrder at {}/s for {:.0} s",
                latency.rate, latency.seconds
            ),
            format!("{} ok", latency.sent - latency.failed),
            format!(
                "{} failed, {:.0}/s achieved, CPU {:.0}% busy",
                latency.failed,
                latency.sent as f64 / latency.seconds,
                self.latency_phase_cpu_busy_percent
            ),
        );
        if let Some(error) = &latency.first_error {
            row("first PlaceOrder failure", String::new(), error.clone());
        }
        row(
            "PlaceOrder from its scheduled send",
            percentiles(&latency.place_order),
            "p50/p99/p999/max".into(),
        );
        row(
            "order written → event published",
            percentiles(&latency.write_to_stream),
            format!(
                "p99 ≤ {LATENCY_P99_TARGET_MS} ms: {}",
                verdict(latency.write_to_stream.p99_ms <= LATENCY_P99_TARGET_MS)
            ),
        );
        if let Some(bucket) = latency.relay_commit_to_ack_p99_bucket_ms {
            row(
                "relay: row written → ack, p99 ≤",
                format!("{bucket:.1} ms"),
                "histogram bucket bound".into(),
            );
        }
        let scale = self.scale;
        row(
            "raw SQL order transaction, 16 clients",
            format!("{:.0} /s", scale.raw_sql_order_txn_per_second),
            format!(
                "order + line + outbox row, one commit; scale ×{:.2} of the reference {REFERENCE_RAW_SQL_PER_SECOND:.0}/s",
                scale.factor
            ),
        );
        if let Some(lifecycle) = &self.lifecycle {
            let on = &lifecycle.batching;
            let off = &lifecycle.unbatched;
            // Each pipeline against the raw limit measured around it.
            let (raw, raw_off) = (on.raw_sql_per_second(), off.raw_sql_per_second());
            for (mode, pipeline) in [("batching on", on), ("batching off", off)] {
                let (before, after) = pipeline.raw_sql_around;
                row(
                    &format!("  raw SQL around the {mode} pipeline"),
                    format!("{:.0} /s", pipeline.raw_sql_per_second()),
                    format!(
                        "{before:.0} before its write path, {after:.0} after its closed loop; its ratios are to the higher"
                    ),
                );
            }
            let write_share = on.write_path_place_per_second / raw;
            row(
                "PlaceOrder over gRPC, 16 clients, write path",
                format!("{:.0} /s", on.write_path_place_per_second),
                format!(
                    "≥ {WRITE_PATH_RAW_TARGET:.1}× raw SQL ({write_share:.2}×): {}",
                    verdict(write_share >= WRITE_PATH_RAW_TARGET)
                ),
            );
            row(
                "  the same, batching off",
                format!("{:.0} /s", off.write_path_place_per_second),
                format!("{:.2}× raw SQL", off.write_path_place_per_second / raw_off),
            );
            row(
                &format!(
                    "  (order-service binary + relay, {} partitions; processor not started)",
                    lifecycle.write_path_partitions
                ),
                String::new(),
                String::new(),
            );
            let one_partition_share = lifecycle.write_path_one_partition_place_per_second / raw;
            row(
                "  the same with OUTBOX_PARTITIONS=1 (one replica)",
                format!(
                    "{:.0} /s",
                    lifecycle.write_path_one_partition_place_per_second
                ),
                format!("{one_partition_share:.2}× raw SQL"),
            );
            row(
                "PlaceOrder, 16 clients, whole life cycle running",
                format!("{:.0} /s", on.closed_loop_place_per_second),
                format!("batching off: {:.0} /s", off.closed_loop_place_per_second),
            );
            let terminal = on.closed_loop_terminal_per_second;
            let scaled_target = f64::from(scale.rate(LIFECYCLE_TARGET));
            row(
                "full life cycle, terminal orders (closed loop)",
                format!("{terminal:.0} /s"),
                format!(
                    "≥ {LIFECYCLE_RAW_TARGET:.1}× raw SQL ({:.2}×): {}; scaled ≥ {scaled_target:.0}/s: {}",
                    terminal / raw,
                    verdict(terminal / raw >= LIFECYCLE_RAW_TARGET),
                    verdict(terminal >= scaled_target),
                ),
            );
            row(
                "  the same, batching off",
                format!("{:.0} /s", off.closed_loop_terminal_per_second),
                format!(
                    "{:.2}× raw SQL",
                    off.closed_loop_terminal_per_second / raw_off
                ),
            );
            for (mode, pipeline, targets) in
                [("batching on", on, true), ("batching off", off, false)]
            {
                let half = &pipeline.half_rate;
                row(
                    &format!(
                        "{mode}: life cycle at {}/s (half the closed loop)",
                        half.rate
                    ),
                    format!("{}/{}", half.terminal, half.placed),
                    format!("{:.0}/s terminal", half.terminal_per_second),
                );
                let place_ok = half.place_order.p99_ms <= HALF_RATE_PLACE_P99_MS;
                let e2e_ok = half.end_to_end.p99_ms <= HALF_RATE_END_TO_END_P99_MS;
                row(
                    "  PlaceOrder (binary) from scheduled send",
                    percentiles(&half.place_order),
                    if targets {
                        format!("p99 ≤ {HALF_RATE_PLACE_P99_MS} ms: {}", verdict(place_ok))
                    } else {
                        "p50/p99/p999/max".into()
                    },
                );
                row(
                    "  placed → verdict on NATS (end to end)",
                    percentiles(&half.end_to_end),
                    if targets {
                        format!(
                            "p99 ≤ {HALF_RATE_END_TO_END_P99_MS} ms: {}",
                            verdict(e2e_ok)
                        )
                    } else {
                        "p50/p99/p999/max".into()
                    },
                );
            }
            println!();
            let columns = |name: &str, a: &str, b: &str, c: &str| {
                println!("{name:<44} {a:>16} {b:>14} {c:>14}");
            };
            columns("cost per order", "closed loop", "half rate", "batching off");
            println!("{}", "-".repeat(100));
            let (a, h, b) = (
                &on.closed_loop_costs,
                &on.half_rate_costs,
                &off.closed_loop_costs,
            );
            let figure = |value: f64| {
                if value.is_nan() {
                    "–".to_owned()
                } else {
                    format!("{value:.2}")
                }
            };
            let three = |name: &str, x: f64, y: f64, z: f64| {
                columns(name, &figure(x), &figure(y), &figure(z));
            };
            three(
                "PlaceOrder calls per commit (write path)",
                on.write_path_costs.place_orders_per_commit,
                f64::NAN,
                off.write_path_costs.place_orders_per_commit,
            );
            let each = |name: &str, of: fn(&Costs) -> f64| three(name, of(a), of(h), of(b));
            each("PlaceOrder calls per commit", |c| c.place_orders_per_commit);
            each("events per relay round, order service", |c| {
                c.order_relay_events_per_round
            });
            each("relay claim statements per order, order service", |c| {
                c.relay_claim_statements_per_order.0
            });
            each("relay claim statements per order, processor", |c| {
                c.relay_claim_statements_per_order.1
            });
            each("messages per settlement commit, processor", |c| {
                c.processor_messages_per_commit
            });
            each("events per relay round, processor", |c| {
                c.processor_relay_events_per_round
            });
            each("verdicts per commit, order service", |c| {
                c.status_messages_per_commit
            });
            each("SQL statements per order, all services", |c| {
                c.statements_per_order
            });
            let of = |map: &std::collections::BTreeMap<String, f64>, key: &str| {
                map.get(key).copied().unwrap_or(f64::NAN)
            };
            for (process, micros) in &a.cpu_us_per_order {
                three(
                    &format!("CPU µs per order, {process}"),
                    *micros,
                    of(&h.cpu_us_per_order, process),
                    of(&b.cpu_us_per_order, process),
                );
            }
            three(
                "CPU µs per order, all of these",
                a.cpu_us_per_order.values().sum(),
                h.cpu_us_per_order.values().sum(),
                b.cpu_us_per_order.values().sum(),
            );
            println!();
            let sustained = &lifecycle.sustained;
            row(
                &format!(
                    "life cycle at {}/s for {:.0} s: terminal",
                    sustained.rate, sustained.seconds
                ),
                format!("{}/{}", sustained.terminal, sustained.placed),
                format!(
                    "{:.0}/s; kept up (all terminal, ≥ 97% of the rate): {}{}",
                    sustained.terminal_per_second,
                    verdict(sustained.kept_up()),
                    if f64::from(sustained.rate) >= LIFECYCLE_TARGET {
                        ""
                    } else {
                        " (scaled rate)"
                    }
                ),
            );
            row(
                "  placed → verdict on NATS (end to end)",
                percentiles(&sustained.end_to_end),
                "p50/p99/p999/max".into(),
            );
            let latency = &lifecycle.latency;
            row(
                &format!(
                    "life cycle at {}/s for {:.0} s: terminal",
                    latency.rate, latency.seconds
                ),
                format!("{}/{}", latency.terminal, latency.placed),
                format!(
                    "{:.0}/s{}",
                    latency.terminal_per_second,
                    if latency.rate >= 1_000 {
                        ""
                    } else {
                        " (1,000/s scaled)"
                    }
                ),
            );
            row(
                "  PlaceOrder (binary) from scheduled send",
                percentiles(&latency.place_order),
                format!(
                    "p99 ≤ {PLACE_ORDER_P99_TARGET_MS} ms: {}",
                    verdict(latency.place_order.p99_ms <= PLACE_ORDER_P99_TARGET_MS)
                ),
            );
            row(
                "  placed → verdict on NATS (end to end)",
                percentiles(&latency.end_to_end),
                format!(
                    "p99 ≤ {END_TO_END_P99_TARGET_MS} ms: {}",
                    verdict(latency.end_to_end.p99_ms <= END_TO_END_P99_TARGET_MS)
                ),
            );
            for (name, mb) in &lifecycle.resident_mb {
                row(
                    &format!("resident memory, {name}"),
                    format!("{mb:.0} MB"),
                    format!(
                        "≤ {RESIDENT_TARGET_MB:.0} MB: {}",
                        verdict(*mb <= RESIDENT_TARGET_MB)
                    ),
                );
            }
        }
        println!("machine after: {}", self.load_after);
    }

    /// Writes the report under `ORDO_BENCH_DIR` (default `.ordo/bench`).
    pub fn save(&self) -> anyhow::Result<PathBuf> {
        let dir = PathBuf::from(
            std::env::var("ORDO_BENCH_DIR").unwrap_or_else(|_| ".ordo/bench".to_owned()),
        );
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!(
            "relay-{}.json",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ));
        std::fs::write(&path, serde_json::to_string_pretty(self)?)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::shared_ceiling;

    #[test]
    fn two_halves_sharing_the_cores_each_cost_the_time_of_both() {
        assert!((shared_ceiling(100.0, 100.0) - 50.0).abs() < 1e-9);
        // Claiming twice as fast as publishing: two thirds of the publish rate.
        assert!((shared_ceiling(120_000.0, 240_000.0) - 80_000.0).abs() < 1e-6);
        // A free half leaves the other's limit.
        assert!((shared_ceiling(90_000.0, f64::INFINITY) - 90_000.0).abs() < 1e-6);
    }
}
