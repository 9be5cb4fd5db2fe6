//! A rolling update drops nothing: two `order-service` processes (the built
//! binary) share one database and one NATS; a client spreads PlaceOrder
//! calls over the replicas its health checks call SERVING, as Kubernetes
//! endpoints do; one replica gets SIGTERM under that load. It goes
//! NOT_SERVING at once but serves on through its drain delay, so no call
//! fails; its relay finishes and hands its partitions over, so every order's
//! event is in the stream exactly once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use ordo_proto::OrderServiceClient;
use ordo_proto::events::v1::OrderPlaced;
use ordo_testkit::{NatsServer, TestDatabase, eventually, free_port, health_of};
use prost::Message as _;
use tokio::sync::Mutex;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::valid_request;

/// How long a stopping replica serves on while NOT_SERVING: longer than
/// the client's health-check period.
const DRAIN_DELAY: &str = "1s";
const HEALTH_PERIOD: Duration = Duration::from_millis(100);
const WORKERS: usize = 8;
const LOAD: Duration = Duration::from_secs(4);

struct Replica {
    addr: SocketAddr,
    process: Child,
    ready: Arc<AtomicBool>,
}

impl Drop for Replica {
    /// A failing test leaves no process behind.
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn start(database_url: &str, nats_url: &str) -> Replica {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    let process = Command::new(env!("CARGO_BIN_EXE_order-service"))
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("NATS_URL", nats_url)
        .env("GRPC_LISTEN_ADDR", addr.to_string())
        .env("METRICS_LISTEN_ADDR", "off")
        .env("SHUTDOWN_DRAIN_DELAY", DRAIN_DELAY)
        .env("OUTBOX_LEASE_TTL", "2s")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Replica {
        addr,
        process,
        ready: Arc::new(AtomicBool::new(false)),
    }
}

/// Marks the replica ready while its health says SERVING, checked every
/// [`HEALTH_PERIOD`] (what a kubelet's readiness probe and the endpoints
/// controller do, faster).
fn watch_health(replica: &Replica) -> tokio::task::JoinHandle<()> {
    let (addr, ready) = (replica.addr, Arc::clone(&replica.ready));
    tokio::spawn(async move {
        loop {
            let serving =
                health_of(addr, "ordo.order.v1.OrderService").await == Some(ServingStatus::Serving);
            ready.store(serving, Ordering::SeqCst);
            tokio::time::sleep(HEALTH_PERIOD).await;
        }
    })
}

async fn wait_ready(replica: &Replica) {
    eventually("the replica SERVING", Duration::from_secs(30), || async {
        replica.ready.load(Ordering::SeqCst)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_stopped_under_load_fails_no_call_and_publishes_each_order_once() {
    let nats = NatsServer::start().await.unwrap();
    let database = TestDatabase::create().await.unwrap();
    // One at a time: the first migrates the database.
    let mut first = start(database.url(), &nats.url());
    let first_health = watch_health(&first);
    wait_ready(&first).await;
    let second = start(database.url(), &nats.url());
    let second_health = watch_health(&second);
    wait_ready(&second).await;

    let replicas = Arc::new(vec![
        (
            Arc::clone(&first.ready),
            OrderServiceClient::connect(format!("http://{}", first.addr))
                .await
                .unwrap(),
        ),
        (
            Arc::clone(&second.ready),
            OrderServiceClient::connect(format!("http://{}", second.addr))
                .await
                .unwrap(),
        ),
    ]);
    let next = Arc::new(AtomicU64::new(0));
    let placed = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let until = tokio::time::Instant::now() + LOAD;
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (replicas, next) = (Arc::clone(&replicas), Arc::clone(&next));
            let (placed, failures) = (Arc::clone(&placed), Arc::clone(&failures));
            tokio::spawn(async move {
                while tokio::time::Instant::now() < until {
                    // Round robin over the replicas the health checks call ready.
                    let turn = next.fetch_add(1, Ordering::SeqCst) as usize;
                    let Some((_, client)) = (0..replicas.len())
                        .map(|offset| &replicas[(turn + offset) % replicas.len()])
                        .find(|(ready, _)| ready.load(Ordering::SeqCst))
                    else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    match client.clone().place_order(valid_request()).await {
                        Ok(answer) => placed
                            .lock()
                            .await
                            .push(answer.into_inner().order.unwrap().order_id),
                        Err(status) => failures.lock().await.push(status),
                    }
                }
            })
        })
        .collect();

    tokio::time::sleep(LOAD / 3).await;
    let pid = first.process.id().to_string();
    let signalled = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(signalled.success());
    for worker in workers {
        worker.await.unwrap();
    }
    let exited = tokio::task::spawn_blocking(move || {
        let exited = first.process.wait();
        (first, exited)
    })
    .await
    .unwrap()
    .1
    .unwrap();
    assert!(
        exited.success(),
        "the stopped replica exits cleanly: {exited}"
    );
    first_health.abort();

    let failures = failures.lock().await;
    let placed = placed.lock().await.clone();
    assert!(failures.is_empty(), "failed calls: {failures:?}");
    assert!(placed.len() > 100, "load went through: {}", placed.len());

    // Every order's OrderPlaced is in the stream exactly once (the stopped
    // replica's relay finished its rounds; the other took its partitions).
    let jetstream = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let copies = |placed: Vec<String>| {
        let jetstream = jetstream.clone();
        async move {
            let mut stream = jetstream.get_stream("ORDERS").await.unwrap();
            let last = stream.info().await.unwrap().state.last_sequence;
            let mut copies: BTreeMap<String, u32> =
                placed.into_iter().map(|order_id| (order_id, 0)).collect();
            for sequence in 1..=last {
                let Ok(message) = stream.get_raw_message(sequence).await else {
                    continue;
                };
                if !message.subject.to_string().ends_with("orders.placed") {
                    continue;
                }
                let event = OrderPlaced::decode(message.payload).unwrap();
                *copies.entry(event.order_id).or_default() += 1;
            }
            copies
        }
    };
    eventually(
        "every order's event published",
        Duration::from_secs(30),
        || {
            let placed = placed.clone();
            let copies = &copies;
            async move { copies(placed).await.values().all(|count| *count >= 1) }
        },
    )
    .await;
    let copies = copies(placed.clone()).await;
    let twice: Vec<_> = copies.iter().filter(|(_, count)| **count != 1).collect();
    assert!(twice.is_empty(), "published other than once: {twice:?}");
    assert_eq!(copies.len(), placed.len(), "no event without an order");

    second_health.abort();
    drop(second);
}
