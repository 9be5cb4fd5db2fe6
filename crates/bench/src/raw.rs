//! Throughput figures: the raw limits (JetStream alone, PostgreSQL alone)
//! and the relay draining a pre-filled backlog through both.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use futures::StreamExt as _;
use ordo_outbox::claims::{outbox_claim_batch, outbox_delete, relay_pool};
use ordo_outbox::{RelayConfig, RelayHandle, StreamSettings};
use ordo_testkit::{TestDatabase, TestStream, nats::shared_nats_url};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde::Serialize;

pub const PARTITIONS: u32 = 16;

/// Items done in a time.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Throughput {
    pub items: u64,
    pub seconds: f64,
}

impl Throughput {
    fn new(items: u64, elapsed: Duration) -> Self {
        Self {
            items,
            seconds: elapsed.as_secs_f64(),
        }
    }

    pub fn per_second(&self) -> f64 {
        self.items as f64 / self.seconds.max(f64::EPSILON)
    }
}

/// The headers a relayed event carries, for like-for-like payloads.
fn event_headers(id: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("ce-specversion", "1.0"),
        ("ce-id", id),
        ("ce-type", "ordo.events.v1.OrderPlaced"),
        ("ce-source", "/ordo/order-service"),
        ("ce-time", "2026-11-24T00:00:00.000000Z"),
        ("content-type", "application/protobuf"),
        ("x-correlation-id", "bench"),
    ] {
        headers.insert(name, value);
    }
    headers
}

/// Pipelined JetStream publishes with `Nats-Msg-Id`, no database.
pub async fn jetstream_publish(messages: u64, in_flight: usize) -> anyhow::Result<Throughput> {
    let stream = TestStream::new().await;
    let client = async_nats::connect(shared_nats_url())
        .await
        .context("NATS")?;
    let jetstream = jetstream::new(client);
    ordo_outbox::stream::ensure_stream(
        &jetstream,
        &StreamSettings::isolated(&stream.name, &stream.subject_prefix),
    )
    .await
    .map_err(|err| anyhow::anyhow!("stream: {err}"))?;
    let subject = format!("{}orders.placed", stream.subject_prefix);
    let payload = Bytes::from(vec![0xab_u8; 130]);

    let started = Instant::now();
    let acked = futures::stream::iter(0..messages)
        .map(|_| {
            let id = uuid_v7();
            let message = PublishMessage::build()
                .payload(payload.clone())
                .headers(event_headers(&id))
                .message_id(&id);
            let jetstream = jetstream.clone();
            let subject = subject.clone();
            async move { jetstream.send_publish(subject, message).await?.await }
        })
        .buffer_unordered(in_flight)
        .filter(|ack| futures::future::ready(ack.is_ok()))
        .count()
        .await;
    let throughput = Throughput::new(acked as u64, started.elapsed());
    let _ = jetstream.delete_stream(&stream.name).await;
    Ok(throughput)
}

/// Claims and deletes 256-row batches over 16 partitions, exactly as the
/// relay's rounds do, with as many workers and connections as the relay
/// has connections; no NATS.
pub async fn claim_and_delete(rows: u64, workers: u32) -> anyhow::Result<Throughput> {
    let database = TestDatabase::create().await?;
    let db = database.connect().await?;
    fill_outbox(&db, rows).await?;
    db.execute_unprepared(&format!(
        "INSERT INTO outbox_leases (partition, owner, expires_at) \
         SELECT generate_series(0, {PARTITIONS} - 1), 'bench', now() + interval '1 hour'"
    ))
    .await?;
    let pool = relay_pool(database.url(), workers).await?;
    let step = usize::try_from(workers.max(1)).unwrap_or(1);

    let started = Instant::now();
    let workers = (0..step as i32).map(|worker| {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut done = 0_u64;
            let mut partitions: Vec<i32> = (worker..PARTITIONS as i32).step_by(step).collect();
            while !partitions.is_empty() {
                let mut still = Vec::new();
                for partition in partitions {
                    let batch = outbox_claim_batch(&pool, partition, "bench", 256, &[]).await?;
                    if batch.is_empty() {
                        continue;
                    }
                    let ids: Vec<i64> = batch.iter().map(|row| row.id).collect();
                    done += outbox_delete(&pool, partition, ids).await?;
                    still.push(partition);
                }
                partitions = still;
            }
            Ok::<_, sea_orm::DbErr>(done)
        })
    });
    let mut deleted = 0;
    for worker in futures::future::join_all(workers).await {
        deleted += worker??;
    }
    Ok(Throughput::new(deleted, started.elapsed()))
}

/// The relay (16 partitions, one replica) draining a pre-filled backlog.
pub async fn relay_drain(rows: u64) -> anyhow::Result<Throughput> {
    let database = TestDatabase::create().await?;
    let db = database.connect().await?;
    fill_outbox(&db, rows).await?;
    let stream = TestStream::new().await;
    let nats_url = shared_nats_url();
    let mut config = RelayConfig::new(database.url(), nats_url.clone());
    config.stream = StreamSettings::isolated(&stream.name, &stream.subject_prefix);
    // The relay settings of the environment (OUTBOX_BATCH, …), as a
    // service would read them.
    let environment = |name: &str| std::env::var(name).ok();
    let config =
        ordo_outbox::settings::relay_config_from(&ordo_service_kit::Lookup(&environment), config)?;

    // Timed from the first ack: the relay's start-up (its connections, the
    // stream, the leases) is no more part of the rate than the raw
    // figures' connections are of theirs.
    let relay = RelayHandle::start(config).await?;
    let metrics = Arc::clone(&relay.metrics());
    let published = || metrics.published.load(std::sync::atomic::Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(600);
    while published() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
        anyhow::ensure!(
            Instant::now() < deadline,
            "the relay published nothing in 10 minutes"
        );
    }
    let started = Instant::now();
    let before = published();
    while published() < rows {
        tokio::time::sleep(Duration::from_millis(5)).await;
        anyhow::ensure!(Instant::now() < deadline, "drain took over 10 minutes");
    }
    let elapsed = started.elapsed();
    relay.shutdown(Duration::from_secs(10)).await?;
    let stored = stream.message_count(&nats_url).await;
    anyhow::ensure!(
        stored == rows,
        "stream holds {stored} messages, {rows} expected"
    );
    let _ = jetstream::new(async_nats::connect(&nats_url).await?)
        .delete_stream(&stream.name)
        .await;
    Ok(Throughput::new(rows - before, elapsed))
}

/// `rows` outbox rows spread over the partitions, shaped like real events.
async fn fill_outbox(db: &DatabaseConnection, rows: u64) -> anyhow::Result<()> {
    db.execute_unprepared(&format!(
        "INSERT INTO outbox (event_id, partition, aggregate_type, aggregate_id, subject, event_type, payload, headers) \
         SELECT gen_random_uuid(), n % {PARTITIONS}, 'order', 'order-' || n, 'orders.placed', \
                'ordo.events.v1.OrderPlaced', decode(repeat('ab', 130), 'hex'), \
                jsonb_build_object('ce-specversion', '1.0', 'ce-type', 'ordo.events.v1.OrderPlaced', \
                  'ce-source', '/ordo/order-service', 'ce-time', '2026-11-24T00:00:00.000000Z', \
                  'content-type', 'application/protobuf', 'x-correlation-id', 'bench') \
         FROM generate_series(1, {rows}) AS n; \
         ANALYZE outbox;"
    ))
    .await?;
    Ok(())
}

fn uuid_v7() -> String {
    uuid::Uuid::now_v7().to_string()
}
