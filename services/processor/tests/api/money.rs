//! The money invariants against the faults a payment pipeline really meets:
//! a cancellation racing a slow payment, an answer lost after the provider
//! acted, a call cut mid-way, a failure on a message's last delivery,
//! consumer settings changed between starts, and dead letters purged.
//!
//! Each test checks the provider's own books (the simulator's counts): a
//! cancelled order ends with nothing charged, a confirmed one charged once.

use std::time::Duration;

use async_nats::jetstream::consumer;
use ordo_proto::processor::v1::{ListDeadLettersRequest, OrderProcessing, ProcessingState};
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{ADMIN_TOKEN, TestProcessor, authorized, dead_letters};

/// Approvals minus refunds at the provider: what the customer is out of pocket.
async fn net_charges(processor: &TestProcessor, order_id: Uuid) -> i64 {
    let counts = processor.payments.counts(order_id).await;
    i64::from(counts.approvals) - i64::from(counts.refunds)
}

/// Waits until the order's record is in one of `states` and has stayed
/// there for a moment (so a late answer would have shown).
async fn settles_in(
    processor: &TestProcessor,
    order_id: Uuid,
    states: &[ProcessingState],
) -> OrderProcessing {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut last = None;
    loop {
        let record = processor.processing(order_id).await.ok();
        if let Some(record) = &record
            && states.contains(&record.state())
        {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let again = processor.processing(order_id).await.unwrap();
            if again.state() == record.state() {
                return again;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "order {order_id} never settled in {states:?}; last {last:?}"
        );
        last = record;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_cancellation_during_a_slow_payment_leaves_nothing_charged_at_a_small_delivery_cap() {
    let processor = TestProcessor::spawn_with(|mut settings| {
        settings.consuming.max_attempts = 3;
        settings.consuming.max_deliver = Some(4);
        settings.payments.timeout = Duration::from_secs(5);
        settings
    })
    .await;
    processor
        .payments
        .set_latency(Duration::from_millis(1500))
        .await;
    let order_id = Uuid::now_v7();
    processor.publish_placed(order_id, 700).await;
    ordo_testkit::eventually(
        "the authorization in flight",
        Duration::from_secs(10),
        || async { processor.payments.calls_received().await >= 1 },
    )
    .await;
    processor.publish_cancelled(order_id).await;

    let record = settles_in(
        &processor,
        order_id,
        &[
            ProcessingState::Cancelled,
            ProcessingState::Refunded,
            ProcessingState::Confirmed,
        ],
    )
    .await;
    assert_eq!(net_charges(&processor, order_id).await, 0, "{record:?}");
    assert!(
        matches!(
            record.state(),
            ProcessingState::Cancelled | ProcessingState::Refunded
        ),
        "{record:?}"
    );
}

#[tokio::test]
async fn a_lost_answer_is_asked_again_under_the_same_key_and_charges_once() {
    let processor = TestProcessor::spawn().await;
    processor.payments_proxy.drop_answers(1);
    let order_id = Uuid::now_v7();
    processor.publish_placed(order_id, 1200).await;

    let record = settles_in(
        &processor,
        order_id,
        &[ProcessingState::Confirmed, ProcessingState::DeadLettered],
    )
    .await;
    assert_eq!(processor.payments_proxy.answers_dropped(), 1);
    assert_eq!(record.state(), ProcessingState::Confirmed, "{record:?}");
    let counts = processor.payments.counts(order_id).await;
    assert_eq!((counts.authorizations, counts.approvals), (1, 1));
}

#[tokio::test]
async fn a_call_cut_mid_way_is_retried_not_dead_lettered() {
    let processor = TestProcessor::spawn().await;
    processor
        .payments
        .set_latency(Duration::from_millis(400))
        .await;
    let order_id = Uuid::now_v7();
    processor.publish_placed(order_id, 1300).await;
    ordo_testkit::eventually(
        "the authorization in flight",
        Duration::from_secs(10),
        || async { processor.payments.calls_received().await >= 1 },
    )
    .await;
    processor.payments_proxy.cut();
    tokio::time::sleep(Duration::from_millis(50)).await;
    processor.payments_proxy.restore();
    processor.payments.set_latency(Duration::ZERO).await;

    let record = settles_in(
        &processor,
        order_id,
        &[ProcessingState::Confirmed, ProcessingState::DeadLettered],
    )
    .await;
    assert_eq!(record.state(), ProcessingState::Confirmed, "{record:?}");
    assert_eq!(processor.payments.counts(order_id).await.approvals, 1);
}

#[tokio::test]
async fn a_failure_on_the_last_delivery_is_not_lost() {
    let processor = TestProcessor::spawn_with(|mut settings| {
        settings.consuming.max_attempts = 2;
        settings.consuming.max_deliver = Some(3);
        settings
    })
    .await;
    processor.payments.set_faults(0.0, true).await;
    // The dead-letter stream disappears: dead-lettering fails until it is back.
    ordo_testkit::eventually(
        "the dead-letter stream",
        Duration::from_secs(10),
        || async {
            processor
                .jetstream
                .get_stream(processor.stream_settings.dead_letter_name())
                .await
                .is_ok()
        },
    )
    .await;
    processor
        .jetstream
        .delete_stream(processor.stream_settings.dead_letter_name())
        .await
        .unwrap();
    let order_id = Uuid::now_v7();
    let message_id = processor.publish_placed(order_id, 800).await;
    ordo_testkit::eventually(
        "every allowed delivery spent",
        Duration::from_secs(20),
        || async {
            processor
                .count(&format!(
                    "SELECT count(*) FROM processing_errors WHERE message_id = '{message_id}'"
                ))
                .await
                >= 2
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The stream comes back (listing dead letters creates it again).
    processor
        .client
        .clone()
        .list_dead_letters(authorized(ListDeadLettersRequest::default(), ADMIN_TOKEN))
        .await
        .unwrap();
    ordo_testkit::eventually(
        "the message dead-lettered once the stream is back",
        Duration::from_secs(30),
        || async {
            processor
                .client
                .clone()
                .list_dead_letters(authorized(ListDeadLettersRequest::default(), ADMIN_TOKEN))
                .await
                .is_ok_and(|page| {
                    page.into_inner()
                        .dead_letters
                        .iter()
                        .any(|dead| dead.message_id == message_id)
                })
        },
    )
    .await;
    // The dead letter is stored first, then the record settles (in the
    // next settlement commit): an instant apart.
    processor
        .wait_for_state(order_id, ProcessingState::DeadLettered)
        .await;
}

#[tokio::test]
async fn changed_consumer_settings_reach_the_server_on_the_next_start() {
    let processor = TestProcessor::spawn_with(|mut settings| {
        settings.consuming.max_deliver = Some(7);
        settings.consuming.ack_wait = Duration::from_secs(3);
        settings.consuming.concurrency = 2;
        settings
    })
    .await;
    let stream = processor.stream.name.clone();
    let stream_settings = processor.stream_settings.clone();
    let test_stream = processor.stream.clone();
    let jetstream = processor.jetstream.clone();
    ordo_testkit::eventually("the durable consumers", Duration::from_secs(10), || {
        let jetstream = jetstream.clone();
        let stream = stream.clone();
        async move {
            let Ok(stream) = jetstream.get_stream(&stream).await else {
                return false;
            };
            stream
                .get_consumer::<consumer::pull::Config>("processor-placed")
                .await
                .is_ok()
        }
    })
    .await;
    processor.stop().await.unwrap();

    let restarted = TestProcessor::spawn_on(test_stream, stream_settings, |mut settings| {
        settings.consuming.max_deliver = Some(9);
        settings.consuming.ack_wait = Duration::from_secs(4);
        settings.consuming.concurrency = 3;
        settings
    })
    .await;
    let order_id = Uuid::now_v7();
    restarted.publish_placed(order_id, 100).await;
    restarted
        .wait_for_state(order_id, ProcessingState::Confirmed)
        .await;
    for kind in ["placed", "cancelled"] {
        let mut consumer: consumer::PullConsumer = restarted
            .jetstream
            .get_stream(&stream)
            .await
            .unwrap()
            .get_consumer(&format!("processor-{kind}"))
            .await
            .unwrap();
        let config = &consumer.info().await.unwrap().config;
        assert_eq!(config.ack_wait, Duration::from_secs(4), "{kind}");
        assert_eq!(config.max_deliver, 9, "{kind}");
        assert_eq!(config.max_ack_pending, 12, "{kind}");
    }
}

#[tokio::test]
async fn purging_a_dead_lettered_placement_voids_it_and_rejects_its_order() {
    let processor = TestProcessor::spawn_with(|mut settings| {
        settings.consuming.max_attempts = 2;
        settings
    })
    .await;
    // Its answers lost, then the provider down: the placement may have charged.
    processor.payments_proxy.drop_answers(1);
    processor.payments.set_faults(0.0, true).await;
    let order_id = Uuid::now_v7();
    processor.publish_placed(order_id, 900).await;
    processor
        .wait_for_state(order_id, ProcessingState::DeadLettered)
        .await;
    let dead_letters = dead_letters(&processor).await;

    // While the provider is down the purge is refused: nothing can be
    // confirmed, and the dead letter stays.
    let refused = processor
        .purge(dead_letters[0].id, "the customer asked us to drop it")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert_eq!(crate::helpers::dead_letters(&processor).await.len(), 1);

    processor.payments.set_faults(0.0, false).await;
    let purged = processor
        .purge(dead_letters[0].id, "the customer asked us to drop it")
        .await
        .unwrap();
    assert_eq!(purged.state(), ProcessingState::Rejected);
    let record = processor.processing(order_id).await.unwrap();
    assert_eq!(record.state(), ProcessingState::Rejected, "{record:?}");
    assert!(
        record
            .status_reason
            .contains("the customer asked us to drop it")
    );
    let audit: Vec<(&str, &str, &str)> = record
        .audit
        .iter()
        .map(|entry| {
            (
                entry.action.as_str(),
                entry.actor.as_str(),
                entry.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        audit,
        [("purge", "admin", "the customer asked us to drop it")]
    );
    ordo_testkit::eventually(
        "the rejection announced",
        Duration::from_secs(10),
        || async { processor.emitted("rejected").await.len() == 1 },
    )
    .await;
    assert_eq!(net_charges(&processor, order_id).await, 0);
    assert!(crate::helpers::dead_letters(&processor).await.is_empty());
}

#[tokio::test]
async fn purging_a_cancellation_makes_its_refund_first_or_is_refused() {
    let processor = TestProcessor::spawn_with(|mut settings| {
        settings.consuming.max_attempts = 2;
        settings
    })
    .await;
    let order_id = Uuid::now_v7();
    processor.publish_placed(order_id, 1100).await;
    processor
        .wait_for_state(order_id, ProcessingState::Confirmed)
        .await;
    // The refund cannot be made: the cancellation is given up, the refund
    // stays due.
    processor.payments.set_faults(0.0, true).await;
    processor.publish_cancelled(order_id).await;
    processor
        .wait_for_state(order_id, ProcessingState::RefundDue)
        .await;
    ordo_testkit::eventually(
        "the cancellation dead-lettered",
        Duration::from_secs(20),
        || async { crate::helpers::dead_letters(&processor).await.len() == 1 },
    )
    .await;
    let dead = crate::helpers::dead_letters(&processor).await;
    assert!(dead[0].source_subject.ends_with("orders.cancelled"));
    let refused = processor
        .purge(dead[0].id, "giving up on this one")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert_eq!(
        processor.processing(order_id).await.unwrap().state(),
        ProcessingState::RefundDue
    );

    processor.payments.set_faults(0.0, false).await;
    let purged = processor
        .purge(dead[0].id, "giving up on this one")
        .await
        .unwrap();
    assert_eq!(purged.state(), ProcessingState::Refunded);
    let record = processor.processing(order_id).await.unwrap();
    assert_eq!(record.state(), ProcessingState::Refunded);
    assert!(!record.refund_id.is_empty());
    assert_eq!(net_charges(&processor, order_id).await, 0);
    ordo_testkit::eventually("the refund announced", Duration::from_secs(10), || async {
        processor.emitted("refunded").await.len() == 1
    })
    .await;
}

#[tokio::test]
async fn a_cancellation_of_a_dead_lettered_placement_voids_what_it_may_have_charged() {
    let processor = TestProcessor::spawn_with(|mut settings| {
        settings.consuming.max_attempts = 2;
        settings
    })
    .await;
    // The provider charges, but every answer is lost: the placement is
    // given up although the customer was charged.
    processor.payments_proxy.drop_answers(100);
    let order_id = Uuid::now_v7();
    processor.publish_placed(order_id, 1500).await;
    processor
        .wait_for_state(order_id, ProcessingState::DeadLettered)
        .await;
    assert_eq!(processor.payments.counts(order_id).await.approvals, 1);
    processor.payments_proxy.drop_answers(0);

    processor.publish_cancelled(order_id).await;
    let record = settles_in(
        &processor,
        order_id,
        &[ProcessingState::Cancelled, ProcessingState::Refunded],
    )
    .await;
    assert_eq!(record.state(), ProcessingState::Refunded, "{record:?}");
    assert_eq!(net_charges(&processor, order_id).await, 0);
}
