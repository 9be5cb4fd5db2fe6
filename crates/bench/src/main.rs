//! `ordo-bench`: Ordo against the raw limits of this machine, all in one
//! run, so every figure can be read as a ratio that survives a noisy
//! machine.
//!
//! ```text
//! raw SQL order transaction, 16 clients ─▶ the machine's scale: every rate
//!                                          target × (this figure / 12,200)
//! raw JetStream publish ─┐
//! raw claim + delete    ─┼─▶ relay drain of a pre-filled backlog (ratio to the lower raw limit)
//! PlaceOrder at the latency rate, in process ─▶ commit→stream latency percentiles
//! the three release binaries, end to end:
//!   write path (order service + relay, 16 clients) ─▶ ratio to raw SQL
//!   life cycle, 16 clients back to back            ─▶ terminal orders/s
//!   life cycle at the sustained rate for --seconds ─▶ kept up?
//!   life cycle at the latency rate for 20 s        ─▶ PlaceOrder and end-to-end p99
//!   resident memory of each service
//! ```
//!
//! Each part runs on a database of its own (cloned from the migrated
//! template, dropped afterwards); the relay parts use a stream of their own
//! on the NATS server at `ORDO_TEST_NATS_URL` (default
//! `nats://127.0.0.1:4222`), the binaries a nats-server of the run's own.
//! Verdicts are observed on NATS (`orders.confirmed` / `orders.rejected`).
//! Results are printed as a table and written as JSON under `.ordo/bench/`.
//!
//! Usage: `ordo-bench [--backlog N] [--rate R] [--sustain R] [--seconds S] [--lifecycle true|false]
//! [--pipeline-only true] [--drain-only true]`; the last two run only the
//! raw SQL transaction and the pipeline, or the raw JetStream publish and
//! the relay drain, with the settings of the environment (for trying a
//! change, not for the record).

mod hops;
mod latency;
mod lifecycle;
mod load;
mod raw;
mod report;

use std::time::Duration;

use anyhow::Context as _;

/// mimalloc, as in the services: the relay and the order service measured
/// in this process run on the allocator they run on when deployed (and the
/// raw clients on the faster one, so the raw limits stay the best this
/// machine does).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Publishes the relay can have in flight at once that the raw JetStream
/// figure is measured at too (the relay: up to 256 per partition).
const RELAY_IN_FLIGHT: usize = 1024;
/// The relay's database connections, and the raw claim+delete workers.
const RELAY_CONNECTIONS: u32 = 8;

/// How long each latency measurement runs.
const LATENCY_PHASE: Duration = Duration::from_secs(20);

/// What to run, from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rows pre-filled for the drain measurement.
    pub backlog: u64,
    /// PlaceOrder calls per second for the latency measurements; by default
    /// the issue's 1,000/s scaled to this machine (see [`report::Scale`]).
    pub rate: Option<u32>,
    /// Orders per second offered in the sustained life-cycle run; by
    /// default the 2,000/s target scaled to this machine.
    pub sustain: Option<u32>,
    /// How long the sustained run lasts.
    pub duration: Duration,
    /// Also run the three release binaries end to end.
    pub lifecycle: bool,
    /// Only the raw SQL transaction and one pipeline run.
    pub pipeline_only: bool,
    /// Only the raw JetStream publish and the relay drain.
    pub drain_only: bool,
}

impl Options {
    fn parse(args: impl Iterator<Item = String>) -> anyhow::Result<Self> {
        let mut options = Self {
            backlog: 200_000,
            rate: None,
            sustain: None,
            duration: Duration::from_secs(60),
            lifecycle: true,
            pipeline_only: false,
            drain_only: false,
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
                "--pipeline-only" => {
                    options.pipeline_only = value
                        .parse()
                        .context("--pipeline-only true|false, --drain-only true|false")?
                }
                "--drain-only" => {
                    options.drain_only = value.parse().context("--drain-only true|false")?
                }
                "--rate" => options.rate = Some(value.parse().context("--rate")?),
                "--sustain" => options.sustain = Some(value.parse().context("--sustain")?),
                "--seconds" => {
                    options.duration = Duration::from_secs(value.parse().context("--seconds")?)
                }
                other => {
                    anyhow::bail!(
                        "unknown option {other}; use --backlog N, --rate R, --sustain R, --seconds S, --lifecycle true|false, --pipeline-only true|false, --drain-only true|false"
                    )
                }
            }
        }
        Ok(options)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse(std::env::args())?;
    if options.drain_only {
        let jetstream =
            raw::jetstream_publish(options.backlog.min(100_000), RELAY_IN_FLIGHT).await?;
        let drain = raw::relay_drain(options.backlog).await?;
        println!(
            "raw JetStream publish {:.0}/s · relay drain {:.0}/s = {:.0}%",
            jetstream.per_second(),
            drain.per_second(),
            100.0 * drain.per_second() / jetstream.per_second()
        );
        return Ok(());
    }
    let load_before = load::sample();
    println!("machine before: {load_before}");
    // The raw limit first, on a quiet machine: every target scales by it.
    let cpu = load::CpuClock::now();
    let raw_sql = lifecycle::raw_sql_order_txn(lifecycle::CLIENTS, Duration::from_secs(10)).await?;
    let scale = report::Scale::of(raw_sql);
    let bin_dir = std::path::PathBuf::from(
        std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "/var/tmp/ordo-target".into()),
    )
    .join("release");
    if options.pipeline_only {
        println!(
            "raw SQL order transaction, {} clients: {raw_sql:.0} txn/s",
            lifecycle::CLIENTS
        );
        let pipeline = lifecycle::pipeline_alone(&bin_dir).await?;
        println!("{}", serde_json::to_string_pretty(&pipeline)?);
        let (before, after) = pipeline.raw_sql_around;
        let around = pipeline.raw_sql_per_second();
        println!(
            "write path {:.2}× · life cycle {:.2}× the higher raw SQL around the pipeline ({before:.0} before, {after:.0} after); {:.2}× · {:.2}× the start's",
            pipeline.write_path_place_per_second / around,
            pipeline.closed_loop_terminal_per_second / around,
            pipeline.write_path_place_per_second / raw_sql,
            pipeline.closed_loop_terminal_per_second / raw_sql
        );
        return Ok(());
    }
    let rate = options.rate.unwrap_or_else(|| scale.rate(1_000.0));
    let sustain = options.sustain.unwrap_or_else(|| scale.rate(2_000.0));
    println!(
        "ordo-bench: backlog {} rows · latency at {rate} orders/s · sustained {sustain} orders/s for {:?}",
        options.backlog, options.duration
    );

    let phase = |name: &str, figure: f64, unit: &str, cpu: load::CpuClock| {
        println!(
            "  {name:<44} {figure:>9.0} {unit}   (CPU {:.0}% busy)",
            cpu.busy_percent_since()
        );
    };
    println!(
        "  raw SQL order transaction, {} clients        {raw_sql:>9.0} txn/s   (CPU {:.0}% busy)",
        lifecycle::CLIENTS,
        cpu.busy_percent_since()
    );
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
    let latency = latency::steady_rate(rate, LATENCY_PHASE).await?;
    let latency_cpu = cpu.busy_percent_since();

    let lifecycle = if options.lifecycle {
        let plan = lifecycle::Plan {
            sustain_rate: sustain,
            sustain_for: options.duration,
            latency_rate: rate,
            latency_for: LATENCY_PHASE,
        };
        Some(lifecycle::run(&bin_dir, plan).await?)
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
    report.scale = scale;
    report.print();
    let path = report.save()?;
    println!("\nresults saved to {}", path.display());
    Ok(())
}
