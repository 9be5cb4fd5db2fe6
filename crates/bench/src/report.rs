//! The results: a table for people, a JSON file for history.

use std::path::PathBuf;

use serde::Serialize;

use crate::Options;
use crate::latency::Latency;
use crate::load::Load;
use crate::raw::Throughput;

/// Drain must reach this share of the lower raw limit.
const DRAIN_SHARE_TARGET: f64 = 0.60;
/// And at least this many events per second (60% of the quiet-machine limit).
const DRAIN_FLOOR: f64 = 30_000.0;
/// Write→stream p99 at the steady rate, in milliseconds.
const LATENCY_P99_TARGET_MS: f64 = 10.0;

#[derive(Debug, Serialize)]
pub struct Report {
    pub time: String,
    pub backlog: u64,
    pub raw_jetstream_publish: Throughput,
    pub raw_claim_delete: Throughput,
    pub relay_drain: Throughput,
    pub drain_share_of_lower_raw_limit: f64,
    pub latency: Latency,
    pub load_before: Load,
    pub load_after: Load,
}

impl Report {
    pub fn new(
        options: &Options,
        raw_jetstream_publish: Throughput,
        raw_claim_delete: Throughput,
        relay_drain: Throughput,
        latency: Latency,
        load_before: Load,
        load_after: Load,
    ) -> Self {
        let lower = raw_jetstream_publish
            .per_second()
            .min(raw_claim_delete.per_second());
        Self {
            time: chrono::Utc::now().to_rfc3339(),
            backlog: options.backlog,
            drain_share_of_lower_raw_limit: relay_drain.per_second() / lower,
            raw_jetstream_publish,
            raw_claim_delete,
            relay_drain,
            latency,
            load_before,
            load_after,
        }
    }

    pub fn print(&self) {
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        let drain = self.relay_drain.per_second();
        let share = self.drain_share_of_lower_raw_limit;
        let latency = &self.latency;
        println!();
        println!("{:<44} {:>14}   target", "figure", "value");
        println!("{}", "-".repeat(90));
        println!(
            "{:<44} {:>10.0} /s",
            "raw JetStream publish (64 in flight)",
            self.raw_jetstream_publish.per_second()
        );
        println!(
            "{:<44} {:>10.0} /s",
            "raw PostgreSQL claim+delete (4 workers)",
            self.raw_claim_delete.per_second()
        );
        println!(
            "{:<44} {:>10.0} /s   ≥ {:.0}% of the lower raw limit ({:.0}%): {}; ≥ {:.0}/s: {}",
            format!("relay drain, {} rows over 16 partitions", self.backlog),
            drain,
            DRAIN_SHARE_TARGET * 100.0,
            share * 100.0,
            verdict(share >= DRAIN_SHARE_TARGET),
            DRAIN_FLOOR,
            verdict(drain >= DRAIN_FLOOR),
        );
        println!(
            "{:<44} {:>10} ok   {} failed, {:.0}/s achieved",
            format!(
                "PlaceOrder at {}/s for {:.0} s",
                latency.rate, latency.seconds
            ),
            latency.sent - latency.failed,
            latency.failed,
            latency.sent as f64 / latency.seconds,
        );
        if let Some(error) = &latency.first_error {
            println!("{:<44} {error}", "first PlaceOrder failure");
        }
        println!(
            "{:<44} {:>6.2} / {:.2} / {:.2} / {:.2} ms (p50/p99/p999/max)",
            "PlaceOrder latency",
            latency.place_order.p50_ms,
            latency.place_order.p99_ms,
            latency.place_order.p999_ms,
            latency.place_order.max_ms,
        );
        println!(
            "{:<44} {:>6.2} / {:.2} / {:.2} / {:.2} ms   p99 ≤ {LATENCY_P99_TARGET_MS} ms: {}",
            "write → stored in stream",
            latency.write_to_stream.p50_ms,
            latency.write_to_stream.p99_ms,
            latency.write_to_stream.p999_ms,
            latency.write_to_stream.max_ms,
            verdict(latency.write_to_stream.p99_ms <= LATENCY_P99_TARGET_MS),
        );
        if let Some(bucket) = latency.relay_commit_to_ack_p99_bucket_ms {
            println!(
                "{:<44} {:>10.1} ms (relay histogram bucket bound)",
                "relay commit→ack p99 ≤", bucket
            );
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
