//! The partition count is recorded with the outbox: a process with another
//! count is refused, a running relay stops when the count changes under
//! it, and `repartition` moves waiting rows so that nothing is stranded
//! and every aggregate keeps its order.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use ordo_outbox::{
    PartitionCount, PartitionsError, RelayHandle, outbox_partitions_record, outbox_repartition,
};

use crate::helpers::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_partition_count_is_refused_until_the_outbox_is_repartitioned() {
    let harness = Harness::new().await;
    let sixteen = PartitionCount::new(16).unwrap();
    let eight = PartitionCount::new(8).unwrap();
    outbox_partitions_record(&harness.db, sixteen)
        .await
        .unwrap();
    let written = harness.write_in(sixteen, "agg-", 40, 3).await;

    // A process started with another count is refused, naming the setting.
    let refused = outbox_partitions_record(&harness.db, eight)
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            PartitionsError::Mismatch {
                configured: 8,
                recorded: 16
            }
        ),
        "{refused:?}"
    );
    assert!(
        refused.to_string().contains("OUTBOX_PARTITIONS"),
        "{refused}"
    );

    // A relay running with another count renews no lease: it publishes nothing.
    let mut config = harness.config();
    config.partitions = eight;
    let wrong = RelayHandle::start(config.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(wrong.held_partitions().is_empty());
    assert_eq!(wrong.metrics().published.load(Relaxed), 0);
    assert_eq!(harness.outbox_len().await, written.len() as i64);

    // Repartitioning is refused while a relay replica is alive (even one
    // that publishes nothing)...
    let running = outbox_repartition(&harness.db, eight).await.unwrap_err();
    assert!(
        matches!(running, PartitionsError::ReplicasRunning { .. }),
        "{running:?}"
    );
    assert!(
        running.to_string().contains("stop every replica"),
        "{running}"
    );
    wrong.abort().await.unwrap();
    // ...and goes through once every replica is gone (leases expired).
    tokio::time::sleep(harness.config().lease_duration()).await;
    let left = harness.outbox_len().await;
    let done = outbox_repartition(&harness.db, eight).await.unwrap();
    assert_eq!((done.from, done.to), (Some(16), 8));
    assert!(done.moved > 0 && done.moved <= left as u64, "{done:?}");
    outbox_partitions_record(&harness.db, eight).await.unwrap();

    // Relays with the new count publish every waiting row, each aggregate in order.
    let relay = RelayHandle::start(config).await.unwrap();
    harness.drained(Duration::from_secs(20)).await;
    harness.assert_stream_holds_exactly(&written).await;
    relay.shutdown(Duration::from_secs(5)).await.unwrap();
}
