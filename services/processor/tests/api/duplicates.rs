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

/// The store, on a database of its own, with the two copies of one
/// message settled at the same moment — both past the inbox check, as on
/// two replicas — by the one-statement path and its locked fallback.
mod racing_copies {
    use ordo_outbox::PartitionCount;
    use ordo_testkit::{Schema, TestDatabase};
    use processor::messages::PlacedOrder;
    use processor::payments::Authorization;
    use processor::processing::ProcessingState;
    use processor::store::{MessageRef, ProcessingStore, Settled};
    use sea_orm::ConnectionTrait;
    use uuid::Uuid;

    async fn count(store: &ProcessingStore, sql: &str) -> i64 {
        store
            .connection()
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                sql,
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index(0)
            .unwrap()
    }

    fn placed(order_id: Uuid) -> PlacedOrder {
        PlacedOrder {
            order_id,
            amount_minor: 500,
            currency: "EUR".into(),
            correlation_id: "race".into(),
        }
    }

    async fn store(database: &TestDatabase) -> ProcessingStore {
        let db = ordo_migrations::database::connect(database.url(), 24)
            .await
            .unwrap();
        ProcessingStore::new(db, PartitionCount::new(4).unwrap(), None)
    }

    #[tokio::test]
    async fn twenty_copies_settled_at_once_have_one_effect() {
        let database = TestDatabase::create_for(Schema::Processor).await.unwrap();
        let store = store(&database).await;
        for round in 0..5 {
            let order = placed(Uuid::now_v7());
            let message_id = format!("placed-{round}");
            let approved = Authorization::Approved {
                payment_id: format!("pay-{round}"),
            };
            let outcomes = futures::future::join_all((0..20).map(|_| {
                store.placed_settle(
                    MessageRef {
                        message_id: &message_id,
                        subject: "orders.placed",
                    },
                    &order,
                    &approved,
                )
            }))
            .await;
            let applied = outcomes
                .iter()
                .filter(|outcome| matches!(outcome, Ok(Settled::Applied(_))))
                .count();
            let duplicates = outcomes
                .iter()
                .filter(|outcome| matches!(outcome, Ok(Settled::Duplicate)))
                .count();
            assert_eq!((applied, duplicates), (1, 19), "{outcomes:?}");
        }
        assert_eq!(count(&store, "SELECT count(*) FROM inbox").await, 5);
        assert_eq!(count(&store, "SELECT count(*) FROM outbox").await, 5);
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM order_processing WHERE state = 'confirmed'"
            )
            .await,
            5
        );
    }

    #[tokio::test]
    async fn a_verdict_for_a_record_not_awaiting_payment_is_decided_under_the_lock() {
        let database = TestDatabase::create_for(Schema::Processor).await.unwrap();
        let store = store(&database).await;
        let order = placed(Uuid::now_v7());
        let approved = Authorization::Approved {
            payment_id: "pay-late".into(),
        };
        // Cancelled before the authorization came back: a refund is due, no
        // confirmation is written and the message stays open.
        store
            .connection()
            .execute_unprepared(&format!(
                "INSERT INTO order_processing (order_id, state) VALUES ('{}', 'cancelled')",
                order.order_id
            ))
            .await
            .unwrap();
        let message = MessageRef {
            message_id: "placed-late",
            subject: "orders.placed",
        };
        let settled = store
            .placed_settle(message, &order, &approved)
            .await
            .unwrap();
        assert_eq!(
            settled,
            Settled::RefundDue {
                payment_id: "pay-late".into()
            }
        );
        let record = store.processing_get(order.order_id).await.unwrap().unwrap();
        assert_eq!(record.state, ProcessingState::RefundDue);
        assert_eq!(count(&store, "SELECT count(*) FROM outbox").await, 0);
        assert_eq!(count(&store, "SELECT count(*) FROM inbox").await, 0);

        // A dead-lettered record still awaits payment: a redriven message confirms it.
        let redriven = placed(Uuid::now_v7());
        store
            .dead_lettered_mark(redriven.order_id, "five failures")
            .await
            .unwrap();
        let settled = store
            .placed_settle(
                MessageRef {
                    message_id: "placed-redriven",
                    subject: "orders.placed",
                },
                &redriven,
                &approved,
            )
            .await
            .unwrap();
        assert!(matches!(settled, Settled::Applied(_)), "{settled:?}");
        let record = store
            .processing_get(redriven.order_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.state, ProcessingState::Confirmed);
        assert_eq!(record.payment_id.as_deref(), Some("pay-late"));
        assert_eq!(count(&store, "SELECT count(*) FROM outbox").await, 1);
    }
}
