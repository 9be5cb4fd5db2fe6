//! A rolling update of the processor drops nothing: two `processor`
//! processes (the built binary) share one database, one NATS and the
//! payment simulator; orders arrive while a client spreads
//! GetOrderProcessing calls over the replicas its health checks call
//! SERVING; one replica gets SIGTERM. No call fails (it serves on through
//! its drain delay), the messages it held are settled or redelivered, and
//! every order is confirmed once: one approval, one `orders.confirmed`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use ordo_outbox::StreamSettings;
use ordo_proto::ProcessorServiceClient;
use ordo_proto::events::v1 as events;
use ordo_proto::processor::v1::{GetOrderProcessingRequest, ProcessingState};
use ordo_testkit::replicas::{Balancer, Replica};
use ordo_testkit::{NatsServer, Schema, TestDatabase, eventually};
use prost::Message as _;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::helpers::Payments;

const ORDERS: usize = 150;
const WORKERS: usize = 4;

fn start(database_url: &str, nats_url: &str, payments_url: &str) -> Replica {
    Replica::start(
        env!("CARGO_BIN_EXE_processor"),
        &[
            ("DATABASE_URL", database_url),
            ("NATS_URL", nats_url),
            ("PAYMENTS_URL", payments_url),
            ("SHUTDOWN_DRAIN_DELAY", "1s"),
            ("OUTBOX_LEASE_TTL", "2s"),
            ("RUST_LOG", "warn"),
        ],
        "ordo.processor.v1.ProcessorService",
    )
}

async fn publish_placed(jetstream: &jetstream::Context, order_id: Uuid) {
    let payload = events::OrderPlaced {
        event_id: Uuid::now_v7().to_string(),
        order_id: order_id.to_string(),
        customer_id: "c-1".into(),
        currency: "EUR".into(),
        total_minor: 500,
        correlation_id: format!("corr-{order_id}"),
        ..Default::default()
    };
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        payload.event_id.as_str(),
    );
    jetstream
        .publish_with_headers("orders.placed", headers, payload.encode_to_vec().into())
        .await
        .unwrap()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_processor_stopped_under_load_fails_no_call_and_settles_every_order_once() {
    let nats = NatsServer::start().await.unwrap();
    let jetstream = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    ordo_outbox::stream::ensure_stream(&jetstream, &StreamSettings::default())
        .await
        .unwrap();
    let database = TestDatabase::create_for(Schema::Processor).await.unwrap();
    let payments = Payments::spawn().await;
    let payments_url = format!("http://{}", payments.addr);
    let first = start(database.url(), &nats.url(), &payments_url);
    first.wait_ready().await;
    let second = start(database.url(), &nats.url(), &payments_url);
    second.wait_ready().await;

    let balancer = Arc::new(Balancer::over(&[&first, &second]));
    let clients = Arc::new([
        ProcessorServiceClient::connect(format!("http://{}", first.addr))
            .await
            .unwrap(),
        ProcessorServiceClient::connect(format!("http://{}", second.addr))
            .await
            .unwrap(),
    ]);
    let orders: Arc<Vec<Uuid>> = Arc::new((0..ORDERS).map(|_| Uuid::now_v7()).collect());
    let publisher = {
        let (jetstream, orders) = (jetstream.clone(), Arc::clone(&orders));
        tokio::spawn(async move {
            for order_id in orders.iter() {
                publish_placed(&jetstream, *order_id).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let calls_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let (balancer, clients, orders) = (
                Arc::clone(&balancer),
                Arc::clone(&clients),
                Arc::clone(&orders),
            );
            let (failures, calls_done) = (Arc::clone(&failures), Arc::clone(&calls_done));
            tokio::spawn(async move {
                let mut turn = worker;
                while !calls_done.load(std::sync::atomic::Ordering::SeqCst) {
                    let Some(replica) = balancer.pick() else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    turn += 1;
                    let order_id = orders[turn % orders.len()].to_string();
                    match clients[replica]
                        .clone()
                        .get_order_processing(GetOrderProcessingRequest { order_id })
                        .await
                    {
                        Ok(_) => {}
                        Err(status) if status.code() == tonic::Code::NotFound => {}
                        Err(status) => failures.lock().await.push(status),
                    }
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(1)).await;
    first.terminate();
    publisher.await.unwrap();
    calls_done.store(true, std::sync::atomic::Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }
    let exited = first.exited(Duration::from_secs(30)).await;
    assert!(
        exited.success(),
        "the stopped replica exits cleanly: {exited}"
    );
    let failures = failures.lock().await;
    assert!(failures.is_empty(), "failed calls: {failures:?}");

    // Every order confirmed, by the replica left, once.
    let left = clients[1].clone();
    eventually("every order confirmed", Duration::from_secs(60), || async {
        let mut confirmed = 0;
        for order_id in orders.iter() {
            let state = left
                .clone()
                .get_order_processing(GetOrderProcessingRequest {
                    order_id: order_id.to_string(),
                })
                .await
                .ok()
                .and_then(|answer| answer.into_inner().processing)
                .map(|record| record.state());
            confirmed += usize::from(state == Some(ProcessingState::Confirmed));
        }
        confirmed == ORDERS
    })
    .await;
    for order_id in orders.iter() {
        let counts = payments.counts(*order_id).await;
        assert_eq!(counts.approvals, 1, "charged once: {counts:?}");
    }
    eventually(
        "every verdict published",
        Duration::from_secs(30),
        || async { verdicts(&jetstream).await.len() == ORDERS },
    )
    .await;
    let verdicts = verdicts(&jetstream).await;
    let not_once: Vec<_> = verdicts.iter().filter(|(_, count)| **count != 1).collect();
    assert!(
        not_once.is_empty(),
        "verdicts other than once: {not_once:?}"
    );
    drop(second);
}

/// How many `orders.confirmed` each order has in the stream.
async fn verdicts(jetstream: &jetstream::Context) -> BTreeMap<String, u32> {
    let mut stream = jetstream.get_stream("ORDERS").await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut copies = BTreeMap::new();
    for sequence in 1..=last {
        let Ok(message) = stream.get_raw_message(sequence).await else {
            continue;
        };
        if message.subject.to_string() == "orders.confirmed" {
            let event = events::OrderConfirmed::decode(message.payload).unwrap();
            *copies.entry(event.order_id).or_default() += 1;
        }
    }
    copies
}
