//! A rolling update drops nothing: two `order-service` processes (the built
//! binary) share one database and one NATS; a client spreads PlaceOrder
//! calls over the replicas its health checks call SERVING, as Kubernetes
//! endpoints do; one replica gets SIGTERM under that load. It goes
//! NOT_SERVING at once but serves on through its drain delay, so no call
//! fails; its relay finishes and hands its partitions over, so every order's
//! event is in the stream exactly once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use ordo_proto::OrderServiceClient;
use ordo_proto::events::v1::OrderPlaced;
use ordo_testkit::replicas::{Balancer, Replica};
use ordo_testkit::{NatsServer, TestDatabase, eventually};
use prost::Message as _;
use tokio::sync::Mutex;

use crate::helpers::valid_request;

/// How long a stopping replica serves on while NOT_SERVING: longer than
/// the balancer's health-check period.
const DRAIN_DELAY: &str = "1s";
const WORKERS: usize = 8;
const LOAD: Duration = Duration::from_secs(4);

fn start(database_url: &str, nats_url: &str) -> Replica {
    Replica::start(
        env!("CARGO_BIN_EXE_order-service"),
        &[
            ("DATABASE_URL", database_url),
            ("NATS_URL", nats_url),
            ("SHUTDOWN_DRAIN_DELAY", DRAIN_DELAY),
            ("OUTBOX_LEASE_TTL", "2s"),
            ("RUST_LOG", "warn"),
        ],
        "ordo.order.v1.OrderService",
    )
}

/// How many times each order's `OrderPlaced` is in the stream `ORDERS`.
async fn copies_in_stream(nats_url: &str, placed: &[String]) -> BTreeMap<String, u32> {
    let jetstream = jetstream::new(async_nats::connect(nats_url).await.unwrap());
    let mut stream = jetstream.get_stream("ORDERS").await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut copies: BTreeMap<String, u32> = placed
        .iter()
        .map(|order_id| (order_id.clone(), 0))
        .collect();
    for sequence in 1..=last {
        let Ok(message) = stream.get_raw_message(sequence).await else {
            continue;
        };
        if message.subject.to_string().ends_with("orders.placed") {
            let event = OrderPlaced::decode(message.payload).unwrap();
            *copies.entry(event.order_id).or_default() += 1;
        }
    }
    copies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_stopped_under_load_fails_no_call_and_publishes_each_order_once() {
    let nats = NatsServer::start().await.unwrap();
    let database = TestDatabase::create().await.unwrap();
    // One at a time: the first migrates the database.
    let first = start(database.url(), &nats.url());
    first.wait_ready().await;
    let second = start(database.url(), &nats.url());
    second.wait_ready().await;

    let balancer = Arc::new(Balancer::over(&[&first, &second]));
    let clients = Arc::new([
        OrderServiceClient::connect(format!("http://{}", first.addr))
            .await
            .unwrap(),
        OrderServiceClient::connect(format!("http://{}", second.addr))
            .await
            .unwrap(),
    ]);
    let placed = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let until = tokio::time::Instant::now() + LOAD;
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (balancer, clients) = (Arc::clone(&balancer), Arc::clone(&clients));
            let (placed, failures) = (Arc::clone(&placed), Arc::clone(&failures));
            tokio::spawn(async move {
                while tokio::time::Instant::now() < until {
                    let Some(replica) = balancer.pick() else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    match clients[replica].clone().place_order(valid_request()).await {
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
    first.terminate();
    for worker in workers {
        worker.await.unwrap();
    }
    let exited = first.exited(Duration::from_secs(30)).await;
    assert!(
        exited.success(),
        "the stopped replica exits cleanly: {exited}"
    );

    let failures = failures.lock().await;
    let placed = placed.lock().await.clone();
    assert!(failures.is_empty(), "failed calls: {failures:?}");
    assert!(placed.len() > 100, "load went through: {}", placed.len());

    // Every order's OrderPlaced is in the stream exactly once (the stopped
    // replica's relay finished its rounds; the other took its partitions).
    eventually(
        "every order's event published",
        Duration::from_secs(30),
        || async {
            copies_in_stream(&nats.url(), &placed)
                .await
                .values()
                .all(|count| *count >= 1)
        },
    )
    .await;
    let copies = copies_in_stream(&nats.url(), &placed).await;
    let not_once: Vec<_> = copies.iter().filter(|(_, count)| **count != 1).collect();
    assert!(
        not_once.is_empty(),
        "published other than once: {not_once:?}"
    );
    assert_eq!(copies.len(), placed.len(), "no event without an order");
    drop(second);
}
