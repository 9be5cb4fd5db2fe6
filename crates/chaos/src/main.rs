//! `ordo-chaos`: Ordo's real binaries, two replicas each, over a PostgreSQL
//! and a nats-server of the run's own, placing orders while a seeded
//! schedule kills and restarts everything; then every invariant is checked.
//!
//! ```text
//! ordo-chaos [--orders 20000] [--seed N] [--concurrency 16] [--nats-nodes 1|3] [--tls] [--bin-dir DIR]
//! ```
//!
//! With `--nats-nodes 3` NATS is a three-node JetStream cluster on loopback
//! (the ORDERS stream replicated three times, every service given all three
//! URLs), and restarting NATS means killing the stream's leader. With
//! `--tls` the connections are secured ([`security`]).
//!
//! - `ordo_testkit::PrivatePostgres` and `ordo_testkit::NatsServer` are the
//!   infrastructure; [`services`] the processes; [`load`] the client;
//!   [`faults`] the schedule; [`poison`] the messages no service wrote;
//!   [`verify`] the checks. Exit status 1 on any violation.
#![forbid(unsafe_code)]

mod faults;
mod load;
mod poison;
mod security;
mod services;
mod verify;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use ordo_proto::payments::v1::{Faults, SetFaultsRequest};
use ordo_proto::{OrderServiceClient, PaymentServiceClient, ProcessorServiceClient};
use sea_orm::{ConnectionTrait, Database};
use tokio::time::Instant;

use crate::faults::Fault;
use crate::services::ServiceProcess;

const ADMIN_TOKEN: &str = "chaos-admin-token-0123456789";
const REPLICAS: usize = 2;
/// `OUTBOX_DEDUP_WINDOW`: short enough that a replica frozen past it (the
/// SIGSTOP faults) would store its stale publishes again, were they not
/// fenced.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(15);

struct Options {
    orders: usize,
    seed: u64,
    concurrency: usize,
    nats_nodes: usize,
    tls: bool,
    bin_dir: PathBuf,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        orders: 20_000,
        seed: fastrand::u64(..),
        concurrency: 16,
        nats_nodes: 1,
        tls: false,
        bin_dir: PathBuf::from(
            std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "/var/tmp/ordo-target".into()),
        )
        .join("debug"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--tls" {
            options.tls = true;
            continue;
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--orders" => options.orders = value.parse().context("--orders: a whole number")?,
            "--seed" => options.seed = value.parse().context("--seed: a whole number")?,
            "--concurrency" => {
                options.concurrency = value.parse().context("--concurrency: a whole number")?
            }
            "--bin-dir" => options.bin_dir = PathBuf::from(value),
            "--nats-nodes" => {
                options.nats_nodes = match value.as_str() {
                    "1" => 1,
                    "3" => 3,
                    _ => anyhow::bail!("--nats-nodes: 1 or 3"),
                }
            }
            other => anyhow::bail!(
                "unknown flag {other}; flags: --orders --seed --concurrency --nats-nodes --tls --bin-dir"
            ),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // On Ctrl-C or SIGTERM the run is dropped, and with it every process
    // and the database it started.
    let outcome = tokio::select! {
        outcome = run() => outcome,
        signal = interrupted() => Err(anyhow::anyhow!("stopped by {signal}")),
    };
    match outcome {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(err) => {
            eprintln!("chaos: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    }
}

async fn run() -> anyhow::Result<bool> {
    let options = options()?;
    let plan = faults::plan(options.seed, REPLICAS);
    println!(
        "chaos: {} orders, seed {} (replay: --seed {})",
        options.orders, options.seed, options.seed
    );
    for planned in &plan {
        println!(
            "  planned at {:>4.1}%: {} for {} ms",
            planned.at * 100.0,
            planned.fault,
            planned.downtime_ms
        );
    }

    let run_dir = std::env::temp_dir().join(format!("ordo-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&run_dir)?;
    let security = options.tls.then(security::RunSecurity::new).transpose()?;
    let client_tls = security.as_ref().map(security::RunSecurity::client_tls);
    let nats_security = security
        .as_ref()
        .map(security::RunSecurity::nats_security)
        .unwrap_or_default();
    let postgres = ordo_testkit::PrivatePostgres::start(
        services::free_port()?,
        &["ordo", "ordo_processor"],
        security.as_ref().map(security::RunSecurity::server),
    )
    .await
    .map_err(|err| anyhow::anyhow!("cannot start PostgreSQL: {err}"))?;
    let database_parameters = security
        .as_ref()
        .map(security::RunSecurity::database_parameters)
        .unwrap_or_default();
    let database_url = |database: &str| format!("{}{database_parameters}", postgres.url(database));
    let nats_config = security.as_ref().map(security::RunSecurity::nats_config);
    let mut nats = if options.nats_nodes == 1 {
        vec![match &nats_config {
            Some(config) => ordo_testkit::NatsServer::start_with_config(config).await?,
            None => ordo_testkit::NatsServer::start().await?,
        }]
    } else {
        ordo_testkit::NatsServer::start_cluster_with_config(
            options.nats_nodes,
            nats_config.as_deref(),
        )
        .await?
    };
    let scheme = if options.tls { "tls" } else { "nats" };
    let nats_urls = nats
        .iter()
        .map(|node| format!("{scheme}://{}", node.addr()))
        .collect::<Vec<_>>()
        .join(",");
    let replicas = options.nats_nodes.to_string();
    let common = |database: &str| -> Vec<(String, String)> {
        let secured = security
            .as_ref()
            .map(security::RunSecurity::service_env)
            .unwrap_or_default();
        [
            ("DATABASE_URL", database_url(database)),
            ("NATS_URL", nats_urls.clone()),
            ("NATS_STREAM_REPLICAS", replicas.clone()),
            ("OUTBOX_LEASE_TTL", "3s".into()),
            // A re-publish after it (a row whose ack was lost, taken over
            // later than the window) is stored again: the checks allow that
            // and leave it to the inboxes (invariant 2).
            (
                "OUTBOX_DEDUP_WINDOW",
                humantime::format_duration(DUPLICATE_WINDOW).to_string(),
            ),
            ("OUTBOX_POLL_INTERVAL", "200ms".into()),
            ("HEALTH_PROBE_INTERVAL", "500ms".into()),
            ("SHUTDOWN_TIMEOUT", "2s".into()),
            ("RUST_LOG", "warn".into()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .chain(secured)
        .collect()
    };
    let payments = ServiceProcess::start(
        "payments-sim",
        &options.bin_dir,
        "payments-sim",
        Vec::new(),
        &run_dir,
        None,
    )
    .await?;
    // Between the processors and the simulator, so answers can be lost.
    let payments_proxy = ordo_testkit::TcpProxy::start_http2(payments.addr).await?;
    let mut order_services = Vec::new();
    let mut processors = Vec::new();
    for replica in 0..REPLICAS {
        order_services.push(
            ServiceProcess::start(
                &format!("order-service-{replica}"),
                &options.bin_dir,
                "order-service",
                common("ordo"),
                &run_dir,
                client_tls.clone(),
            )
            .await?,
        );
        let mut env = common("ordo_processor");
        env.extend(
            [
                ("PAYMENTS_URL", format!("http://{}", payments_proxy.addr())),
                ("PROCESSOR_ADMIN_TOKEN", ADMIN_TOKEN.into()),
                ("PROCESSOR_ACK_WAIT", "5s".into()),
                ("PROCESSOR_BACKOFF_BASE", "100ms".into()),
                ("PROCESSOR_BACKOFF_MAX", "2s".into()),
                // Database crashes count as failed attempts: give a message
                // room to outlive one before it is dead-lettered.
                ("PROCESSOR_MAX_ATTEMPTS", "8".into()),
                ("PAYMENTS_BREAKER_COOL_DOWN", "1s".into()),
                ("PROCESSOR_INSTANCE", format!("processor-{replica}")),
            ]
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value)),
        );
        processors.push(
            ServiceProcess::start(
                &format!("processor-{replica}"),
                &options.bin_dir,
                "processor",
                env,
                &run_dir,
                client_tls.clone(),
            )
            .await?,
        );
    }
    println!(
        "chaos: PostgreSQL on {}, NATS on {} ({}), logs in {}",
        postgres.port,
        nats_urls,
        ordo_testkit::nats::nats_server_version(),
        run_dir.display()
    );

    let clients = order_services
        .iter()
        .map(|service| service.channel().map(OrderServiceClient::new))
        .collect::<Result<Vec<_>, _>>()?;
    let mut payments_client =
        PaymentServiceClient::connect(format!("http://{}", payments.addr)).await?;
    let progress = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let load = tokio::spawn(load::place(
        clients,
        options.orders,
        options.concurrency,
        options.seed,
        Arc::clone(&progress),
    ));

    let mut injected = Vec::new();
    let mut phantoms = Vec::new();
    let mut refusals = Vec::new();
    for planned in &plan {
        let threshold = (planned.at * options.orders as f64) as usize;
        while progress.load(Ordering::Relaxed) < threshold && !load.is_finished() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let downtime = Duration::from_millis(planned.downtime_ms);
        let at = started.elapsed();
        match planned.fault {
            Fault::KillOrderService(replica) => {
                order_services[replica].kill().await?;
                tokio::time::sleep(downtime).await;
                order_services[replica].spawn().await?;
            }
            Fault::KillProcessor(replica) => {
                processors[replica].kill().await?;
                tokio::time::sleep(downtime).await;
                processors[replica].spawn().await?;
            }
            Fault::RestartNats => {
                let node = stream_leader(&nats, &nats_urls, &nats_security).await;
                nats[node].stop().await?;
                tokio::time::sleep(downtime).await;
                nats[node].restart().await?;
            }
            Fault::PauseOrderService(replica) => order_services[replica].pause(downtime).await?,
            Fault::PauseProcessor(replica) => processors[replica].pause(downtime).await?,
            Fault::Poison => {
                phantoms.extend(poison::inject(&nats_urls, &nats_security, injected.len()).await?);
            }
            Fault::ChangePartitions => {
                let refused = order_services[0]
                    .start_expecting_refusal(&[("OUTBOX_PARTITIONS", "7")], Duration::from_secs(30))
                    .await?;
                refusals.push(match refused {
                    Some((status, log))
                        if !status.success() && log.contains("OUTBOX_PARTITIONS is 7") =>
                    {
                        Ok(format!("an order-service with OUTBOX_PARTITIONS=7 refused to start ({status})"))
                    }
                    Some((status, log)) => Err(format!(
                        "an order-service with OUTBOX_PARTITIONS=7 ended with {status} without naming the setting: {}",
                        log.lines().last().unwrap_or_default()
                    )),
                    None => Err("an order-service with OUTBOX_PARTITIONS=7 started and ran".to_owned()),
                });
            }
            Fault::TerminateBackends => {
                let admin = Database::connect(postgres.url("postgres")).await?;
                admin
                    .execute_unprepared(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE datname IN ('ordo', 'ordo_processor') AND pid <> pg_backend_pid()",
                    )
                    .await?;
                admin.close().await?;
            }
            Fault::RestartPostgres => postgres
                .crash_and_restart()
                .await
                .map_err(|err| anyhow::anyhow!("cannot restart PostgreSQL: {err}"))?,
            Fault::FlapPayments => {
                set_faults(&mut payments_client, true, Duration::ZERO).await?;
                tokio::time::sleep(downtime).await;
                set_faults(&mut payments_client, false, Duration::ZERO).await?;
            }
            Fault::SlowPayments => {
                set_faults(&mut payments_client, false, Duration::from_millis(1500)).await?;
                tokio::time::sleep(downtime.max(Duration::from_secs(2))).await;
                set_faults(&mut payments_client, false, Duration::ZERO).await?;
            }
            Fault::DropAnswers => payments_proxy.drop_answers(30),
        }
        let line = format!(
            "{:>7.2}s at {:>5} orders: {} ({} ms)",
            at.as_secs_f64(),
            progress.load(Ordering::Relaxed),
            planned.fault,
            planned.downtime_ms
        );
        println!("  injected {line}");
        injected.push(line);
    }
    let placed = load.await?;
    let placing = started.elapsed();
    println!(
        "chaos: {} orders acknowledged in {:.1}s ({} cancelled, {} retried calls, {} abandoned; {} payment answers lost)",
        placed.orders.len(),
        placing.as_secs_f64(),
        placed.cancelled.len(),
        placed.retries,
        placed.abandoned.len(),
        payments_proxy.answers_dropped()
    );

    let sources = verify::Sources {
        orders_db: database_url("ordo"),
        processor_db: database_url("ordo_processor"),
        nats_url: nats_urls.clone(),
        nats_security: nats_security.clone(),
        duplicate_window: DUPLICATE_WINDOW,
        phantoms: phantoms.iter().cloned().collect(),
        payments: payments_client.clone(),
        processor: ProcessorServiceClient::new(processors[0].channel()?),
        admin_token: ADMIN_TOKEN.to_owned(),
    };
    let mut report = verify::verify(&sources, &placed.orders).await?;
    for refusal in refusals {
        match refusal {
            Ok(fact) => report.facts.push(fact),
            Err(violation) => report.violations.push(violation),
        }
    }
    if !placed.abandoned.is_empty() {
        report.violations.push(format!(
            "{} order(s) never acknowledged: {:?}",
            placed.abandoned.len(),
            &placed.abandoned[..placed.abandoned.len().min(10)]
        ));
    }
    println!(
        "chaos: settled {:.1}s after the start",
        started.elapsed().as_secs_f64()
    );
    for fact in &report.facts {
        println!("  fact: {fact}");
    }
    for violation in &report.violations {
        println!("  VIOLATION: {violation}");
    }
    println!(
        "chaos: {} faults injected, {} violations (seed {})",
        injected.len(),
        report.violations.len(),
        options.seed
    );

    for service in order_services.iter_mut().chain(processors.iter_mut()) {
        let _ = service.kill().await;
    }
    drop(payments_proxy);
    drop(payments);
    for node in &mut nats {
        let _ = node.stop().await;
    }
    postgres.destroy().await;
    if report.violations.is_empty() {
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    Ok(report.violations.is_empty())
}

/// The node that leads the ORDERS stream (the only node alone).
async fn stream_leader(
    nats: &[ordo_testkit::NatsServer],
    urls: &str,
    security: &ordo_service_kit::nats::NatsSecurity,
) -> usize {
    if nats.len() == 1 {
        return 0;
    }
    let leader = async {
        let options = security
            .apply(async_nats::ConnectOptions::new())
            .await
            .ok()?;
        let client = ordo_service_kit::nats::connect(urls, options).await.ok()?;
        let mut stream = async_nats::jetstream::new(client)
            .get_stream("ORDERS")
            .await
            .ok()?;
        stream.info().await.ok()?.cluster.clone()?.leader
    }
    .await;
    leader
        .and_then(|leader| {
            nats.iter()
                .position(|node| node.name() == Some(leader.as_str()))
        })
        .unwrap_or(0)
}

async fn set_faults(
    client: &mut PaymentServiceClient<tonic::transport::Channel>,
    outage: bool,
    latency: Duration,
) -> anyhow::Result<()> {
    client
        .set_faults(SetFaultsRequest {
            faults: Some(Faults {
                outage,
                latency_ms: u32::try_from(latency.as_millis()).unwrap_or(u32::MAX),
                decline_above_minor: 1_000_000,
                ..Faults::default()
            }),
        })
        .await?;
    Ok(())
}
