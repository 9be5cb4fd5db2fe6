//! A message delivered twice has one effect: redelivered after a crash
//! between commit and ack, and re-published after the duplicate window.

use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use ordo_proto::processor::v1::ProcessingState;
use uuid::Uuid;

use crate::helpers::TestProcessor;

/// (deliveries, acks pending) of the processor's placed consumer.
async fn placed_consumer(processor: &TestProcessor) -> (u64, usize) {
    let stream = processor
        .jetstream
        .get_stream(&processor.stream.name)
        .await
        .unwrap();
    let mut consumer: PullConsumer = stream.get_consumer("processor-placed").await.unwrap();
    let info = consumer.info().await.unwrap();
    (info.delivered.consumer_sequence, info.num_ack_pending)
}

async fn wait_until_delivered(processor: &TestProcessor, deliveries: u64) {
    ordo_testkit::eventually(
        &format!("{deliveries} deliveries, all acked"),
        Duration::from_secs(20),
        || async {
            let (delivered, pending) = placed_consumer(processor).await;
            delivered >= deliveries && pending == 0
        },
    )
    .await;
}

#[tokio::test]
async fn a_message_redelivered_after_a_crash_before_its_ack_has_one_effect() {
    let processor = TestProcessor::spawn().await;
    processor
        .faults
        .lose_acks
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let order_id = Uuid::now_v7();
    let message_id = processor.publish_placed(order_id, 700).await;
    processor
        .wait_for_state(order_id, ProcessingState::Confirmed)
        .await;

    // The ack was lost: JetStream delivers the message again after the ack wait.
    wait_until_delivered(&processor, 2).await;
    assert_eq!(
        processor
            .faults
            .lose_acks
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    ordo_testkit::eventually(
        "the confirmation published",
        Duration::from_secs(10),
        || async { processor.emitted("confirmed").await.len() == 1 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(processor.emitted("confirmed").await.len(), 1);
    assert_eq!(processor.payments.counts(order_id).await.authorizations, 1);
    assert_eq!(
        processor
            .count(&format!(
                "SELECT count(*) FROM inbox WHERE message_id = '{message_id}'"
            ))
            .await,
        1
    );
}

#[tokio::test]
async fn a_message_republished_after_the_duplicate_window_has_one_effect() {
    let processor = TestProcessor::spawn().await;
    let order_id = Uuid::now_v7();
    let message_id = processor.publish_placed(order_id, 300).await;
    processor
        .wait_for_state(order_id, ProcessingState::Confirmed)
        .await;
    wait_until_delivered(&processor, 1).await;

    // Inside the window JetStream drops it.
    assert!(
        processor
            .publish("orders.placed", &message_id, b"ignored".to_vec())
            .await
    );
    // Outside the window (1 s here) it reaches the stream; the inbox drops it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let payload = ordo_proto::events::v1::OrderPlaced {
        event_id: message_id.clone(),
        order_id: order_id.to_string(),
        currency: "EUR".into(),
        total_minor: 300,
        ..Default::default()
    };
    let duplicate = processor
        .publish(
            "orders.placed",
            &message_id,
            prost::Message::encode_to_vec(&payload),
        )
        .await;
    assert!(!duplicate, "outside the window the stream takes it");
    wait_until_delivered(&processor, 2).await;

    ordo_testkit::eventually(
        "the confirmation published",
        Duration::from_secs(10),
        || async { processor.emitted("confirmed").await.len() == 1 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(processor.emitted("confirmed").await.len(), 1);
    assert_eq!(processor.payments.counts(order_id).await.authorizations, 1);
    assert_eq!(
        processor
            .count("SELECT count(*) FROM processing_errors")
            .await,
        0
    );
}
