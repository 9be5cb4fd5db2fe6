//! Latency at a steady rate: PlaceOrder through gRPC, open loop, against
//! the order service running in this process with its relay; a NATS
//! subscriber sees each event as the stream stores it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use order_service::{Application, Settings};
use ordo_proto::OrderServiceClient;
use ordo_proto::order::v1::{OrderLine, PlaceOrderRequest};
use ordo_testkit::{TestDatabase, TestStream, nats::shared_nats_url};
use serde::Serialize;

/// Percentiles of a set of samples, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let at = |q: f64| {
            if samples.is_empty() {
                return f64::NAN;
            }
            let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[index].as_secs_f64() * 1000.0
        };
        Self {
            count: samples.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: at(1.0),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub rate: u32,
    pub seconds: f64,
    pub sent: usize,
    pub failed: usize,
    /// The first failure's status, if any.
    pub first_error: Option<String>,
    /// PlaceOrder, from the moment the open loop scheduled it (so queueing
    /// in the client counts) to its response.
    pub place_order: Percentiles,
    /// From the order's `ce-time` (its `created_at`, taken just before the
    /// transaction began) to a core NATS subscriber receiving the event,
    /// which the server delivers as the stream stores it.
    pub write_to_stream: Percentiles,
    /// The relay's own histogram, row `created_at` → publish ack: upper
    /// bound of the p99 bucket.
    pub relay_commit_to_ack_p99_bucket_ms: Option<f64>,
}

fn request(n: u64) -> PlaceOrderRequest {
    PlaceOrderRequest {
        customer_id: format!("bench-{}", n % 1000),
        lines: vec![OrderLine {
            sku: "BENCH-1".into(),
            quantity: 1,
            unit_price_minor: 999,
        }],
        currency: "EUR".into(),
        idempotency_key: String::new(),
    }
}

pub async fn steady_rate(rate: u32, duration: Duration) -> anyhow::Result<Latency> {
    let database = TestDatabase::create().await?;
    let stream = TestStream::new().await;
    let nats_url = shared_nats_url();
    let defaults = Settings::default();
    let settings = Settings {
        database_url: database.url().to_owned(),
        grpc_listen_addr: "127.0.0.1:0".parse()?,
        metrics_listen_addr: None,
        relay: ordo_outbox::RelayConfig {
            nats_url: nats_url.clone(),
            stream: ordo_outbox::StreamSettings::isolated(&stream.name, &stream.subject_prefix),
            ..defaults.relay.clone()
        },
        ..defaults
    };
    let app = Application::build(settings).await?;
    let addr = app.local_addr();
    let relay_metrics = app.relay().context("relay")?.metrics();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stop_rx.await;
    }));

    let subscriber_client = async_nats::connect(&nats_url).await?;
    let mut subscription = subscriber_client
        .subscribe(format!("{}orders.placed", stream.subject_prefix))
        .await?;
    let stream_latencies = Arc::new(Mutex::new(Vec::new()));
    let collector = {
        let latencies = Arc::clone(&stream_latencies);
        tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                let seen = chrono::Utc::now();
                let written = message
                    .headers
                    .as_ref()
                    .and_then(|headers| headers.get("ce-time"))
                    .and_then(|value| chrono::DateTime::parse_from_rfc3339(value.as_str()).ok());
                if let Some(written) = written {
                    let latency = seen
                        .signed_duration_since(written)
                        .to_std()
                        .unwrap_or_default();
                    latencies
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(latency);
                }
            }
        })
    };

    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(OrderServiceClient::connect(format!("http://{addr}")).await?);
    }
    // Warm up the connections and the relay before measuring.
    let connections = clients.len();
    for n in 0..50 {
        clients[n % connections]
            .place_order(request(n as u64))
            .await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stream_latencies
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();

    let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut calls = Vec::new();
    let mut n = 0_u64;
    while started.elapsed() < duration {
        ticker.tick().await;
        let mut client = clients[(n as usize) % clients.len()].clone();
        let request = request(n);
        // Timed from when the call was due, not when it got going.
        let due = started + period.mul_f64(n as f64);
        calls.push(tokio::spawn(async move {
            client.place_order(request).await.map(|_| due.elapsed())
        }));
        n += 1;
    }
    let mut place_latencies = Vec::new();
    let mut failed = 0;
    let mut first_error = None;
    for call in calls {
        match call.await? {
            Ok(latency) => place_latencies.push(latency),
            Err(status) => {
                failed += 1;
                first_error
                    .get_or_insert_with(|| format!("{:?}: {}", status.code(), status.message()));
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let sent = place_latencies.len() + failed;
    let deadline = Instant::now() + Duration::from_secs(15);
    while stream_latencies
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .len()
        < place_latencies.len()
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    collector.abort();
    let write_to_stream = Percentiles::of(std::mem::take(
        &mut *stream_latencies
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    ));
    let relay_p99 = relay_metrics
        .commit_to_ack
        .quantile_upper_bound(0.99)
        .map(|bound| bound.as_secs_f64() * 1000.0);

    let _ = stop_tx.send(());
    server.await??;
    Ok(Latency {
        rate,
        seconds,
        sent,
        failed,
        first_error,
        place_order: Percentiles::of(place_latencies),
        write_to_stream,
        relay_commit_to_ack_p99_bucket_ms: relay_p99,
    })
}
