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
//! Usage: `ordo-bench [--backlog N] [--rate R] [--seconds S]`

mod latency;
mod load;
mod raw;
mod report;

use std::time::Duration;

use anyhow::Context as _;

/// What to run, from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rows pre-filled for the drain measurement.
    pub backlog: u64,
    /// PlaceOrder calls per second for the latency measurement.
    pub rate: u32,
    /// How long the latency measurement runs.
    pub duration: Duration,
}

impl Options {
    fn parse(args: impl Iterator<Item = String>) -> anyhow::Result<Self> {
        let mut options = Self {
            backlog: 200_000,
            rate: 1_000,
            duration: Duration::from_secs(20),
        };
        let mut args = args.skip(1);
        while let Some(flag) = args.next() {
            let value = args
                .next()
                .with_context(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--backlog" => options.backlog = value.parse().context("--backlog")?,
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

    let jetstream = raw::jetstream_publish(options.backlog.min(100_000), 64).await?;
    println!(
        "  raw JetStream publish, 64 in flight: {:>9.0} msg/s",
        jetstream.per_second()
    );
    let claim_delete = raw::claim_and_delete(options.backlog).await?;
    println!(
        "  raw PostgreSQL claim+delete:         {:>9.0} rows/s",
        claim_delete.per_second()
    );
    let drain = raw::relay_drain(options.backlog).await?;
    println!(
        "  relay drain:                         {:>9.0} events/s",
        drain.per_second()
    );
    let latency = latency::steady_rate(options.rate, options.duration).await?;

    let load_after = load::sample();
    let report = report::Report::new(
        &options,
        jetstream,
        claim_delete,
        drain,
        latency,
        load_before,
        load_after,
    );
    report.print();
    let path = report.save()?;
    println!("\nresults saved to {}", path.display());
    Ok(())
}
