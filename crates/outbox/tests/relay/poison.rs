//! Nothing a row carries can crash or freeze the relay: a row that can
//! never be published is parked with its reason, only its own aggregate
//! waits behind it, and every other aggregate in its partition flows.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use ordo_outbox::{OutboxEvent, PartitionCount, RelayHandle, outbox_insert_in_txn};
use ordo_testkit::eventually;
use sea_orm::{ConnectionTrait, Statement};

use crate::helpers::{Harness, Written, write_event_in_partitions};

async fn write_raw(harness: &Harness, partitions: PartitionCount, event: OutboxEvent) {
    outbox_insert_in_txn(&harness.db, partitions, &event)
        .await
        .unwrap();
}

fn event(aggregate: &str, correlation_id: &str, payload: Vec<u8>) -> OutboxEvent {
    OutboxEvent::new(
        "/ordo/test",
        "order",
        aggregate.to_owned(),
        "orders.placed",
        "ordo.test.Event",
        chrono::Utc::now(),
        correlation_id,
    )
    .with_payload(payload)
}

async fn column(harness: &Harness, sql: &str) -> Vec<String> {
    harness
        .db
        .query_all_raw(Statement::from_string(
            harness.db.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_can_never_be_published_is_parked_and_only_its_aggregate_waits() {
    let harness = Harness::new().await;
    // One partition: every row shares it, so a blocked partition would show.
    let one = PartitionCount::new(1).unwrap();
    let mut config = harness.config();
    config.partitions = one;
    let mut good: Vec<Written> = Vec::new();
    for n in 0..20 {
        good.push(write_event_in_partitions(&harness.db, one, &format!("good-{n}"), 0).await);
    }
    // A correlation id taken from a message, with a line break in it: the
    // header NATS would refuse.
    write_raw(
        &harness,
        one,
        event(
            "bad-header",
            "corr\r\nNats-Msg-Id: forged",
            b"bad-header:0".to_vec(),
        ),
    )
    .await;
    write_raw(
        &harness,
        one,
        event("bad-header", "corr-test", b"bad-header:1".to_vec()),
    )
    .await;
    // A payload over the server's max payload (1 MiB by default).
    write_raw(
        &harness,
        one,
        event("too-big", "corr-test", vec![b'x'; 1_200_000]),
    )
    .await;
    write_raw(
        &harness,
        one,
        event("too-big", "corr-test", b"too-big:1".to_vec()),
    )
    .await;
    for n in 20..40 {
        good.push(write_event_in_partitions(&harness.db, one, &format!("good-{n}"), 0).await);
    }

    let relay = RelayHandle::start(config).await.unwrap();
    eventually(
        "the good rows published, the two bad ones parked",
        Duration::from_secs(20),
        || async {
            harness.outbox_len().await == 2
                && column(&harness, "SELECT event_id::text FROM outbox_parked")
                    .await
                    .len()
                    == 2
        },
    )
    .await;
    harness.assert_stream_holds_exactly(&good).await;
    let waiting = column(&harness, "SELECT aggregate_id FROM outbox ORDER BY id").await;
    assert_eq!(
        waiting,
        ["bad-header", "too-big"],
        "each aggregate's later row waits"
    );
    let reasons = column(&harness, "SELECT reason FROM outbox_parked ORDER BY id").await;
    assert!(reasons[0].contains("line break"), "{reasons:?}");
    assert!(reasons[1].contains("max payload"), "{reasons:?}");
    let metrics = relay.metrics();
    assert_eq!(metrics.parked.load(Relaxed), 2);
    assert_eq!(
        metrics.actor_restarts.load(Relaxed),
        0,
        "the relay never crashed"
    );
    // The waiting rows stay put: no round claims them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(harness.outbox_len().await, 2);
    relay.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_redriven_parked_row_goes_back_where_it_was() {
    let harness = Harness::new().await;
    let one = PartitionCount::new(1).unwrap();
    let first = write_event_in_partitions(&harness.db, one, "back", 0).await;
    write_event_in_partitions(&harness.db, one, "back", 1).await;
    let id: i64 = column(&harness, "SELECT min(id)::text FROM outbox").await[0]
        .parse()
        .unwrap();
    ordo_outbox::claims::outbox_park(&harness.db, 0, id, "a test parked it")
        .await
        .unwrap();
    let parked = ordo_outbox::parked::parked_list(&harness.db, 0, 10)
        .await
        .unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].event_id.to_string(), first.event_id);
    assert_eq!(parked[0].reason, "a test parked it");
    assert!(
        ordo_outbox::parked::parked_redrive(&harness.db, id)
            .await
            .unwrap()
    );
    assert!(
        !ordo_outbox::parked::parked_redrive(&harness.db, id)
            .await
            .unwrap()
    );
    let ids = column(&harness, "SELECT id::text FROM outbox ORDER BY id").await;
    assert_eq!(
        ids[0],
        id.to_string(),
        "back under its own id, before its successor"
    );
    assert_eq!(ids.len(), 2);
}
