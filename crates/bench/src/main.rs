//! `ordo-bench`: measures the outbox relay against the raw limits of this
//! machine, all in one run, so every figure can be read as a ratio that
//! survives a noisy machine.
//!
//! ```text
//! raw JetStream publish ─┐
//! raw claim + delete    ─┼─▶ relay drain of a pre-filled backlog (ratio to the lower raw limit)
//! PlaceOrder at a steady rate ─▶ commit→stream latency percentiles
//! ```
//!
//! Each part runs on a database of its own (cloned from the migrated
//! template, dropped afterwards) and a stream of its own on the NATS server
//! at `ORDO_TEST_NATS_URL` (default `nats://127.0.0.1:4222`). Results are
//! printed as a table and written as JSON under `.ordo/bench/`.
//!
//! Then the whole pipeline: the order-service, processor and payments-sim
//! release binaries over their own databases and a nats-server of the run's
//! own — PlaceOrder at the rate, each order's verdict observed on NATS, a
//! closed loop of 16 clients, resident memory — beside the raw SQL order
//! transaction at the same concurrency.
//!
//! Usage: `ordo-bench [--backlog N] [--rate R] [--seconds S] [--lifecycle true|false]`

mod latency;
mod lifecycle;
mod load;
mod raw;
mod report;

use std::time::Duration;

use anyhow::Context as _;

/// Publishes the relay can have in flight at once that the raw JetStream
/// figure is measured at too (the relay: up to 256 per partition).
const RELAY_IN_FLIGHT: usize = 1024;
/// The relay's database connections, and the raw claim+delete workers.
const RELAY_CONNECTIONS: u32 = 8;

/// What to run, from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rows pre-filled for the drain measurement.
    pub backlog: u64,
    /// PlaceOrder calls per second for the latency measurement.
    pub rate: u32,
    /// How long the latency measurement runs.
    pub duration: Duration,
    /// Also run the three release binaries end to end.
    pub lifecycle: bool,
}

impl Options {
    fn parse(args: impl Iterator<Item = String>) -> anyhow::Result<Self> {
        let mut options = Self {
            backlog: 200_000,
            rate: 1_000,
            duration: Duration::from_secs(20),
            lifecycle: true,
        };
        let mut args = args.skip(1);
        while let Some(flag) = args.next() {
            let value = args
                .next()
                .with_context(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--backlog" => options.backlog = value.parse().context("--backlog")?,
                "--lifecycle" => {
                    options.lifecycle = value.parse().context("--lifecycle true|false")?
                }
                "--rate" => options.rate = value.parse().context("--rate")?,
                "--seconds" => {
                    options.duration = Duration::from_secs(value.parse().context("--seconds")?)
                }
                other => {
                    anyhow::bail!("unknown option {other}; use --backlog N, --rate R, --seconds S")
                }
            }
        }
        Ok(options)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse(std::env::args())?;
    let load_before = load::sample();
    println!(
        "ordo-bench: outbox relay · backlog {} rows · {} orders/s for {:?}",
        options.backlog, options.rate, options.duration
    );
    println!("machine before: {load_before}");

    let phase = |name: &str, figure: f64, unit: &str, cpu: load::CpuClock| {
        println!(
            "  {name:<44} {figure:>9.0} {unit}   (CPU {:.0}% busy)",
            cpu.busy_percent_since()
        );
    };
    let cpu = load::CpuClock::now();
    let jetstream_64 = raw::jetstream_publish(options.backlog.min(100_000), 64).await?;
    phase(
        "raw JetStream publish, 64 in flight",
        jetstream_64.per_second(),
        "msg/s",
        cpu,
    );
    let cpu = load::CpuClock::now();
    let jetstream = raw::jetstream_publish(options.backlog.min(100_000), RELAY_IN_FLIGHT).await?;
    phase(
        "raw JetStream publish, 1024 in flight",
        jetstream.per_second(),
        "msg/s",
        cpu,
    );
    let cpu = load::CpuClock::now();
    let claim_delete = raw::claim_and_delete(options.backlog, RELAY_CONNECTIONS).await?;
    phase(
        "raw PostgreSQL claim+delete, 8 workers",
        claim_delete.per_second(),
        "rows/s",
        cpu,
    );
    let cpu = load::CpuClock::now();
    let drain = raw::relay_drain(options.backlog).await?;
    phase("relay drain", drain.per_second(), "events/s", cpu);
    let cpu = load::CpuClock::now();
    let latency = latency::steady_rate(options.rate, options.duration).await?;
    let latency_cpu = cpu.busy_percent_since();

    let lifecycle = if options.lifecycle {
        let bin_dir = std::path::PathBuf::from(
            std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "/var/tmp/ordo-target".into()),
        )
        .join("release");
        Some(lifecycle::run(&bin_dir, options.rate, options.duration).await?)
    } else {
        None
    };

    let load_after = load::sample();
    let raw = report::RawLimits {
        jetstream_64,
        jetstream,
        claim_delete,
    };
    let mut report = report::Report::new(
        &options,
        raw,
        drain,
        latency,
        latency_cpu,
        load_before,
        load_after,
    );
    report.lifecycle = lifecycle;
    report.print();
    let path = report.save()?;
    println!("\nresults saved to {}", path.display());
    Ok(())
}
