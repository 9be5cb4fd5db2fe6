//! What each hop costs per order, read around a phase from the outside:
//! the services' own counters at `/metrics` and each process's CPU time
//! from `/proc`.
//!
//! PostgreSQL's own commit counts (`pg_stat_database.xact_commit`) are not
//! read: a backend that goes idle reports them up to 10 s later
//! (PostgreSQL 15's `PGSTAT_IDLE_INTERVAL`), so a phase's commits would be
//! counted partly in the next one. The services' counters are exact.
//!
//! ```text
//! snapshot before ─▶ phase ─▶ snapshot after ─▶ (after − before) / orders
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Serialize;

/// A running service as the bench sees it.
pub struct Watched {
    pub name: &'static str,
    pub pid: Option<u32>,
    pub metrics: SocketAddr,
}

/// The counters that say how much work was batched (series → value).
const COUNTERS: &[(&str, &[(&str, &str)])] = &[
    ("ordo_db_statements_total", &[]),
    (
        "ordo_group_commit_transactions_total",
        &[("request", "place_order")],
    ),
    (
        "ordo_group_commit_requests_total",
        &[("request", "place_order")],
    ),
    (
        "ordo_group_commit_transactions_total",
        &[("request", "settle")],
    ),
    ("ordo_group_commit_requests_total", &[("request", "settle")]),
    (
        "ordo_group_commit_transactions_total",
        &[("request", "status")],
    ),
    ("ordo_group_commit_requests_total", &[("request", "status")]),
    ("ordo_outbox_published_total", &[]),
    ("ordo_outbox_claims_total", &[("result", "rows")]),
    ("ordo_outbox_claims_total", &[("result", "empty")]),
    ("ordo_outbox_claim_statements_total", &[]),
];

/// Processes outside Ordo whose CPU each order costs too, by command name
/// (every process of that name: PostgreSQL's backends, the nats-servers).
const SHARED_PROCESSES: &[&str] = &["postgres", "nats-server"];

/// Counters and CPU time of every process, at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// (process, counter) → value.
    counters: BTreeMap<(String, String), f64>,
    /// process → CPU seconds (user + system).
    cpu_seconds: BTreeMap<String, f64>,
}

impl Snapshot {
    pub async fn take(processes: &[Watched]) -> Self {
        let mut snapshot = Self::default();
        for process in processes {
            if let Ok(scrape) = ordo_testkit::scrape_parsed(process.metrics).await {
                for (name, labels) in COUNTERS {
                    snapshot.counters.insert(
                        (process.name.to_owned(), series(name, labels)),
                        ordo_testkit::metric(&scrape, name, labels),
                    );
                }
            }
            if let Some(seconds) = process.pid.and_then(cpu_seconds) {
                snapshot
                    .cpu_seconds
                    .insert(process.name.to_owned(), seconds);
            }
        }
        for name in SHARED_PROCESSES {
            snapshot
                .cpu_seconds
                .insert((*name).to_owned(), cpu_seconds_of_command(name));
        }
        snapshot
    }

    fn counter(&self, process: &str, series: &str) -> f64 {
        self.counters
            .get(&(process.to_owned(), series.to_owned()))
            .copied()
            .unwrap_or_default()
    }
}

/// A counter's name with its labels, as one key.
fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let labels: Vec<String> = labels
        .iter()
        .map(|(label, value)| format!("{label}=\"{value}\""))
        .collect();
    format!("{name}{{{}}}", labels.join(","))
}

/// Per-order costs of one phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Costs {
    pub orders: usize,
    /// PlaceOrder calls per transaction (1 with group commit off).
    pub place_orders_per_commit: f64,
    /// Events per relay round, order service's relay.
    pub order_relay_events_per_round: f64,
    /// Events per relay round, processor's relay.
    pub processor_relay_events_per_round: f64,
    /// Claims per order (empty ones included), order service's and processor's relays.
    pub relay_claims_per_order: (f64, f64),
    /// Statements those claims took per order (claims that come at once share one).
    pub relay_claim_statements_per_order: (f64, f64),
    /// Messages per settlement transaction, processor.
    pub processor_messages_per_commit: f64,
    /// Verdicts per transaction, order service's status consumer.
    pub status_messages_per_commit: f64,
    /// SQL statements per order, every process together.
    pub statements_per_order: f64,
    /// CPU microseconds per order, per process.
    pub cpu_us_per_order: BTreeMap<String, f64>,
}

impl Costs {
    pub fn between(before: &Snapshot, after: &Snapshot, orders: usize) -> Self {
        let per_order = |value: f64| value / orders.max(1) as f64;
        let delta = |process: &str, name: &str, labels: &[(&str, &str)]| {
            let series = series(name, labels);
            after.counter(process, &series) - before.counter(process, &series)
        };
        let ratio = |numerator: f64, denominator: f64| {
            if denominator > 0.0 {
                numerator / denominator
            } else {
                f64::NAN
            }
        };
        // Requests per transaction of a group commit; 1 when it wrote
        // nothing (batching off: every request its own transaction).
        let per_commit = |process: &str, request: &str| {
            let labels = [("request", request)];
            let transactions = delta(process, "ordo_group_commit_transactions_total", &labels);
            if transactions > 0.0 {
                delta(process, "ordo_group_commit_requests_total", &labels) / transactions
            } else {
                1.0
            }
        };
        let statements: f64 = ["order-service", "processor", "payments-sim"]
            .iter()
            .map(|process| delta(process, "ordo_db_statements_total", &[]))
            .sum();
        let relay_round = |process: &str| {
            ratio(
                delta(process, "ordo_outbox_published_total", &[]),
                delta(process, "ordo_outbox_claims_total", &[("result", "rows")]),
            )
        };
        let claims_per_order = |process: &str| {
            per_order(
                delta(process, "ordo_outbox_claims_total", &[("result", "rows")])
                    + delta(process, "ordo_outbox_claims_total", &[("result", "empty")]),
            )
        };
        Self {
            orders,
            place_orders_per_commit: per_commit("order-service", "place_order"),
            order_relay_events_per_round: relay_round("order-service"),
            processor_relay_events_per_round: relay_round("processor"),
            relay_claims_per_order: (
                claims_per_order("order-service"),
                claims_per_order("processor"),
            ),
            relay_claim_statements_per_order: (
                per_order(delta(
                    "order-service",
                    "ordo_outbox_claim_statements_total",
                    &[],
                )),
                per_order(delta(
                    "processor",
                    "ordo_outbox_claim_statements_total",
                    &[],
                )),
            ),
            processor_messages_per_commit: per_commit("processor", "settle"),
            status_messages_per_commit: per_commit("order-service", "status"),
            statements_per_order: per_order(statements),
            cpu_us_per_order: after
                .cpu_seconds
                .iter()
                .map(|(process, seconds)| {
                    let before = before.cpu_seconds.get(process).copied().unwrap_or_default();
                    (process.clone(), per_order((seconds - before) * 1e6))
                })
                .collect(),
        }
    }
}

/// User + system CPU seconds of `pid` so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks_per_second())
}

/// User + system CPU seconds of every process named `command` so far.
fn cpu_seconds_of_command(command: &str) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == command)
        })
        .filter_map(cpu_seconds)
        .sum()
}

/// `getconf CLK_TCK`, asked once.
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100.0)
    })
}
