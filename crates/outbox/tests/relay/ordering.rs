//! Per-aggregate order holds across failures (invariant 4): a failed
//! publish holds back its aggregate's later events, not other aggregates'.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ordo_outbox::{OutboundEvent, PublishService, RelayHandle};
use sea_orm::TransactionTrait;
use tower::{Service as _, ServiceExt as _};

use crate::helpers::{Harness, write_event_in_txn};

/// Fails the publish of `payload` for the first `times` attempts.
fn failing(
    payload: &'static str,
    times: u32,
    attempts: Arc<AtomicU32>,
) -> ordo_outbox::PublisherLayer {
    let left = Arc::new(AtomicU32::new(times));
    Box::new(move |inner: PublishService| {
        PublishService::new(tower::service_fn(move |event: OutboundEvent| {
            let mut inner = inner.clone();
            let left = Arc::clone(&left);
            let attempts = Arc::clone(&attempts);
            async move {
                if event.payload.as_ref() == payload.as_bytes() {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    if left
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        return Err("injected publish failure".into());
                    }
                }
                inner.ready().await?.call(event).await
            }
        }))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_publish_holds_back_its_aggregates_later_events() {
    let harness = Harness::new().await;
    let txn = harness.db.begin().await.unwrap();
    let mut written = Vec::new();
    for seq in 0..5 {
        for aggregate in ["A", "B", "C"] {
            written.push(write_event_in_txn(&txn, aggregate, seq).await);
        }
    }
    txn.commit().await.unwrap();

    let attempts = Arc::new(AtomicU32::new(0));
    let relay = RelayHandle::start_with(harness.config(), failing("A:1", 3, Arc::clone(&attempts)))
        .await
        .unwrap();
    harness.drained(Duration::from_secs(20)).await;

    assert_eq!(
        attempts.load(Ordering::SeqCst),
        4,
        "A:1 failed three times, then went through"
    );
    assert_eq!(relay.metrics().failed.load(Ordering::Relaxed), 3);
    // A:2..A:4 were claimed with A:1 each time, yet stand after it.
    harness.assert_stream_holds_exactly(&written).await;
    relay.shutdown(Duration::from_secs(5)).await.unwrap();
}
