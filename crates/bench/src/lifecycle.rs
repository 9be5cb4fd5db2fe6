//! The whole pipeline, as users run it: the three release binaries as
//! processes over PostgreSQL and a nats-server of the run's own, PlaceOrder
//! over gRPC, and each order's verdict (`orders.confirmed` /
//! `orders.rejected`) observed on NATS. Beside it, in the same run, the raw
//! SQL order transaction at the same concurrency.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use ordo_proto::OrderServiceClient;
use ordo_proto::order::v1::{OrderLine, PlaceOrderRequest};
use ordo_testkit::{NatsServer, Schema, TestDatabase};
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde::Serialize;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::hops::{Costs, Snapshot, Watched};
use crate::latency::Percentiles;

/// Clients of the closed-loop and raw SQL phases.
pub const CLIENTS: usize = 16;

/// What the lifecycle run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Lifecycle {
    /// Every batching setting at its default.
    pub batching: Pipeline,
    /// Every batching setting off ([`BATCHING_OFF`]): one order per
    /// transaction on every hop, as before group commit.
    pub unbatched: Pipeline,
    /// `OUTBOX_PARTITIONS` of the write path runs (the service's default unless set).
    pub write_path_partitions: String,
    /// The write path with one outbox partition: one relay actor, fuller rounds.
    pub write_path_one_partition_place_per_second: f64,
    /// Open loop at the sustained-throughput rate (batching on).
    pub sustained: OpenLoop,
    /// Open loop at the latency rate (batching on).
    pub latency: OpenLoop,
    pub resident_mb: Vec<(String, f64)>,
}

/// The figures of one pipeline: write path, closed loop, and an open loop
/// at half the closed loop's terminal rate, with what each order cost.
#[derive(Debug, Clone, Serialize)]
pub struct Pipeline {
    /// The raw SQL order transaction measured just before this pipeline's
    /// write path and just after its closed loop: the machine's raw limit
    /// at the moments its closed loops ran (this VM's speed drifts by a
    /// fifth within minutes, so the start of the run is too far away).
    pub raw_sql_around: (f64, f64),
    /// PlaceOrder closed loop with the order service (and its relay) only.
    pub write_path_place_per_second: f64,
    pub write_path_costs: Costs,
    /// PlaceOrder closed loop with the whole life cycle running.
    pub closed_loop_place_per_second: f64,
    /// Orders that reached their verdict, per second, in that closed loop.
    pub closed_loop_terminal_per_second: f64,
    pub closed_loop_costs: Costs,
    /// Open loop at half `closed_loop_terminal_per_second`.
    pub half_rate: OpenLoop,
    /// What each order of the half-rate open loop cost: batches are smaller
    /// than in the closed loop, so an order costs more.
    pub half_rate_costs: Costs,
}

impl Pipeline {
    /// The raw limit this pipeline's closed loops are compared with: the
    /// higher of the measurements around them (whatever else the machine
    /// does only ever lowers a raw figure, never raises it).
    pub fn raw_sql_per_second(&self) -> f64 {
        self.raw_sql_around.0.max(self.raw_sql_around.1)
    }
}

/// How long each raw SQL measurement around a pipeline runs.
const RAW_AROUND_FOR: Duration = Duration::from_secs(5);

/// The settings that switch every batching off (unknown names are
/// ignored by the binaries that do not read them).
pub const BATCHING_OFF: &[(&str, &str)] = &[
    ("GROUP_COMMIT_MAX", "1"),
    ("GROUP_COMMIT_LINGER", "0"),
    ("PROCESSOR_SETTLE_LINGER", "0"),
    ("STATUS_SETTLE_BATCH", "1"),
    ("PROCESSOR_SETTLE_BATCH", "1"),
    ("OUTBOX_CLAIM_GROUP_MAX", "1"),
    ("OUTBOX_LINGER", "0"),
];

/// The open-loop runs to make.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub sustain_rate: u32,
    pub sustain_for: Duration,
    pub latency_rate: u32,
    pub latency_for: Duration,
}

/// One open-loop run: PlaceOrder on a fixed schedule, whatever the
/// service's pace, latencies from each call's scheduled send.
#[derive(Debug, Clone, Serialize)]
pub struct OpenLoop {
    pub rate: u32,
    pub seconds: f64,
    pub placed: usize,
    pub terminal: usize,
    /// From the first scheduled send to the last verdict.
    pub elapsed_seconds: f64,
    pub terminal_per_second: f64,
    pub place_order: Percentiles,
    pub end_to_end: Percentiles,
}

impl OpenLoop {
    /// Every order reached its verdict, at (nearly) the offered rate.
    pub fn kept_up(&self) -> bool {
        self.terminal == self.placed
            && self.placed > 0
            && self.terminal_per_second >= 0.97 * f64::from(self.rate)
    }
}

struct Process {
    name: &'static str,
    child: Child,
    metrics: std::net::SocketAddr,
}

impl Process {
    fn watched(&self) -> Watched {
        Watched {
            name: self.name,
            pid: self.child.id(),
            metrics: self.metrics,
        }
    }
}

async fn spawn(
    bin_dir: &Path,
    name: &'static str,
    env: &[(&str, String)],
) -> anyhow::Result<(Process, String)> {
    let port = ordo_testkit::free_port()?;
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], ordo_testkit::free_port()?));
    let child = Command::new(bin_dir.join(name))
        .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
        .env("GRPC_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("METRICS_LISTEN_ADDR", metrics.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (run: just bench, which builds it)",
                bin_dir.join(name).display()
            )
        })?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..300 {
        if ordo_testkit::health_of(addr, "ordo.liveness")
            .await
            .is_some()
        {
            return Ok((
                Process {
                    name,
                    child,
                    metrics,
                },
                format!("http://{addr}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{name} did not come up")
}

fn resident_mb(process: &Process) -> f64 {
    let Some(pid) = process.child.id() else {
        return f64::NAN;
    };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn request(n: u64) -> PlaceOrderRequest {
    PlaceOrderRequest {
        customer_id: format!("bench-{}", n % 1000),
        lines: vec![OrderLine {
            sku: "BENCH".into(),
            quantity: 1,
            unit_price_minor: 1_000 + (n % 1000) as i64,
        }],
        currency: "EUR".into(),
        idempotency_key: String::new(),
    }
}

/// Verdicts seen on NATS: order id → when.
type Verdicts = Arc<Mutex<HashMap<String, Instant>>>;

async fn watch_verdicts(nats_url: &str) -> anyhow::Result<Verdicts> {
    let client = async_nats::connect(nats_url).await?;
    let verdicts: Verdicts = Arc::default();
    for subject in ["orders.confirmed", "orders.rejected"] {
        let mut subscription = client.subscribe(subject).await?;
        let verdicts = Arc::clone(&verdicts);
        tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                if let Some(order) = message
                    .headers
                    .as_ref()
                    .and_then(|headers| headers.get("ce-subject"))
                {
                    verdicts
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(order.to_string(), Instant::now());
                }
            }
        });
    }
    Ok(verdicts)
}

/// Runs the lifecycle phases with binaries from `bin_dir`: the pipeline
/// with batching off, then on (and the open-loop runs of `plan` with it).
pub async fn run(bin_dir: &Path, plan: Plan) -> anyhow::Result<Lifecycle> {
    let write_path_one_partition_place_per_second = write_path_alone(bin_dir, "1").await?;
    let off: Vec<(&'static str, String)> = BATCHING_OFF
        .iter()
        .map(|(name, value)| (*name, (*value).to_owned()))
        .collect();
    eprintln!("  every batching setting off:");
    let (unbatched, _) = pipeline(bin_dir, &off, None).await?;
    eprintln!("  batching on (the defaults):");
    let (batching, extra) = pipeline(bin_dir, &[], Some(plan)).await?;
    let (sustained, latency, resident_mb) = extra.context("the open-loop runs of the plan")?;
    Ok(Lifecycle {
        batching,
        unbatched,
        write_path_partitions: std::env::var("OUTBOX_PARTITIONS").unwrap_or_else(|_| "16".into()),
        write_path_one_partition_place_per_second,
        sustained,
        latency,
        resident_mb,
    })
}

/// One pipeline with the settings of the environment, no open-loop plan.
pub async fn pipeline_alone(bin_dir: &Path) -> anyhow::Result<Pipeline> {
    Ok(pipeline(bin_dir, &[], None).await?.0)
}

type PlanRuns = (OpenLoop, OpenLoop, Vec<(String, f64)>);

/// The three binaries with `env` on a nats-server and databases of their
/// own: write path, closed loop, open loop at half its rate; then, given a
/// plan, its open-loop runs and the resident memory.
async fn pipeline(
    bin_dir: &Path,
    env: &[(&'static str, String)],
    plan: Option<Plan>,
) -> anyhow::Result<(Pipeline, Option<PlanRuns>)> {
    let nats = NatsServer::start().await?;
    let raw_sql_before = raw_sql_order_txn(CLIENTS, RAW_AROUND_FOR).await?;
    let orders_db = TestDatabase::create().await?;
    let processor_db = TestDatabase::create_for(Schema::Processor).await?;
    let admin = sea_orm::Database::connect(orders_db.url()).await?;
    let processor_admin = sea_orm::Database::connect(processor_db.url()).await?;
    let with = |own: &[(&'static str, String)]| -> Vec<(&'static str, String)> {
        own.iter()
            .cloned()
            .chain(env.iter().map(|(k, v)| (*k, v.clone())))
            .collect()
    };
    let (payments, payments_url) = spawn(bin_dir, "payments-sim", &with(&[])).await?;
    let (orders, orders_url) = spawn(
        bin_dir,
        "order-service",
        &with(&[
            ("DATABASE_URL", orders_db.url().to_owned()),
            ("NATS_URL", nats.url()),
        ]),
    )
    .await?;
    let verdicts = watch_verdicts(&nats.url()).await?;
    let clients = connect_clients(orders_url).await?;
    let closed_for = Duration::from_secs(10);

    // The write path alone: order service and its relay publishing, no
    // processor yet (its consumer takes these orders up when it starts).
    eprintln!(
        "  write path: {CLIENTS} clients back to back for {closed_for:?}, processor not started"
    );
    let before = Snapshot::take(&[orders.watched()]).await;
    let written = closed_loop(&clients, closed_for, 10_000_000).await;
    let write_path_place_per_second = written as f64 / closed_for.as_secs_f64();
    // Let the relay publish what was written: its rounds count here too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = Snapshot::take(&[orders.watched()]).await;
    let write_path_costs = Costs::between(&before, &after, written);

    let (processor, _) = spawn(
        bin_dir,
        "processor",
        &with(&[
            ("DATABASE_URL", processor_db.url().to_owned()),
            ("NATS_URL", nats.url()),
            ("PAYMENTS_URL", payments_url),
        ]),
    )
    .await?;
    settle(&verdicts, written, Duration::from_secs(120)).await;
    clear(&verdicts);
    let watched = [orders.watched(), processor.watched(), payments.watched()];
    let quiet = || quiesce(&admin, &processor_admin, Duration::from_secs(120));

    // The whole life cycle, closed loop: CLIENTS callers back to back for
    // 10 s; terminal orders counted until the last of them settles.
    eprintln!("  life cycle: {CLIENTS} clients back to back for {closed_for:?}");
    quiet().await?;
    let before = Snapshot::take(&watched).await;
    let closed_started = Instant::now();
    let placed_closed = closed_loop(&clients, closed_for, 500_000_000).await;
    let closed_loop_place_per_second = placed_closed as f64 / closed_for.as_secs_f64();
    let settled_closed = settle(&verdicts, placed_closed, Duration::from_secs(120)).await;
    let closed_loop_terminal_per_second =
        settled_closed as f64 / closed_started.elapsed().as_secs_f64();
    quiet().await?;
    let after = Snapshot::take(&watched).await;
    let closed_loop_costs = Costs::between(&before, &after, settled_closed);
    clear(&verdicts);
    let raw_sql_after = raw_sql_order_txn(CLIENTS, RAW_AROUND_FOR).await?;

    let half = (closed_loop_terminal_per_second / 2.0).round().max(1.0) as u32;
    quiet().await?;
    let before = Snapshot::take(&watched).await;
    let half_rate = open_loop(&clients, &verdicts, half, LATENCY_FOR, 700_000_000).await;
    quiet().await?;
    let after = Snapshot::take(&watched).await;
    let half_rate_costs = Costs::between(&before, &after, half_rate.terminal);
    clear(&verdicts);

    let extra = match plan {
        None => None,
        Some(plan) => {
            let sustained = open_loop(
                &clients,
                &verdicts,
                plan.sustain_rate,
                plan.sustain_for,
                1_000_000_000,
            )
            .await;
            clear(&verdicts);
            let latency = open_loop(
                &clients,
                &verdicts,
                plan.latency_rate,
                plan.latency_for,
                2_000_000_000,
            )
            .await;
            let resident = [&payments, &orders, &processor]
                .iter()
                .map(|p| (p.name.to_owned(), resident_mb(p)))
                .collect();
            Some((sustained, latency, resident))
        }
    };
    drop((payments, orders, processor));
    Ok((
        Pipeline {
            raw_sql_around: (raw_sql_before, raw_sql_after),
            write_path_place_per_second,
            write_path_costs,
            closed_loop_place_per_second,
            closed_loop_terminal_per_second,
            closed_loop_costs,
            half_rate,
            half_rate_costs,
        },
        extra,
    ))
}

/// How long the half-rate open loop runs.
const LATENCY_FOR: Duration = Duration::from_secs(15);

/// The write path of an order service with `partitions` outbox partitions
/// over a database and a nats-server of its own: 16 clients back to back
/// for 10 s; PlaceOrder per second.
async fn write_path_alone(bin_dir: &Path, partitions: &str) -> anyhow::Result<f64> {
    let nats = NatsServer::start().await?;
    let database = TestDatabase::create().await?;
    let (orders, orders_url) = spawn(
        bin_dir,
        "order-service",
        &[
            ("DATABASE_URL", database.url().to_owned()),
            ("NATS_URL", nats.url()),
            ("OUTBOX_PARTITIONS", partitions.to_owned()),
        ],
    )
    .await?;
    let clients = connect_clients(orders_url).await?;
    let duration = Duration::from_secs(10);
    eprintln!(
        "  write path, {partitions} outbox partition(s): {CLIENTS} clients back to back for {duration:?}"
    );
    let written = closed_loop(&clients, duration, 3_000_000_000).await;
    drop(orders);
    Ok(written as f64 / duration.as_secs_f64())
}

/// CLIENTS order-service clients, a connection each, as independent
/// callers would have.
async fn connect_clients(url: String) -> anyhow::Result<Vec<OrderServiceClient<Channel>>> {
    let endpoint = ordo_proto::client::endpoint(&url, &ordo_proto::client::ClientTls::default())?;
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        clients.push(OrderServiceClient::new(endpoint.connect().await?));
    }
    Ok(clients)
}

fn clear(verdicts: &Verdicts) {
    verdicts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
}

/// PlaceOrder at `rate` for `duration` (order numbers from `first`), each
/// call sent at its scheduled moment; then waits (up to 30 s) for the
/// verdicts.
async fn open_loop(
    clients: &[OrderServiceClient<Channel>],
    verdicts: &Verdicts,
    rate: u32,
    duration: Duration,
    first: u64,
) -> OpenLoop {
    let rate = rate.max(1);
    let sent: Arc<Mutex<Vec<(String, Instant, Duration)>>> = Arc::default();
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let started = Instant::now();
    let total = (f64::from(rate) * duration.as_secs_f64()) as u64;
    let mut tasks = Vec::new();
    for n in 0..total {
        let scheduled = started + interval.mul_f64(n as f64);
        tokio::time::sleep_until(scheduled).await;
        let mut client = clients[n as usize % clients.len()].clone();
        let sent = Arc::clone(&sent);
        tasks.push(tokio::spawn(async move {
            if let Ok(response) = client.place_order(request(first + n)).await
                && let Some(order) = response.into_inner().order
            {
                sent.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((order.order_id, scheduled, scheduled.elapsed()));
            }
        }));
        if n % u64::from(rate) == 0 {
            let seen = verdicts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .len();
            eprint!(
                "\r  life cycle at {rate}/s for {duration:?}: {n:>7} sent, {seen:>7} terminal   "
            );
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    let placed = sent
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    settle(verdicts, placed.len(), Duration::from_secs(30)).await;
    eprintln!();
    let seen = verdicts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let last_verdict = seen.values().max().copied().unwrap_or(started);
    let end_to_end: Vec<Duration> = placed
        .iter()
        .filter_map(|(id, scheduled, _)| Some(seen.get(id)?.saturating_duration_since(*scheduled)))
        .collect();
    let terminal = end_to_end.len();
    let elapsed_seconds = last_verdict
        .saturating_duration_since(started)
        .as_secs_f64();
    OpenLoop {
        rate,
        seconds: duration.as_secs_f64(),
        placed: placed.len(),
        terminal,
        elapsed_seconds,
        terminal_per_second: terminal as f64 / elapsed_seconds.max(f64::EPSILON),
        place_order: Percentiles::of(placed.iter().map(|(_, _, took)| *took).collect()),
        end_to_end: Percentiles::of(end_to_end),
    }
}

/// PlaceOrder from every client back to back for `duration` (order
/// numbers from `first`); how many succeeded.
async fn closed_loop(
    clients: &[OrderServiceClient<Channel>],
    duration: Duration,
    first: u64,
) -> usize {
    let started = Instant::now();
    let calls: Vec<usize> = futures::future::join_all(clients.iter().cloned().enumerate().map(
        |(c, mut client)| async move {
            let mut done = 0;
            let mut n = first + 10_000_000 * c as u64;
            while started.elapsed() < duration {
                if client.place_order(request(n)).await.is_ok() {
                    done += 1;
                }
                n += 1;
            }
            done
        },
    ))
    .await;
    calls.iter().sum()
}

/// Waits until `expected` verdicts were seen (or `limit` passed); how many.
async fn settle(verdicts: &Verdicts, expected: usize, limit: Duration) -> usize {
    let until = Instant::now() + limit;
    loop {
        let seen = verdicts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len();
        if seen >= expected || Instant::now() >= until {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (up to `limit`) until the work of the phase before is done
/// everywhere — every order has its verdict applied and both outboxes are
/// empty — so the counters read around the next phase hold its own
/// orders' work only (the processor takes up the write path's orders, and
/// the order service applies verdicts after they were seen on NATS).
async fn quiesce(
    orders: &sea_orm::DatabaseConnection,
    processor: &sea_orm::DatabaseConnection,
    limit: Duration,
) -> anyhow::Result<()> {
    let count = async |db: &sea_orm::DatabaseConnection, sql: &str| -> anyhow::Result<i64> {
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                sql,
            ))
            .await?
            .context("a count returns a row")?;
        Ok(row.try_get_by_index::<i64>(0)?)
    };
    let until = Instant::now() + limit;
    loop {
        let left = count(
            orders,
            "SELECT (SELECT count(*) FROM orders WHERE status = 'PENDING') + (SELECT count(*) FROM outbox)",
        )
        .await?
            + count(processor, "SELECT count(*) FROM outbox").await?;
        if left == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < until,
            "the pipeline did not settle within {limit:?}: {left} orders pending or events unpublished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The order transaction written by hand in SQL (order, line, outbox row,
/// one commit), `clients` at once, for `duration`: what the write path
/// could do without gRPC, validation or the ORM.
pub async fn raw_sql_order_txn(clients: usize, duration: Duration) -> anyhow::Result<f64> {
    let database = TestDatabase::create().await?;
    let db = {
        let mut options = sea_orm::ConnectOptions::new(database.url().to_owned());
        options.max_connections(clients as u32).sqlx_logging(false);
        sea_orm::Database::connect(options).await?
    };
    let started = Instant::now();
    let done: Vec<u64> = futures::future::join_all((0..clients).map(|_| {
        let db = db.clone();
        async move {
            let mut done = 0;
            while started.elapsed() < duration {
                let id = uuid::Uuid::now_v7();
                let Ok(txn) = db.begin().await else { continue };
                let statements = [
                    format!(
                        "INSERT INTO orders (id, customer_id, currency, total_minor, status, correlation_id, created_at, updated_at) \
                         VALUES ('{id}', 'bench', 'EUR', 1000, 'PENDING', 'bench', now(), now())"
                    ),
                    format!("INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price_minor) VALUES ('{id}', 0, 'BENCH', 1, 1000)"),
                    format!(
                        "INSERT INTO outbox (event_id, partition, aggregate_type, aggregate_id, subject, event_type, payload, headers) \
                         VALUES ('{}', 0, 'order', '{id}', 'orders.placed', 'ordo.events.v1.OrderPlaced', '\\x00', '{{}}')",
                        uuid::Uuid::now_v7()
                    ),
                ];
                let mut ok = true;
                for statement in &statements {
                    ok &= txn.execute_unprepared(statement).await.is_ok();
                }
                if ok && txn.commit().await.is_ok() {
                    done += 1;
                }
            }
            done
        }
    }))
    .await;
    Ok(done.iter().sum::<u64>() as f64 / started.elapsed().as_secs_f64())
}
