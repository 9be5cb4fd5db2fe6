//! Placing the orders: each with an idempotency key, retried (on either
//! order-service replica) until acknowledged, as a careful client would.
//! Every fifth order is cancelled soon after it is acknowledged — while its
//! payment is typically still in flight — and the cancellation is retried
//! the same way until the order service answers it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use ordo_proto::OrderServiceClient;
use ordo_proto::order::v1::{CancelOrderRequest, OrderLine, PlaceOrderRequest};
use tonic::transport::Channel;

/// Orders above this are declined by the simulator (its default limit).
pub const DECLINED_PRICE: i64 = 2_000_000;

/// What placing produced.
#[derive(Debug, Default)]
pub struct Placed {
    /// (order id, declined by design), one per acknowledged order.
    pub orders: Vec<(String, bool)>,
    /// Orders whose cancellation the order service accepted.
    pub cancelled: Vec<String>,
    /// Orders never acknowledged within the give-up time.
    pub abandoned: Vec<usize>,
    /// Calls that failed and were retried.
    pub retries: usize,
}

/// Places `count` orders over `clients` with `concurrency` in flight,
/// counting acknowledged ones in `progress`.
pub async fn place(
    clients: Vec<OrderServiceClient<Channel>>,
    count: usize,
    concurrency: usize,
    seed: u64,
    progress: Arc<AtomicUsize>,
) -> Placed {
    let results: Vec<(usize, Result<String, ()>, usize, bool)> = futures::stream::iter(0..count)
        .map(|n| {
            let clients = clients.clone();
            let progress = Arc::clone(&progress);
            async move {
                let (result, retries) = place_one(&clients, n, seed).await;
                progress.fetch_add(1, Ordering::Relaxed);
                let cancelled = match &result {
                    Ok(order_id) if n % 5 == 3 => cancel_one(&clients, n, seed, order_id).await,
                    _ => false,
                };
                (n, result, retries, cancelled)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut placed = Placed::default();
    for (n, result, retries, cancelled) in results {
        placed.retries += retries;
        match result {
            Ok(order_id) => {
                if cancelled {
                    placed.cancelled.push(order_id.clone());
                }
                placed.orders.push((order_id, n.is_multiple_of(10)));
            }
            Err(()) => placed.abandoned.push(n),
        }
    }
    placed
}

/// Cancels order `n` after a short, seeded pause; whether the order
/// service accepted it (it refuses an order that already ended).
async fn cancel_one(
    clients: &[OrderServiceClient<Channel>],
    n: usize,
    seed: u64,
    order_id: &str,
) -> bool {
    let pause = fastrand::Rng::with_seed(seed ^ n as u64).u64(0..400);
    tokio::time::sleep(Duration::from_millis(pause)).await;
    let started = tokio::time::Instant::now();
    let mut attempt = 0;
    loop {
        let mut client = clients[(n + attempt) % clients.len()].clone();
        let mut call = tonic::Request::new(CancelOrderRequest {
            order_id: order_id.to_owned(),
            reason: "chaos: changed my mind".into(),
        });
        call.set_timeout(Duration::from_secs(5));
        match client.cancel_order(call).await {
            Ok(_) => return true,
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                // Already ended — unless an earlier try of ours took effect
                // and only its answer was lost: the order is then CANCELLED.
                return attempt > 0 && status.message().contains("is cancelled");
            }
            Err(status) if started.elapsed() < Duration::from_secs(180) => {
                if status.code() == tonic::Code::InvalidArgument {
                    eprintln!("cancellation of order {n} refused for good: {status:?}");
                    return false;
                }
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50 * attempt.min(20) as u64)).await;
            }
            Err(_) => return false,
        }
    }
}

async fn place_one(
    clients: &[OrderServiceClient<Channel>],
    n: usize,
    seed: u64,
) -> (Result<String, ()>, usize) {
    let request = PlaceOrderRequest {
        customer_id: format!("chaos-{}", n % 97),
        lines: vec![OrderLine {
            sku: format!("SKU-{}", n % 13),
            quantity: 1,
            unit_price_minor: if n.is_multiple_of(10) {
                DECLINED_PRICE
            } else {
                1_000 + (n as i64 % 500)
            },
        }],
        currency: "EUR".into(),
        idempotency_key: format!("chaos-{seed}-{n}"),
    };
    let started = tokio::time::Instant::now();
    let mut attempt = 0;
    loop {
        let mut client = clients[(n + attempt) % clients.len()].clone();
        let mut call = tonic::Request::new(request.clone());
        call.set_timeout(Duration::from_secs(5));
        if let Ok(correlation_id) = format!("chaos-{seed}-{n}").parse() {
            call.metadata_mut()
                .insert("x-correlation-id", correlation_id);
        }
        match client.place_order(call).await {
            Ok(response) => {
                let order_id = response
                    .into_inner()
                    .order
                    .map(|order| order.order_id)
                    .unwrap_or_default();
                return (Ok(order_id), attempt);
            }
            Err(status) if started.elapsed() < Duration::from_secs(180) => {
                if matches!(
                    status.code(),
                    tonic::Code::InvalidArgument | tonic::Code::AlreadyExists
                ) {
                    eprintln!("order {n} refused for good: {status:?}");
                    return (Err(()), attempt);
                }
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50 * attempt.min(20) as u64)).await;
            }
            Err(_) => return (Err(()), attempt),
        }
    }
}
