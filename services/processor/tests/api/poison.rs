//! Nothing a message carries can crash, freeze or stall the processor:
//! a correlation id no header can carry, a message id no index can hold.

use std::time::Duration;

use async_nats::HeaderMap;
use ordo_proto::events::v1 as events;
use ordo_proto::processor::v1::ProcessingState;
use prost::Message as _;
use uuid::Uuid;

use crate::helpers::TestProcessor;

#[tokio::test]
async fn a_placement_whose_correlation_id_no_header_can_carry_is_settled_and_announced() {
    let processor = TestProcessor::spawn().await;
    let order_id = Uuid::now_v7();
    let payload = events::OrderPlaced {
        event_id: Uuid::now_v7().to_string(),
        order_id: order_id.to_string(),
        customer_id: "c-1".into(),
        currency: "EUR".into(),
        total_minor: 700,
        correlation_id: "corr\r\nNats-Msg-Id: forged".into(),
        ..Default::default()
    };
    processor
        .publish("orders.placed", &payload.event_id, payload.encode_to_vec())
        .await;
    processor
        .wait_for_state(order_id, ProcessingState::Confirmed)
        .await;
    ordo_testkit::eventually("the verdict announced", Duration::from_secs(20), || async {
        processor.emitted("confirmed").await.len() == 1
    })
    .await;
    let confirmed = processor.emitted("confirmed").await;
    assert!(
        confirmed[0]
            .header("x-correlation-id")
            .is_none_or(|value| !value.contains(['\r', '\n'])),
        "{:?}",
        confirmed[0].headers
    );
}

#[tokio::test]
async fn a_message_whose_id_no_index_can_hold_is_handled_once() {
    let processor = TestProcessor::spawn().await;
    let order_id = Uuid::now_v7();
    let payload = events::OrderPlaced {
        event_id: Uuid::now_v7().to_string(),
        order_id: order_id.to_string(),
        customer_id: "c-1".into(),
        currency: "EUR".into(),
        total_minor: 800,
        correlation_id: "corr-huge-id".into(),
        ..Default::default()
    };
    let huge_id: String = (0..20_000).map(|_| fastrand::alphanumeric()).collect();
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, huge_id.as_str());
    for _ in 0..2 {
        processor
            .jetstream
            .publish_with_headers(
                processor.stream_settings.subject_for("orders.placed"),
                headers.clone(),
                payload.encode_to_vec().into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    processor
        .wait_for_state(order_id, ProcessingState::Confirmed)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(processor.payments.counts(order_id).await.authorizations, 1);
    assert_eq!(processor.count("SELECT count(*) FROM inbox").await, 1);
}
