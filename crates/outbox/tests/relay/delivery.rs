//! Every row reaches the stream once, in order per aggregate (invariants
//! 1, 2, 4); a local commit's nudge wakes the relay at once.

use std::time::Duration;

use ordo_outbox::RelayHandle;
use ordo_outbox::stream::ensure_stream;
use ordo_testkit::{eventually, nats::stream_config};

use ordo_outbox::PartitionCount;

use crate::helpers::{Harness, write_event_in_partitions, write_event_in_txn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_reaches_the_stream_once_in_order_per_aggregate() {
    let harness = Harness::new().await;
    let relay = RelayHandle::start(harness.config()).await.unwrap();
    let mut written = harness.write("agg-", 300, 5).await;
    written.extend(harness.write("late-", 50, 4).await);

    harness.drained(Duration::from_secs(30)).await;
    harness.assert_stream_holds_exactly(&written).await;
    let metrics = relay.metrics();
    assert_eq!(
        metrics.published.load(std::sync::atomic::Ordering::Relaxed),
        written.len() as u64
    );
    assert!(metrics.commit_to_ack.count() >= written.len() as u64);
    relay.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nudge_publishes_at_once_where_polling_would_wait() {
    let harness = Harness::new().await;
    let mut config = harness.config();
    config.poll_interval = Duration::from_secs(60);
    config.min_poll_interval = Duration::from_secs(60);
    // Long leases: no lease hiccup may restart an actor (whose first round
    // would publish the row) while the test waits.
    config.lease_ttl = Duration::from_secs(30);
    let relay = RelayHandle::start(config).await.unwrap();
    eventually("all partitions leased", Duration::from_secs(5), || async {
        relay.held_partitions().len() == 16
    })
    .await;
    // Let the first empty rounds pass; from now on only a nudge wakes an actor.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let first = write_event_in_txn(&harness.db, "quiet", 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        harness.outbox_len().await,
        1,
        "published without a nudge or poll"
    );

    let second = write_event_in_txn(&harness.db, "quiet", 1).await;
    relay
        .nudger()
        .nudge(ordo_outbox::PartitionCount::default().partition_of("quiet"));
    harness.drained(Duration::from_secs(2)).await;
    harness.assert_stream_holds_exactly(&[first, second]).await;
    relay.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// Empty claims are a query each: after rows a nudge announced, the actor
/// keeps its idle pace (the next commit nudges again); only rows a poll
/// found — written without a nudge, as by another replica — make it poll
/// fast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nudged_rows_bring_no_fast_polling_and_unannounced_rows_are_still_found() {
    use std::sync::atomic::Ordering::Relaxed;

    let harness = Harness::new().await;
    let mut config = harness.config();
    let one = ordo_outbox::PartitionCount::new(1).unwrap();
    config.partitions = one;
    config.min_poll_interval = Duration::from_millis(5);
    config.poll_interval = Duration::from_secs(1);
    config.lease_ttl = Duration::from_secs(30);
    let relay = RelayHandle::start(config).await.unwrap();
    eventually("the partition leased", Duration::from_secs(5), || async {
        relay.held_partitions().len() == 1
    })
    .await;
    // Idle long enough for the poll to have slowed to its interval.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let metrics = relay.metrics();
    let empty_before = metrics.empty_claims.load(Relaxed);

    let mut written = Vec::new();
    for seq in 0..40 {
        written.push(write_event_in_partitions(&harness.db, one, "announced", seq).await);
        relay.nudger().nudge(0);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    harness.drained(Duration::from_secs(5)).await;
    let empty = metrics.empty_claims.load(Relaxed) - empty_before;
    // Fast polling after each of the 40 rounds would add 2-3 empty claims
    // per row; at the idle pace, at most a couple of timer polls happen.
    assert!(empty <= 6, "{empty} empty claims while 40 nudged rows came");

    for seq in 0..20 {
        written.push(write_event_in_partitions(&harness.db, one, "unannounced", seq).await);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    harness.drained(Duration::from_secs(5)).await;
    harness.assert_stream_holds_exactly(&written).await;
    relay.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn stream_setup_is_idempotent_and_follows_the_settings() {
    let harness = Harness::new().await;
    let client = async_nats::connect(&harness.nats_url).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let mut settings = harness.config().stream;

    ensure_stream(&jetstream, &settings).await.unwrap();
    ensure_stream(&jetstream, &settings).await.unwrap();
    let config = stream_config(&harness.nats_url, &settings.name)
        .await
        .unwrap();
    assert_eq!(config.duplicate_window, Duration::from_secs(120));
    assert_eq!(
        config.subjects,
        [format!("{}orders.>", settings.subject_prefix)]
    );
    assert_eq!(
        config.storage,
        async_nats::jetstream::stream::StorageType::File
    );

    assert_eq!(config.max_age, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(
        config.discard,
        async_nats::jetstream::stream::DiscardPolicy::New,
        "a full stream refuses new messages rather than dropping old ones"
    );

    settings.duplicate_window = Duration::from_secs(30);
    settings.max_age = Duration::from_secs(3600);
    settings.max_bytes = Some(64 << 20);
    ensure_stream(&jetstream, &settings).await.unwrap();
    let config = stream_config(&harness.nats_url, &settings.name)
        .await
        .unwrap();
    assert_eq!(config.duplicate_window, Duration::from_secs(30));
    assert_eq!(config.max_age, Duration::from_secs(3600));
    assert_eq!(config.max_bytes, 64 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stream_refuses_publishes_and_the_rows_wait_until_there_is_room() {
    let harness = Harness::new().await;
    let mut config = harness.config();
    // Room for a few messages only (the smallest cap a server takes).
    config.stream.max_bytes = Some(1 << 20);
    let client = async_nats::connect(&harness.nats_url).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    ensure_stream(&jetstream, &config.stream).await.unwrap();
    let mut written = Vec::new();
    for n in 0..40 {
        let event = ordo_outbox::OutboxEvent::new(
            "/ordo/test",
            "order",
            format!("full-{n}"),
            "orders.placed",
            "ordo.test.Event",
            chrono::Utc::now(),
            "corr-test",
        )
        .with_payload(format!("full-{n}:0{}", " ".repeat(60_000)).into_bytes());
        ordo_outbox::outbox_insert_in_txn(&harness.db, PartitionCount::default(), &event)
            .await
            .unwrap();
        written.push(event.event_id.to_string());
    }
    let relay = RelayHandle::start(config.clone()).await.unwrap();
    // The stream fills up; the rest is refused, and waits in the outbox.
    eventually("the stream full", Duration::from_secs(20), || async {
        relay
            .metrics()
            .failed
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    })
    .await;
    // A round in flight may have rows stored whose delete is still to come:
    // the count settles once the refused round is over.
    eventually(
        "every row not stored waits",
        Duration::from_secs(20),
        || async {
            let stored = harness.messages().await.len();
            stored < written.len() && harness.outbox_len().await == (written.len() - stored) as i64
        },
    )
    .await;
    // Room again: every row reaches the stream, none dropped, none twice.
    config.stream.max_bytes = Some(64 << 20);
    ensure_stream(&jetstream, &config.stream).await.unwrap();
    harness.drained(Duration::from_secs(30)).await;
    let mut ids: Vec<String> = harness
        .messages()
        .await
        .into_iter()
        .map(|message| message.message_id)
        .collect();
    ids.sort();
    written.sort();
    assert_eq!(ids, written);
    relay.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// Events per round and the median nudge → delivery time of a relay with
/// one partition and `linger`: first `quiet` rows 150 ms apart, then four
/// writers back to back for a second, each row in its own commit with its
/// nudge.
async fn rounds_with_linger(linger: Duration, quiet: usize) -> (f64, Duration) {
    use futures::StreamExt as _;
    use std::sync::atomic::Ordering::Relaxed;

    let harness = Harness::new().await;
    let mut config = harness.config();
    let one = PartitionCount::new(1).unwrap();
    config.partitions = one;
    config.linger = linger;
    config.lease_ttl = Duration::from_secs(30);
    config.poll_interval = Duration::from_secs(1);
    let relay = RelayHandle::start(config).await.unwrap();
    eventually("the partition leased", Duration::from_secs(5), || async {
        relay.held_partitions().len() == 1
    })
    .await;
    let client = async_nats::connect(&harness.nats_url).await.unwrap();
    let mut delivered = client
        .subscribe(format!("{}orders.>", harness.stream.subject_prefix))
        .await
        .unwrap();
    client.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut waits = Vec::new();
    for seq in 0..quiet {
        write_event_in_partitions(&harness.db, one, "quiet", seq).await;
        let nudged = std::time::Instant::now();
        relay.nudger().nudge(0);
        tokio::time::timeout(Duration::from_secs(5), delivered.next())
            .await
            .unwrap()
            .unwrap();
        waits.push(nudged.elapsed());
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    waits.sort();

    let metrics = relay.metrics();
    let rounds_before = metrics.claims.load(Relaxed) - metrics.empty_claims.load(Relaxed);
    let published_before = metrics.published.load(Relaxed);
    let started = std::time::Instant::now();
    let written: Vec<usize> = futures::future::join_all((0..4).map(|writer| {
        let (db, nudger) = (harness.db.clone(), relay.nudger());
        async move {
            let mut seq = 0;
            while started.elapsed() < Duration::from_secs(1) {
                write_event_in_partitions(&db, one, &format!("busy-{writer}"), seq).await;
                nudger.nudge(0);
                seq += 1;
            }
            seq
        }
    }))
    .await;
    let seq: usize = written.iter().sum();
    harness.drained(Duration::from_secs(5)).await;
    let rounds = metrics.claims.load(Relaxed) - metrics.empty_claims.load(Relaxed) - rounds_before;
    let published = metrics.published.load(Relaxed) - published_before;
    assert_eq!(published, seq as u64);
    relay.shutdown(Duration::from_secs(5)).await.unwrap();
    (
        published as f64 / rounds.max(1) as f64,
        waits.get(waits.len() / 2).copied().unwrap_or_default(),
    )
}

/// While rows keep arriving a partition's next round lingers and carries
/// what came meanwhile; a row that finds the actor idle is published at
/// once, however long the linger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_linger_while_rows_arrive_and_a_quiet_partition_publishes_at_once() {
    let (lingering, quiet_wait) = rounds_with_linger(Duration::from_millis(50), 9).await;
    let (eager, _) = rounds_with_linger(Duration::ZERO, 0).await;
    eprintln!(
        "events per round {lingering:.1} (linger 50 ms), {eager:.1} (none); quiet row {quiet_wait:?}"
    );
    assert!(
        lingering >= 2.0 * eager && lingering >= 4.0,
        "events per round: {lingering:.1} with a 50 ms linger, {eager:.1} without"
    );
    assert!(
        quiet_wait < Duration::from_millis(40),
        "a quiet partition's row waited {quiet_wait:?} (median) with a 50 ms linger"
    );
}
