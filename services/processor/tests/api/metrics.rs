//! `/metrics` of the processor and the simulator parse as Prometheus text,
//! and their series move as orders flow.

use std::time::Duration;

use ordo_proto::processor::v1::ProcessingState;
use uuid::Uuid;

use crate::helpers::{TestProcessor, sample, scrape};

#[tokio::test]
async fn metrics_follow_the_orders() {
    let processor = TestProcessor::spawn().await;
    let before = scrape(processor.metrics_addr).await;
    assert_eq!(
        sample(
            &before,
            "ordo_consumer_messages_total",
            &[("outcome", "applied")]
        ),
        0.0
    );
    assert_eq!(
        sample(&before, "ordo_breaker_state", &[("dependency", "payments")]),
        0.0
    );

    let confirmed = Uuid::now_v7();
    let rejected = Uuid::now_v7();
    processor.publish_placed(confirmed, 700).await;
    processor.publish_placed(rejected, 5_000_000).await;
    processor
        .publish("orders.placed", "garbage-metrics", vec![0xff])
        .await;
    processor
        .wait_for_state(confirmed, ProcessingState::Confirmed)
        .await;
    processor
        .wait_for_state(rejected, ProcessingState::Rejected)
        .await;
    ordo_testkit::eventually("the counters move", Duration::from_secs(20), || async {
        let now = scrape(processor.metrics_addr).await;
        sample(
            &now,
            "ordo_consumer_messages_total",
            &[("outcome", "applied")],
        ) >= 2.0
            && sample(
                &now,
                "ordo_consumer_messages_total",
                &[("outcome", "dead_lettered")],
            ) >= 1.0
            && sample(&now, "ordo_outbox_published_total", &[]) >= 2.0
            // Polled from JetStream in the background.
            && sample(&now, "ordo_dead_letters", &[]) >= 1.0
    })
    .await;
    let after = scrape(processor.metrics_addr).await;
    for consumer in ["processor-placed", "processor-cancelled"] {
        for family in [
            "ordo_consumer_pending_messages",
            "ordo_consumer_ack_pending_messages",
        ] {
            assert!(
                after
                    .samples
                    .iter()
                    .any(|s| s.metric == family && s.labels.get("consumer") == Some(consumer)),
                "{family} of {consumer}"
            );
        }
    }
    assert_eq!(sample(&after, "ordo_build_info", &[]), 1.0);
    assert!(sample(&after, "process_resident_memory_bytes", &[]) > 0.0);
    assert!(sample(&after, "process_start_time_seconds", &[]) > 1.7e9);
    assert_eq!(
        sample(
            &after,
            "ordo_payment_calls_total",
            &[("call", "authorize"), ("outcome", "approved")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "ordo_payment_calls_total",
            &[("call", "authorize"), ("outcome", "declined")]
        ),
        1.0
    );
    assert!(sample(&after, "ordo_outbox_commit_to_ack_seconds_count", &[]) >= 2.0);

    let handled = |scrape: &prometheus_parse::Scrape| {
        sample(
            scrape,
            "ordo_grpc_server_handled_total",
            &[
                ("grpc_service", "ordo.processor.v1.ProcessorService"),
                ("grpc_method", "GetOrderProcessing"),
                ("grpc_code", "OK"),
            ],
        )
    };
    let before_call = handled(&scrape(processor.metrics_addr).await);
    let mut client = processor.client.clone();
    client
        .get_order_processing(ordo_proto::processor::v1::GetOrderProcessingRequest {
            order_id: confirmed.to_string(),
        })
        .await
        .unwrap();
    let served = scrape(processor.metrics_addr).await;
    assert_eq!(handled(&served), before_call + 1.0);

    let simulator = scrape(processor.payments.metrics_addr).await;
    assert!(sample(&simulator, "ordo_payments_calls_received_total", &[]) >= 2.0);
    assert!(
        sample(
            &simulator,
            "ordo_grpc_server_handled_total",
            &[
                ("grpc_service", "ordo.payments.v1.PaymentService"),
                ("grpc_method", "Authorize"),
                ("grpc_code", "OK")
            ]
        ) >= 2.0
    );
}
