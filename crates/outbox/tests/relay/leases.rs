//! Replicas share partitions through leases: never one partition in two
//! replicas, a fair share each once stable, and a stopped or crashed
//! replica's partitions taken over and drained.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use ordo_outbox::{RelayHandle, RelayMetrics};
use ordo_testkit::eventually;
use tokio::sync::watch;

use crate::helpers::Harness;

/// Samples, until stopped, every replica's held partitions and the
/// partitions whose relay actor is alive in it; records any partition found
/// in two replicas by either measure.
fn sample_overlaps(
    replicas: Vec<(watch::Receiver<BTreeSet<i32>>, Arc<RelayMetrics>)>,
    running: Arc<AtomicBool>,
    samples: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut overlaps = Vec::new();
        while running.load(Relaxed) {
            // A crashed replica's last word stays readable; it holds nothing.
            let held: Vec<BTreeSet<i32>> = replicas
                .iter()
                .map(|(r, _)| match r.has_changed() {
                    Ok(_) => r.borrow().clone(),
                    Err(_) => BTreeSet::new(),
                })
                .collect();
            let alive: Vec<BTreeSet<i32>> =
                replicas.iter().map(|(_, m)| m.running_actors()).collect();
            for (what, sets) in [("hold", &held), ("run actors for", &alive)] {
                for (i, a) in sets.iter().enumerate() {
                    for (j, b) in sets.iter().enumerate().skip(i + 1) {
                        let both: Vec<&i32> = a.intersection(b).collect();
                        if !both.is_empty() {
                            overlaps.push(format!("replicas {i} and {j} both {what} {both:?}"));
                        }
                    }
                }
            }
            samples.fetch_add(1, Relaxed);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        overlaps
    })
}

fn held(relays: &[&RelayHandle]) -> Vec<usize> {
    relays.iter().map(|r| r.held_partitions().len()).collect()
}

fn union(relays: &[&RelayHandle]) -> BTreeSet<i32> {
    relays.iter().flat_map(|r| r.held_partitions()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_sixteen_partitions_and_take_over_from_the_fallen() {
    let harness = Harness::new().await;
    let mut relays = Vec::new();
    for _ in 0..3 {
        relays.push(RelayHandle::start(harness.config()).await.unwrap());
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let running = Arc::new(AtomicBool::new(true));
    let samples = Arc::new(AtomicU64::new(0));
    let sampler = sample_overlaps(
        relays
            .iter()
            .map(|r| (r.watch_held(), r.metrics()))
            .collect(),
        Arc::clone(&running),
        Arc::clone(&samples),
    );
    let deadline = Duration::from_secs(15);

    // Stable: every partition held, none above ceil(16 / 3) = 6.
    eventually("a fair split over three replicas", deadline, || async {
        let all: Vec<&RelayHandle> = relays.iter().collect();
        union(&all).len() == 16 && held(&all).iter().all(|n| *n <= 6)
    })
    .await;
    let mut written = harness.write("three-", 100, 2).await;
    harness.drained(deadline).await;

    // A graceful stop releases at once; the other two split the 16.
    let stopped = relays.remove(0);
    stopped.shutdown(Duration::from_secs(5)).await.unwrap();
    eventually("a fair split over two replicas", deadline, || async {
        let all: Vec<&RelayHandle> = relays.iter().collect();
        union(&all).len() == 16 && held(&all).iter().all(|n| *n <= 8)
    })
    .await;
    written.extend(harness.write("two-", 100, 2).await);
    harness.drained(deadline).await;

    // A crash releases nothing: its leases expire (TTL 3 s) and the last
    // replica takes every partition.
    let crashed = relays.remove(0);
    let crashed_partitions = crashed.held_partitions();
    assert!(!crashed_partitions.is_empty());
    crashed.abort().await.unwrap();
    let crashed_at = std::time::Instant::now();
    written.extend(harness.write("one-", 100, 2).await);
    eventually("the survivor holds every partition", deadline, || async {
        relays[0].held_partitions().len() == 16
    })
    .await;
    // Within the TTL (3 s) in principle; some slack for a busy machine.
    assert!(
        crashed_at.elapsed() < Duration::from_secs(6),
        "takeover took {:?}",
        crashed_at.elapsed()
    );
    harness.drained(deadline).await;

    running.store(false, Relaxed);
    let overlaps = sampler.await.unwrap();
    assert!(
        samples.load(Relaxed) > 100,
        "too few samples to mean anything"
    );
    assert!(
        overlaps.is_empty(),
        "partitions held twice: {:?}",
        &overlaps[..overlaps.len().min(5)]
    );
    harness.assert_stream_holds_exactly(&written).await;
    relays
        .remove(0)
        .shutdown(Duration::from_secs(5))
        .await
        .unwrap();
}

/// A replica paused after its claim (SIGSTOP, a VM pause, a stall) for
/// longer than its lease and the duplicate window publishes nothing of
/// that round when it resumes: the partition was taken over meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_paused_past_its_lease_and_the_duplicate_window_publishes_nothing_stale() {
    let harness = Harness::new().await;
    let mut config = harness.config();
    // One partition, so the paused round holds every aggregate's events.
    config.partitions = ordo_outbox::PartitionCount::new(1).unwrap();
    config.stream.duplicate_window = Duration::from_secs(1);
    let paused = RelayHandle::start(config.clone()).await.unwrap();
    eventually(
        "the first replica holds the partition",
        Duration::from_secs(5),
        || async { paused.held_partitions().len() == 1 },
    )
    .await;
    // Its next round that finds rows freezes after its claim for 5.5 s: past
    // its lease, past the duplicate window after the survivor's publishes,
    // within its round's timeout.
    paused.faults().freeze_after_claim_ms.store(5_500, Relaxed);
    let written = harness.write_in(config.partitions, "paused-", 30, 3).await;
    assert_eq!(
        written.len(),
        90,
        "one transaction: one claim takes them all"
    );
    eventually(
        "the paused replica's claim",
        Duration::from_secs(5),
        || async { paused.faults().freeze_after_claim_ms.load(Relaxed) == 0 },
    )
    .await;
    // Its lease runs out; another replica takes the partition and
    // publishes everything; then the duplicate window passes.
    let survivor = RelayHandle::start(ordo_outbox::RelayConfig {
        owner: format!("{}-survivor", config.owner),
        ..config
    })
    .await
    .unwrap();
    harness.drained(Duration::from_secs(20)).await;
    harness.assert_stream_holds_exactly(&written).await;
    // The paused replica wakes up with its claimed batch in hand.
    tokio::time::sleep(Duration::from_secs(5)).await;
    harness.assert_stream_holds_exactly(&written).await;
    assert_eq!(paused.metrics().published.load(Relaxed), 0);
    assert!(paused.metrics().fenced_rounds.load(Relaxed) >= 1);
    survivor.shutdown(Duration::from_secs(5)).await.unwrap();
    paused.abort().await.unwrap();
}
