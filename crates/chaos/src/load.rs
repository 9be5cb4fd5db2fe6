//! Placing the orders: each with an idempotency key, retried (on either
//! order-service replica) until acknowledged, as a careful client would.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use ordo_proto::OrderServiceClient;
use ordo_proto::order::v1::{OrderLine, PlaceOrderRequest};
use tonic::transport::Channel;

/// Orders above this are declined by the simulator (its default limit).
pub const DECLINED_PRICE: i64 = 2_000_000;

/// What placing produced.
#[derive(Debug, Default)]
pub struct Placed {
    /// (order id, declined by design), one per acknowledged order.
    pub orders: Vec<(String, bool)>,
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
    let results: Vec<(usize, Result<String, ()>, usize)> = futures::stream::iter(0..count)
        .map(|n| {
            let clients = clients.clone();
            let progress = Arc::clone(&progress);
            async move {
                let (result, retries) = place_one(&clients, n, seed).await;
                progress.fetch_add(1, Ordering::Relaxed);
                (n, result, retries)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut placed = Placed::default();
    for (n, result, retries) in results {
        placed.retries += retries;
        match result {
            Ok(order_id) => placed.orders.push((order_id, n.is_multiple_of(10))),
            Err(()) => placed.abandoned.push(n),
        }
    }
    placed
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
