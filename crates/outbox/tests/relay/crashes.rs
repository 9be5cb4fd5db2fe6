//! A crash anywhere loses nothing and duplicates nothing in the stream
//! (invariant 2): a relay actor dying between the acks and the delete, an
//! actor panicking, and the broker going away for seconds.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use ordo_outbox::RelayHandle;
use ordo_testkit::NatsServer;

use crate::helpers::{Harness, write_event_in_txn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_publish_and_delete_is_republished_as_duplicates() {
    let harness = Harness::new().await;
    let relay = RelayHandle::start(harness.config()).await.unwrap();
    let metrics = relay.metrics();
    relay.faults().panic_before_delete.store(1, Relaxed);
    let written = harness.write("dup-", 40, 1).await;

    harness.drained(Duration::from_secs(20)).await;

    assert!(
        metrics.actor_restarts.load(Relaxed) >= 1,
        "no actor was restarted"
    );
    assert!(
        metrics.duplicates.load(Relaxed) >= 1,
        "the republish was not acked as a duplicate"
    );
    harness.assert_stream_holds_exactly(&written).await;
    relay.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_actor_is_restarted_and_its_partition_drains() {
    let harness = Harness::new().await;
    let relay = RelayHandle::start(harness.config()).await.unwrap();
    relay.faults().panic_before_claim.store(3, Relaxed);
    let written = harness.write("panic-", 30, 2).await;

    harness.drained(Duration::from_secs(20)).await;

    let metrics = relay.metrics();
    ordo_testkit::eventually("three restarts", Duration::from_secs(10), || async {
        metrics.actor_restarts.load(Relaxed) >= 3
    })
    .await;
    harness.assert_stream_holds_exactly(&written).await;
    relay.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_second_broker_outage_loses_nothing_and_duplicates_nothing() {
    let mut nats = NatsServer::start().await.unwrap();
    let harness = Arc::new(Harness::with_nats(nats.url()).await);
    let relay = RelayHandle::start(harness.config()).await.unwrap();

    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let harness = Arc::clone(&harness);
        let writing = Arc::clone(&writing);
        tokio::spawn(async move {
            let mut written = Vec::new();
            let mut seq = 0;
            while writing.load(Relaxed) && seq < 5_000 {
                for n in 0..5 {
                    written
                        .push(write_event_in_txn(&harness.db, &format!("outage-{n}"), seq).await);
                }
                seq += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            written
        })
    };

    tokio::time::sleep(Duration::from_millis(1500)).await;
    nats.stop().await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let backlog_during_outage = harness.outbox_len().await;
    nats.restart().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    writing.store(false, Relaxed);
    let written = writer.await.unwrap();

    assert!(
        backlog_during_outage > 0,
        "rows should wait while the broker is down"
    );
    harness.drained(Duration::from_secs(30)).await;
    harness.assert_stream_holds_exactly(&written).await;
    relay.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_started_while_the_broker_is_down_publishes_once_it_is_up() {
    let mut nats = NatsServer::start().await.unwrap();
    nats.stop().await.unwrap();
    let harness = Harness::with_nats(nats.url()).await;
    let written = harness.write("early-", 20, 2).await;

    let relay = RelayHandle::start(harness.config()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        harness.outbox_len().await,
        40,
        "nothing can be published yet"
    );

    nats.restart().await.unwrap();
    harness.drained(Duration::from_secs(30)).await;
    harness.assert_stream_holds_exactly(&written).await;
    relay.shutdown(Duration::from_secs(5)).await.unwrap();
}
