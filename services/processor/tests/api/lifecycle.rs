//! An order's payment life cycle: confirmed, rejected, cancelled, refunded.

use std::time::Duration;

use ordo_proto::events::v1 as events;
use ordo_proto::processor::v1::ProcessingState;
use prost::Message as _;
use uuid::Uuid;

use crate::helpers::TestProcessor;

async fn wait_for_emitted(processor: &TestProcessor, kind: &str, count: usize) {
    ordo_testkit::eventually(
        &format!("{count} {kind} events"),
        Duration::from_secs(20),
        || async { processor.emitted(kind).await.len() >= count },
    )
    .await;
}

#[tokio::test]
async fn a_placed_order_is_authorized_once_and_confirmed() {
    let processor = TestProcessor::spawn().await;
    let order_id = Uuid::now_v7();
    processor.publish_placed(order_id, 1250).await;

    let record = processor
        .wait_for_state(order_id, ProcessingState::Confirmed)
        .await;
    assert!(!record.payment_id.is_empty());
    assert_eq!(record.attempts, 0);
    wait_for_emitted(&processor, "confirmed", 1).await;
    let confirmed = processor.emitted("confirmed").await;
    assert_eq!(confirmed.len(), 1);
    let event = events::OrderConfirmed::decode(confirmed[0].payload.as_slice()).unwrap();
    assert_eq!(event.order_id, order_id.to_string());
    assert_eq!(event.payment_id, record.payment_id);
    assert_eq!(event.correlation_id, format!("corr-{order_id}"));
    assert_eq!(confirmed[0].message_id, event.event_id);
    let counts = processor.payments.counts(order_id).await;
    assert_eq!(
        (counts.authorizations, counts.approvals, counts.refunds),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn a_declined_payment_rejects_the_order_with_the_reason() {
    let processor = TestProcessor::spawn().await;
    let order_id = Uuid::now_v7();
    processor.publish_placed(order_id, 2_000_000).await;

    let record = processor
        .wait_for_state(order_id, ProcessingState::Rejected)
        .await;
    assert!(
        record.status_reason.contains("amount_above_limit"),
        "{}",
        record.status_reason
    );
    wait_for_emitted(&processor, "rejected", 1).await;
    let rejected = processor.emitted("rejected").await;
    let event = events::OrderRejected::decode(rejected[0].payload.as_slice()).unwrap();
    assert!(event.reason.contains("amount_above_limit"));
    assert!(processor.emitted("confirmed").await.is_empty());
    assert_eq!(processor.payments.counts(order_id).await.approvals, 0);
}

#[tokio::test]
async fn cancelling_a_confirmed_order_refunds_it_exactly_once_however_often_cancelled() {
    let processor = TestProcessor::spawn().await;
    let order_id = Uuid::now_v7();
    processor.publish_placed(order_id, 990).await;
    let confirmed = processor
        .wait_for_state(order_id, ProcessingState::Confirmed)
        .await;

    processor.publish_cancelled(order_id).await;
    processor.publish_cancelled(order_id).await;
    let refunded = processor
        .wait_for_state(order_id, ProcessingState::Refunded)
        .await;
    assert_eq!(refunded.payment_id, confirmed.payment_id);
    assert!(!refunded.refund_id.is_empty());
    ordo_testkit::eventually(
        "both cancellations recorded",
        Duration::from_secs(10),
        || async {
            processor
                .count("SELECT count(*) FROM inbox WHERE subject LIKE '%orders.cancelled'")
                .await
                == 2
        },
    )
    .await;
    wait_for_emitted(&processor, "refunded", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(processor.emitted("refunded").await.len(), 1);
    let counts = processor.payments.counts(order_id).await;
    assert_eq!((counts.authorizations, counts.refunds), (1, 1));
}

#[tokio::test]
async fn a_cancellation_during_an_outage_is_recorded_at_once_and_settled_by_a_void() {
    let processor = TestProcessor::spawn().await;
    processor.payments.set_faults(0.0, true).await;
    let order_id = Uuid::now_v7();
    // The cancellation arrives while the placement is failing: it is
    // recorded at once (and acked), never deferred.
    processor.publish_placed(order_id, 500).await;
    processor
        .wait_for_state(order_id, ProcessingState::Retrying)
        .await;
    processor.publish_cancelled(order_id).await;
    processor
        .wait_for_state(order_id, ProcessingState::CancelRequested)
        .await;
    // The placement, unable to void during the outage, is given up: the void
    // stays due, nothing is assumed.
    let parked = processor
        .wait_for_state(order_id, ProcessingState::VoidDue)
        .await;
    assert_eq!(parked.attempts, 5);
    assert!(parked.payment_id.is_empty());
    // The provider is back; the operator redrives the placement: it voids.
    processor.payments.set_faults(0.0, false).await;
    let dead = crate::helpers::dead_letters(&processor).await;
    assert_eq!(dead.len(), 1);
    processor.redrive(dead[0].id, "provider back").await;
    let cancelled = processor
        .wait_for_state(order_id, ProcessingState::Cancelled)
        .await;
    assert!(cancelled.payment_id.is_empty());
    let counts = processor.payments.counts(order_id).await;
    assert_eq!((counts.authorizations, counts.refunds), (0, 0));
    assert!(processor.emitted("refunded").await.is_empty());
}
