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

/// The store, on a database of its own, with copies of one message
/// settled at the same moment — all past the inbox check, as on several
/// replicas — and decisions made on a record that moved meanwhile.
mod racing_copies {
    use ordo_lifecycle::payment::{self, Answer, Input, Record, Stage, Then};
    use ordo_outbox::PartitionCount;
    use ordo_testkit::{Schema, TestDatabase};
    use processor::store::{MessageRef, OrderRef, ProcessingStore, RecordWrite, Settled};
    use sea_orm::ConnectionTrait;
    use uuid::Uuid;

    async fn count(store: &ProcessingStore, sql: &str) -> i64 {
        ordo_testkit::database::scalar(store.connection(), sql)
            .await
            .unwrap()
    }

    async fn store(database: &TestDatabase) -> ProcessingStore {
        let db = ordo_migrations::database::connect(database.url(), 24)
            .await
            .unwrap();
        ProcessingStore::new(db, PartitionCount::new(4).unwrap(), None)
    }

    fn approved(payment_id: &str) -> Input {
        Input::Answer(Answer::Approved {
            payment_id: payment_id.into(),
        })
    }

    #[tokio::test]
    async fn twenty_copies_settled_at_once_have_one_effect() {
        let database = TestDatabase::create_for(Schema::Processor).await.unwrap();
        twenty_copies_have_one_effect(store(&database).await).await;
    }

    /// Batched settlement: copies of one message in one transaction are
    /// still one effect, each copy answered on its own.
    #[tokio::test]
    async fn twenty_copies_settled_in_shared_transactions_have_one_effect() {
        let database = TestDatabase::create_for(Schema::Processor).await.unwrap();
        let store = store(&database).await.with_settlement(
            ordo_service_kit::group_commit::GroupCommitConfig::batching(64, 2),
        );
        let counts = store.settlement_counts().unwrap();
        twenty_copies_have_one_effect(store).await;
        let (transactions, statements) = counts.get();
        assert_eq!(statements, 100);
        assert!(
            transactions < statements,
            "copies shared transactions: {transactions}"
        );
    }

    async fn twenty_copies_have_one_effect(store: ProcessingStore) {
        for round in 0..5 {
            let order = OrderRef {
                order_id: Uuid::now_v7(),
                correlation_id: "race",
            };
            let message_id = format!("placed-{round}");
            let step = payment::next(&Record::new(), &approved(&format!("pay-{round}")));
            let Then::Settle { verdict, outcome } = &step.then else {
                panic!("an approval settles a new order");
            };
            let outcomes = futures::future::join_all((0..20).map(|_| {
                store.message_settle(
                    MessageRef {
                        message_id: &message_id,
                        subject: "orders.placed",
                        ..Default::default()
                    },
                    RecordWrite {
                        order,
                        expected: None,
                        record: &step.record,
                    },
                    verdict.as_ref(),
                    outcome,
                )
            }))
            .await;
            let applied = outcomes
                .iter()
                .filter(|outcome| matches!(outcome, Ok(Some(Settled::Applied(_)))))
                .count();
            let refused = outcomes
                .iter()
                .filter(|outcome| matches!(outcome, Ok(None)))
                .count();
            assert_eq!((applied, refused), (1, 19), "{outcomes:?}");
            let lookup = store
                .message_lookup(&message_id, order.order_id)
                .await
                .unwrap();
            assert!(lookup.seen, "a copy that lost reads the message as handled");
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

    /// Lookups that arrive together are one query, and each still sees
    /// exactly what a lookup of its own would: its inbox row, its record.
    #[tokio::test]
    async fn lookups_read_together_answer_as_each_alone_would() {
        let database = TestDatabase::create_for(Schema::Processor).await.unwrap();
        let alone = store(&database).await;
        let together = store(&database).await.with_settlement(
            ordo_service_kit::group_commit::GroupCommitConfig::batching(64, 1),
        );
        // Orders with a record and a handled message, with a record only,
        // and with nothing at all.
        let mut keys = Vec::new();
        for n in 0..30 {
            let order = OrderRef {
                order_id: Uuid::now_v7(),
                correlation_id: "lookups",
            };
            let message_id = format!("m-{n}");
            if n % 3 != 2 {
                let step = payment::next(&Record::new(), &approved(&format!("pay-{n}")));
                let Then::Settle { verdict, outcome } = &step.then else {
                    panic!("an approval settles a new order");
                };
                let handled = MessageRef {
                    message_id: if n % 3 == 0 { &message_id } else { "another" },
                    subject: "orders.placed",
                    ..Default::default()
                };
                let write = RecordWrite {
                    order,
                    expected: None,
                    record: &step.record,
                };
                alone
                    .message_settle(handled, write, verdict.as_ref(), outcome)
                    .await
                    .unwrap();
            }
            keys.push((message_id, order.order_id));
        }
        let before = ordo_outbox::statements::statements_total();
        let batched = futures::future::join_all(
            keys.iter()
                .map(|(message_id, order_id)| together.message_lookup(message_id, *order_id)),
        )
        .await;
        let queries = ordo_outbox::statements::statements_total() - before;
        assert!(queries <= 3, "30 lookups at once took {queries} queries");
        for ((message_id, order_id), batched) in keys.iter().zip(batched) {
            let expected = alone.message_lookup(message_id, *order_id).await.unwrap();
            assert_eq!(batched.unwrap(), expected, "{message_id}");
        }
        let seen = keys.iter().enumerate().filter(|(n, _)| n % 3 == 0).count();
        assert_eq!(seen, 10);
    }

    /// Batched lookups are index probes however the tables grew since the
    /// connection planned them. PostgreSQL keeps a prepared statement's
    /// generic plan, made while the tables were small, until it analyzes
    /// them again: the lookups written as a join were planned as a hash of
    /// the whole inbox and of every record, and each batch then read both
    /// tables whole (the life cycle's database CPU per order was ×3.6).
    #[tokio::test]
    async fn batched_lookups_stay_index_probes_as_the_tables_grow() {
        let database = TestDatabase::create_for(Schema::Processor).await.unwrap();
        // One connection: the one that plans the lookups is the one that
        // runs them after the tables grew.
        let db = ordo_migrations::database::connect(database.url(), 1)
            .await
            .unwrap();
        let store = ProcessingStore::new(db.clone(), PartitionCount::new(4).unwrap(), None)
            .with_settlement(ordo_service_kit::group_commit::GroupCommitConfig::batching(
                64, 1,
            ));
        let grow = |rows: u32| {
            let db = db.clone();
            async move {
                for sql in [
                    format!(
                        "INSERT INTO inbox (consumer, message_id, subject, outcome) \
                         SELECT 'processor', 'grown-' || gen_random_uuid(), 'orders.placed', 'handled' \
                         FROM generate_series(1, {rows})"
                    ),
                    format!(
                        "INSERT INTO order_processing (order_id, state, attempts) \
                         SELECT gen_random_uuid(), 'confirmed', 1 FROM generate_series(1, {rows})"
                    ),
                ] {
                    db.execute_unprepared(&sql).await.unwrap();
                }
            }
        };
        let batch = |round: usize| {
            let store = store.clone();
            async move {
                let lookups = (0..8).map(|n| {
                    let message_id = format!("lookup-{round}-{n}");
                    let store = store.clone();
                    async move { store.message_lookup(&message_id, Uuid::now_v7()).await }
                });
                for lookup in futures::future::join_all(lookups).await {
                    let lookup = lookup.unwrap();
                    assert!(!lookup.seen && lookup.record.is_none());
                }
            }
        };
        // Small tables while the statement is prepared and planned.
        grow(300).await;
        for round in 0..20 {
            batch(round).await;
        }
        grow(30_000).await;
        for round in 20..30 {
            batch(round).await;
        }
        let (batches, lookups) = store.lookup_counts().unwrap().get();
        assert!(batches < lookups, "the lookups were read together");
        let read = ordo_testkit::database::tuples_read_after_closing(
            db,
            database.url(),
            &["inbox", "order_processing"],
        )
        .await
        .unwrap();
        assert!(
            read <= 4 * lookups as i64,
            "{lookups} lookups read {read} tuples of the inbox and the records"
        );
    }

    #[tokio::test]
    async fn a_decision_on_a_record_that_moved_is_not_written() {
        let database = TestDatabase::create_for(Schema::Processor).await.unwrap();
        let store = store(&database).await;
        let order = OrderRef {
            order_id: Uuid::now_v7(),
            correlation_id: "moved",
        };
        // A placement's handler read the record (a failed attempt before).
        let failed = payment::next(
            &Record::new(),
            &Input::Failed {
                kind: payment::Kind::Placement,
                reason: "payment_timeout".into(),
            },
        );
        assert!(
            store
                .record_save(RecordWrite {
                    order,
                    expected: None,
                    record: &failed.record,
                })
                .await
                .unwrap()
        );
        let read = store.processing_get(order.order_id).await.unwrap().unwrap();
        // Meanwhile the cancellation is recorded.
        let cancelled = payment::next(&read.machine(), &Input::Cancelled);
        assert_eq!(cancelled.record.stage, Stage::CancelRequested);
        let message = MessageRef {
            message_id: "cancelled-1",
            subject: "orders.cancelled",
            ..Default::default()
        };
        let Then::Settle { verdict, outcome } = &cancelled.then else {
            panic!("a cancellation is recorded at once");
        };
        let write = RecordWrite {
            order,
            expected: Some(read.version),
            record: &cancelled.record,
        };
        assert!(
            store
                .message_settle(message, write, verdict.as_ref(), outcome)
                .await
                .unwrap()
                .is_some()
        );
        // The placement's approval, decided on the old read, would confirm:
        // it is not written, and decided again it becomes a refund.
        let stale = payment::next(&read.machine(), &approved("pay-late"));
        assert_eq!(stale.record.stage, Stage::Confirmed);
        let Then::Settle { verdict, outcome } = &stale.then else {
            panic!("an approval settles");
        };
        let placed = MessageRef {
            message_id: "placed-1",
            subject: "orders.placed",
            ..Default::default()
        };
        let write = RecordWrite {
            order,
            expected: Some(read.version),
            record: &stale.record,
        };
        assert_eq!(
            store
                .message_settle(placed, write, verdict.as_ref(), outcome)
                .await
                .unwrap(),
            None
        );
        let now = store.processing_get(order.order_id).await.unwrap().unwrap();
        assert_eq!(now.state, Stage::CancelRequested);
        assert_eq!(now.version, read.version + 1);
        let again = payment::next(&now.machine(), &approved("pay-late"));
        assert_eq!(again.record.stage, Stage::RefundDue);
        assert_eq!(count(&store, "SELECT count(*) FROM outbox").await, 0);
        assert_eq!(count(&store, "SELECT count(*) FROM inbox").await, 1);
    }
}
